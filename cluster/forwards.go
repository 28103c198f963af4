package cluster

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/cluster/clusterpb"
	"github.com/parley-chat/parley/pusher"
	"google.golang.org/protobuf/proto"
)

// A process's forwards (Publish, ClientEvent, Terminate: what goes to every
// peer) are numbered in one sequence, with or without peers, and kept for a
// while. Forwards are lost on the way when protoactor drops what is queued to
// an address (it does when its membership reports a member there as gone,
// even when a new process already serves there), when a connection breaks,
// and while a partition lasts. The receiver sees the gap in the numbers and
// asks for them again; a gap at the end shows in the next NodeStats. A
// receiver keeps its count of each process's forwards when the sender leaves
// its live set, so a gap from before a partition is still seen when the
// sender comes back, as a new incarnation or not. A gap that cannot be filled
// closes every subscribed socket of the receiver with a reconnect code, so
// that their clients catch up.
const (
	keepForwards     = 2 * time.Minute // a forward older than this is not sent again (the default; config.ClusterForwardKeep)
	keepForwardBytes = 16 << 20        // nor is one when newer ones fill this many bytes
	keepForwardCount = 1 << 16         // or are this many
	resendWait       = time.Second     // a receiver waits this long for a resend before it asks again,
	resendTries      = 3               // and gives the gap up after this many asks,
	maxHeldForwards  = 1 << 14         // or at once when it holds more forwards than this
)

// forwardLog numbers this node's forwards and keeps the recent ones.
type forwardLog struct {
	keep  time.Duration // how long a forward is kept; zero means keepForwards. Set before use.
	mu    sync.Mutex
	seq   uint64 // the last number given
	kept  []keptForward
	head  int // kept[head:] are live; kept[head].msg has number first
	first uint64
	bytes int
}

type keptForward struct {
	msg  proto.Message
	at   time.Time
	size int
}

// send numbers m, keeps it and sends it to every peer, all under the lock:
// a peer receives the forwards in number order. A node without peers
// numbers and keeps too: the peers it had may come back and ask.
func (l *forwardLog) send(root *actor.RootContext, ps []peer, self string, m proto.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	size := 64
	switch m := m.(type) {
	case *clusterpb.Publish:
		m.Node, m.Seq = self, l.seq
		size += len(m.Data) + len(m.Name)
		for _, c := range m.Channels {
			size += len(c)
		}
	case *clusterpb.ClientEvent:
		m.Node, m.Seq = self, l.seq
		size += len(m.Data) + len(m.Name) + len(m.Channel)
	case *clusterpb.Terminate:
		m.Node, m.Seq = self, l.seq
	}
	now := time.Now()
	if l.head == len(l.kept) {
		l.first = l.seq
	}
	l.kept = append(l.kept, keptForward{msg: m, at: now, size: size})
	l.bytes += size
	for live := len(l.kept) - l.head; live > 1 && (l.bytes > keepForwardBytes || live > keepForwardCount || now.Sub(l.kept[l.head].at) > l.keepFor()); live-- {
		l.bytes -= l.kept[l.head].size
		l.kept[l.head] = keptForward{}
		l.head++
		l.first++
	}
	if l.head > 1024 && l.head > len(l.kept)/2 {
		n := copy(l.kept, l.kept[l.head:])
		clear(l.kept[n:])
		l.kept, l.head = l.kept[:n], 0
	}
	for _, p := range ps {
		root.Send(p.pid, m)
	}
}

func (l *forwardLog) keepFor() time.Duration {
	if l.keep > 0 {
		return l.keep
	}
	return keepForwards
}

// last is the last number given.
func (l *forwardLog) last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// since returns the kept forwards numbered from..to that are younger than
// keepForwards, in order, and the first one's number (to+1 when none is).
func (l *forwardLog) since(from, to uint64) ([]proto.Message, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []proto.Message
	first := to + 1
	for s := max(from, l.first); s <= min(to, l.seq) && s >= l.first; s++ {
		if k := l.kept[l.head+int(s-l.first)]; time.Since(k.at) <= l.keepFor() {
			if len(out) == 0 {
				first = s
			}
			out = append(out, k.msg)
		}
	}
	return out, first
}

// inbound is what a node has received of one process's forwards.
type inbound struct {
	last    uint64                   // the last number applied
	held    map[uint64]proto.Message // arrived after a gap, waiting for it
	waiting uint64                   // nonzero: a resend of last+1..waiting was asked for
	tries   int                      // asks for it so far
	gen     int                      // numbers the asks, for their timeouts
}

// resendTimeoutMsg: an ask for a resend had no answer in resendWait.
type resendTimeoutMsg struct {
	node string // the sending process
	gen  int
}

// forwardOf returns the forward's sending process and number ("" for a
// message that is not one).
func forwardOf(m proto.Message) (string, uint64) {
	switch m := m.(type) {
	case *clusterpb.Publish:
		return m.Node, m.Seq
	case *clusterpb.ClientEvent:
		return m.Node, m.Seq
	case *clusterpb.Terminate:
		return m.Node, m.Seq
	}
	return "", 0
}

// received applies a peer's forward in number order: a repeat is ignored, and
// one after a gap is held until the gap is filled or given up.
func (a *nodeActor) received(ctx actor.Context, m proto.Message) {
	node, seq := forwardOf(m)
	if node == "" || seq == 0 {
		a.apply(m)
		return
	}
	in := a.inbox[node]
	if in == nil {
		in = &inbound{last: seq - 1}
		a.inbox[node] = in
	}
	switch {
	case seq <= in.last:
		return
	case seq == in.last+1 && len(in.held) == 0:
		in.last = seq
		a.apply(m)
		return
	}
	if in.held == nil {
		in.held = map[uint64]proto.Message{}
	}
	in.held[seq] = m
	a.settle(ctx, node, in)
}

// settle applies the held forwards that are next in order and asks for the
// first gap left, if no ask is pending. Holding too many gives the gap up.
func (a *nodeActor) settle(ctx actor.Context, node string, in *inbound) {
	for {
		a.drain(in)
		if len(in.held) == 0 {
			in.waiting = 0
			return
		}
		if len(in.held) <= maxHeldForwards && in.waiting > in.last {
			return // an ask covers the gap
		}
		lowest := lowestHeld(in)
		if len(in.held) > maxHeldForwards {
			a.lost(node, in, lowest-1)
			in.waiting = 0
			continue
		}
		in.tries = 0
		a.askResend(ctx, node, in, lowest-1)
		return
	}
}

// askResend asks node for its forwards last+1..to and gives them up if no
// answer comes within resendWait.
func (a *nodeActor) askResend(ctx actor.Context, node string, in *inbound, to uint64) {
	in.waiting = to
	in.tries++
	in.gen++
	if p, ok := a.peerOf(node); ok {
		ctx.Send(p.pid, &clusterpb.ResendRequest{Node: a.mem.self.ID, From: in.last + 1, To: to})
	}
	self, root, gen := ctx.Self(), ctx.ActorSystem().Root, in.gen
	time.AfterFunc(resendWait, func() { root.Send(self, &resendTimeoutMsg{node: node, gen: gen}) })
}

// resendTimedOut: the ask numbered gen had no answer; the ask or its answer
// may have been lost as the forwards were.
func (a *nodeActor) resendTimedOut(ctx actor.Context, node string, gen int) {
	if in := a.inbox[node]; in != nil && in.gen == gen && in.waiting != 0 {
		a.resent(ctx, node, in.waiting, 0)
	}
}

// resent ends a wait for a resend of last+1..to, of which the peer sent
// sentFrom..to again: those before sentFrom are gone. Any of the rest that
// did not come were lost on the way, as the forwards were: ask again, a few
// times.
func (a *nodeActor) resent(ctx actor.Context, node string, to, sentFrom uint64) {
	in := a.inbox[node]
	if in == nil || in.waiting == 0 || in.waiting != to {
		return
	}
	if in.last+1 < sentFrom {
		a.lost(node, in, sentFrom-1)
	}
	if in.last < to && in.tries < resendTries {
		a.askResend(ctx, node, in, to)
		return
	}
	a.lost(node, in, to)
	in.waiting = 0
	a.settle(ctx, node, in)
}

// lost gives up the forwards after last up to to, and applies the held ones
// next in order. Nobody knows what they carried, so every socket that is
// subscribed to anything here is closed with a reconnect code: its client
// reconnects and catches up (an SDK fetches what it missed).
func (a *nodeActor) lost(node string, in *inbound, to uint64) {
	if in.last >= to {
		return
	}
	n := a.cn.n
	closed := n.CloseSubscribed(pusher.CodeEventsLost, "Events from another cluster node were lost: reconnect")
	n.Log().Warn("cluster forwards lost; subscribed sockets closed", "process", node, "from", in.last+1, "to", to, "channels", closed)
	a.cn.lost.Add(int64(to - in.last))
	in.last = to
	a.drain(in)
}

// flush gives up every gap of a process that is gone, applying what it
// held, and forgets its forwards.
func (a *nodeActor) flush(node string) {
	in := a.inbox[node]
	if in == nil {
		return
	}
	for len(in.held) > 0 {
		a.lost(node, in, lowestHeld(in)-1)
	}
	delete(a.inbox, node)
}

func lowestHeld(in *inbound) uint64 {
	lowest := ^uint64(0)
	for s := range in.held {
		lowest = min(lowest, s)
	}
	return lowest
}

// drain applies the held forwards next in order.
func (a *nodeActor) drain(in *inbound) {
	for {
		m, ok := in.held[in.last+1]
		if !ok {
			return
		}
		delete(in.held, in.last+1)
		in.last++
		a.apply(m)
	}
}

// reportedForwards compares a peer's last forward number (from its NodeStats)
// with what arrived: fewer means the last ones were lost.
func (a *nodeActor) reportedForwards(ctx actor.Context, node string, last uint64) {
	in := a.inbox[node]
	if in == nil {
		a.inbox[node] = &inbound{last: last}
		return
	}
	if last > in.last && len(in.held) == 0 && in.waiting == 0 {
		in.tries = 0
		a.askResend(ctx, node, in, last)
	}
}

// apply delivers a peer's forward to this node's sockets.
func (a *nodeActor) apply(m proto.Message) {
	n := a.cn.n
	switch m := m.(type) {
	case *clusterpb.Publish:
		n.DeliverLocal(actors.Event{AppID: m.AppId, Channels: m.Channels, Name: m.Name, Data: m.Data, SocketID: m.SocketId})
	case *clusterpb.ClientEvent:
		n.DeliverClientEventLocal(m.AppId, m.Channel, m.Name, m.Data, m.UserId, m.Sender)
	case *clusterpb.Terminate:
		n.TerminateLocal(m.AppId, m.UserId)
	}
}
