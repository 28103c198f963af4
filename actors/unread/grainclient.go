package unread

import (
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/cluster/clusterpb"
)

// grainClient delivers notifications to the counter grains of a cluster,
// many in flight at once: each is numbered, sent to its grain's PID and
// kept until the grain answers with its number. One that is not answered
// within NotifyTimeout is sent again to the PID the cluster then gives
// (the grain may have moved: a node left), up to NotifyAttempts sends; a
// change lost after that is caught by the grain's next reconciliation. A
// repeat may deliver a change twice; the grain ignores it.
//
// A slow or unreachable grain therefore holds back no other grain's
// notifications, and a notification costs one message each way (no future
// actor, no blocked goroutine). Looking up a PID the cluster's cache does not
// hold can take a round trip to the grain's placement: it runs on a
// goroutine of its own while the notifications for that grain wait.
type grainClient struct {
	cl   *cluster.Cluster // set at construction
	opts Options          // set at construction

	// Only touched inside Receive.
	seq       uint64
	inFlight  map[uint64]*notification   // sent, not answered yet
	resolving map[string][]*notification // by identity: waiting for a PID lookup
	timer     *time.Timer                // the next timeout check, while anything is in flight or resolving
}

// notification is one change on its way to a grain.
type notification struct {
	msg      *clusterpb.UnreadChanged
	identity string
	pid      *actor.PID // where it was last sent
	due      time.Time  // when it is sent again unless answered
	sends    int        // sends to a PID
	lookups  int        // failed lookups in a row
	first    time.Time  // when it was first tried
}

// Notes from the grain client's own goroutines to itself.
type (
	resolvedMsg struct {
		identity string
		pid      *actor.PID // nil: the lookup failed
	}
	checkTimeoutsMsg struct{}
)

func newGrainClient(cl *cluster.Cluster, opts Options) *grainClient {
	return &grainClient{cl: cl, opts: opts, inFlight: map[uint64]*notification{}, resolving: map[string][]*notification{}}
}

func (g *grainClient) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *Incr:
		msg := &clusterpb.UnreadChanged{UserId: m.UserID, MatterId: m.MatterID, Kind: changeIncr, MessageId: m.MessageID}
		if p := m.Push; p != nil {
			msg.Push, msg.SenderId, msg.SenderName, msg.Text = true, p.SenderID, p.SenderName, p.Text
		}
		g.notify(ctx, msg)
	case *Read:
		g.notify(ctx, &clusterpb.UnreadChanged{UserId: m.UserID, MatterId: m.MatterID, Kind: changeRead, ReadSeq: m.ReadSeq, Count: int64(m.Count)})
	case *Reload:
		g.notify(ctx, &clusterpb.UnreadChanged{UserId: m.UserID, Kind: changeReload})
	case *Targets:
		g.notify(ctx, &clusterpb.UnreadChanged{UserId: m.UserID, Kind: changeTargets})
	case *clusterpb.UnreadCounts:
		delete(g.inFlight, m.AckSeq)
	case *actor.DeadLetterResponse:
		// The grain's PID is gone (a remote node said so): send what went
		// there again through a fresh lookup, without waiting for the timeout.
		if m.Target != nil {
			g.resendTo(ctx, m.Target)
		}
	case *resolvedMsg:
		g.resolved(ctx, m)
	case checkTimeoutsMsg:
		g.timer = nil
		g.checkTimeouts(ctx)
	case *actor.Stopping:
		if g.timer != nil {
			g.timer.Stop()
		}
	}
}

func (g *grainClient) notify(ctx actor.Context, msg *clusterpb.UnreadChanged) {
	g.seq++
	msg.Seq = g.seq
	g.send(ctx, &notification{msg: msg, identity: strconv.FormatInt(msg.UserId, 10), first: time.Now()})
}

// send sends n to its grain's cached PID, or starts a lookup.
func (g *grainClient) send(ctx actor.Context, n *notification) {
	if waiting, ok := g.resolving[n.identity]; ok {
		g.resolving[n.identity] = append(waiting, n)
		return
	}
	pid, ok := g.cl.PidCache.Get(n.identity, GrainKind)
	if !ok || pid == nil {
		g.resolving[n.identity] = []*notification{n}
		g.lookup(ctx, n.identity)
		return
	}
	n.pid, n.due, n.lookups = pid, time.Now().Add(g.opts.NotifyTimeout), 0
	n.sends++
	g.inFlight[n.msg.Seq] = n
	ctx.Request(pid, n.msg)
	g.armTimer(ctx)
}

// lookup asks the cluster for a grain's PID on a goroutine of its own.
func (g *grainClient) lookup(ctx actor.Context, identity string) {
	self, root, cl := ctx.Self(), ctx.ActorSystem().Root, g.cl
	go func() {
		pid := cl.Get(identity, GrainKind)
		root.Send(self, &resolvedMsg{identity: identity, pid: pid})
	}()
	g.armTimer(ctx)
}

func (g *grainClient) resolved(ctx actor.Context, m *resolvedMsg) {
	waiting := g.resolving[m.identity]
	delete(g.resolving, m.identity)
	if m.pid == nil {
		// No placement now (the topology not known yet, members changing,
		// the lookup timed out): each waiting notification tries again
		// after 50 ms, doubling up to RetryAfter.
		for _, n := range waiting {
			n.lookups++
			wait := min(50*time.Millisecond<<min(n.lookups-1, 10), g.opts.RetryAfter)
			n.pid, n.due = nil, time.Now().Add(wait)
			g.inFlight[n.msg.Seq] = n
		}
		g.armTimer(ctx)
		return
	}
	g.cl.PidCache.Set(m.identity, GrainKind, m.pid)
	for _, n := range waiting {
		g.send(ctx, n)
	}
}

// resendTo sends again, through a fresh lookup, everything last sent to pid.
func (g *grainClient) resendTo(ctx actor.Context, pid *actor.PID) {
	for seq, n := range g.inFlight {
		if n.pid != nil && n.pid.Equal(pid) {
			delete(g.inFlight, seq)
			g.cl.PidCache.RemoveByValue(n.identity, GrainKind, pid)
			g.retry(ctx, n)
		}
	}
}

// checkTimeouts sends again what is due: not answered within
// NotifyTimeout, or waiting since a failed lookup.
func (g *grainClient) checkTimeouts(ctx actor.Context) {
	now := time.Now()
	for seq, n := range g.inFlight {
		if now.Before(n.due) {
			continue
		}
		delete(g.inFlight, seq)
		if n.pid != nil {
			g.cl.PidCache.RemoveByValue(n.identity, GrainKind, n.pid)
		}
		g.retry(ctx, n)
	}
	g.armTimer(ctx)
}

func (g *grainClient) retry(ctx actor.Context, n *notification) {
	if n.sends >= g.opts.NotifyAttempts || time.Since(n.first) > time.Duration(g.opts.NotifyAttempts)*g.opts.NotifyTimeout {
		g.opts.Log.Warn("unread counts: notification lost; the next reconciliation repairs it",
			"user_id", n.msg.UserId, "sends", n.sends)
		return
	}
	g.send(ctx, n)
}

// armTimer schedules the next timeout check while anything is in flight or
// resolving; one timer at a time.
func (g *grainClient) armTimer(ctx actor.Context) {
	if g.timer != nil || (len(g.inFlight) == 0 && len(g.resolving) == 0) {
		return
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	g.timer = time.AfterFunc(min(g.opts.NotifyTimeout/4, 25*time.Millisecond), func() { root.Send(self, checkTimeoutsMsg{}) })
}
