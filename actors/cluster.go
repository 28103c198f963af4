package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/parley-chat/parley/actors/clusterpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// nodeActorName is the well-known name of each member's node actor, the one
// address every other member sends to: actor.NewPID(member address, name).
const nodeActorName = "parley-node"

// Cluster timings.
const (
	statsInterval = time.Second            // NodeStats to every peer (connection counts, liveness)
	surveyTimeout = 2 * time.Second        // a node that has not answered a query by then is left out
	probeTimeout  = 500 * time.Millisecond // a peer whose connection broke must answer a probe within this,
	probeAttempts = 2                      // in one of this many asks,
	probePause    = 200 * time.Millisecond // each after this pause
	startTimeout  = 30 * time.Second       // joining the cluster (StartMember hangs while etcd is down)
)

// peer is another member's node actor.
type peer struct {
	id      string
	address string
	pid     *actor.PID
}

// clusterNode is the cluster implementation of the seams (Broker, Presence,
// ChannelDirectory, Census). Publishes go straight from the caller to each
// peer's node actor; presence changes go through this node's node actor,
// which keeps what it has told the others so that it can tell a newcomer
// everything first (a Snapshot) and then every change, in order.
type clusterNode struct {
	n    *Node
	c    *cluster.Cluster
	self string     // this member's id; set at construction
	addr string     // this member's cluster address; set at construction
	pid  *actor.PID // this node's node actor

	peers atomic.Pointer[[]peer] // written by the node actor, read by publishers
	out   forwardLog             // numbers and keeps what goes to every peer

	mu     sync.Mutex
	census map[string]map[string]int64 // guarded by mu; peer id → app id → sockets
}

var (
	_ Broker           = (*clusterNode)(nil)
	_ Presence         = (*clusterNode)(nil)
	_ ChannelDirectory = (*clusterNode)(nil)
	_ Census           = (*clusterNode)(nil)
)

// ClusterOptions configure JoinCluster.
type ClusterOptions struct {
	Name    string   // nodes of different names never join
	Address string   // host:port of this node's cluster endpoint (gRPC)
	Peers   []string // other nodes' cluster addresses (automanaged provider)
	Etcd    []string // etcd endpoints (etcd provider) instead of Peers
	// Kinds are extra grain kinds hosted by this node (the chat's unread counters).
	Kinds []*cluster.Kind
}

// MembershipPort is the port of the automanaged provider's health endpoint
// for a cluster port: the next one.
func MembershipPort(clusterPort int) int { return clusterPort + 1 }

// JoinCluster makes this node a member of a protoactor cluster and switches
// the node's seams to their cluster implementations. Call it before serving.
func (n *Node) JoinCluster(opts ClusterOptions) (*cluster.Cluster, error) {
	host, portStr, err := net.SplitHostPort(opts.Address)
	if err != nil {
		return nil, fmt.Errorf("cluster address %q: %w", opts.Address, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster address %q: bad port", opts.Address)
	}
	var provider cluster.ClusterProvider
	if len(opts.Etcd) > 0 {
		provider = &lazyEtcd{endpoints: opts.Etcd}
	} else {
		hosts := []string{net.JoinHostPort(host, strconv.Itoa(MembershipPort(port)))}
		for _, p := range opts.Peers {
			h, ps, err := net.SplitHostPort(p)
			if err != nil {
				return nil, fmt.Errorf("cluster peer %q: %w", p, err)
			}
			pp, err := strconv.Atoi(ps)
			if err != nil {
				return nil, fmt.Errorf("cluster peer %q: bad port", p)
			}
			hosts = append(hosts, net.JoinHostPort(h, strconv.Itoa(MembershipPort(pp))))
		}
		provider = automanaged.NewWithConfig(2*time.Second, MembershipPort(port), hosts...)
	}
	// A batch of up to 1,000 messages travels in one gRPC message: allow it
	// to be large (events are up to 1 MB with a raised max_event_size).
	rc := remote.Configure(host, port,
		remote.WithServerOptions(grpc.MaxRecvMsgSize(64<<20)),
		remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20))),
		remote.WithEndpointWriterBatchSize(200))
	rc.MaxRetryCount = 1 // a dead peer is noticed in seconds, not after 5 retries
	cc := cluster.Configure(opts.Name, provider, disthash.New(), rc,
		cluster.WithKinds(opts.Kinds...),
		cluster.WithRequestTimeout(time.Second))
	c := cluster.New(n.system, cc)

	cn := &clusterNode{n: n, c: c, self: n.system.ID, addr: opts.Address, census: map[string]map[string]int64{}}
	empty := []peer{}
	cn.peers.Store(&empty)
	cn.pid, err = n.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newNodeActor(cn) }), nodeActorName)
	if err != nil {
		return nil, fmt.Errorf("spawn the node actor: %w", err)
	}
	n.system.EventStream.Subscribe(func(evt any) {
		switch evt.(type) {
		case *cluster.ClusterTopology, *remote.EndpointTerminatedEvent:
			n.system.Root.Send(cn.pid, evt)
		}
	})
	n.broker, n.cluster, n.dir, n.remote = cn, cn, cn, cn
	n.clusterNode = cn

	started := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				started <- fmt.Errorf("%v", r)
			}
		}()
		c.StartMember()
		started <- nil
	}()
	select {
	case err := <-started:
		if err != nil {
			return nil, fmt.Errorf("join cluster %q: %w", opts.Name, err)
		}
	case <-time.After(startTimeout):
		return nil, fmt.Errorf("join cluster %q: no answer from the membership provider within %v", opts.Name, startTimeout)
	}
	n.log.Info("cluster member started", "cluster", opts.Name, "address", opts.Address, "id", cn.self)
	return c, nil
}

// LeaveCluster tells the other members this node is stopping, so they drop
// its presence at once, then leaves the membership. Sockets and HTTP requests
// may still be served meanwhile; publishes are still forwarded.
func (n *Node) LeaveCluster() {
	cn := n.clusterNode
	if cn == nil {
		return
	}
	for _, p := range *cn.peers.Load() {
		n.system.Root.Send(p.pid, &clusterpb.Leaving{Node: cn.self})
	}
}

// --- Broker ---

// forward sends m to every peer, numbered (forwards.go).
func (cn *clusterNode) forward(m proto.Message) {
	cn.out.send(cn.n.system.Root, &cn.peers, cn.self, m)
}

func (cn *clusterNode) Publish(ev Event) {
	cn.forward(&clusterpb.Publish{AppId: ev.AppID, Channels: ev.Channels, Name: ev.Name, Data: ev.Data, SocketId: ev.SocketID})
}

func (cn *clusterNode) ClientEvent(appID, channel, name, data, userID, sender string) {
	cn.forward(&clusterpb.ClientEvent{AppId: appID, Channel: channel, Name: name, Data: data, UserId: userID, Sender: sender})
}

func (cn *clusterNode) Terminate(appID, userID string) {
	cn.forward(&clusterpb.Terminate{AppId: appID, UserId: userID})
}

// --- Presence ---

func (cn *clusterNode) localPresence(key, userID string, info json.RawMessage, joined bool) {
	cn.n.system.Root.Send(cn.pid, &localPresenceMsg{key: key, userID: userID, info: info, joined: joined})
}

func (cn *clusterNode) signedIn(appID, userID string, online bool) {
	cn.n.system.Root.Send(cn.pid, &localOnlineMsg{appID: appID, userID: userID, online: online})
}

type localPresenceMsg struct {
	key, userID string
	info        json.RawMessage
	joined      bool
}

type localOnlineMsg struct {
	appID, userID string
	online        bool
}

// --- Census ---

func (cn *clusterNode) Connections(appID string) int64 {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	var sum int64
	for _, apps := range cn.census {
		sum += apps[appID]
	}
	return sum
}

// --- ChannelDirectory: ask every node, merge under a deadline ---

// survey sends req to every peer's node actor and collects the answers that
// arrive before the deadline; missing counts the others.
func (cn *clusterNode) survey(ctx context.Context, req *clusterpb.ChannelsRequest) (replies []*clusterpb.ChannelsReply, missing int) {
	ps := *cn.peers.Load()
	futures := make([]*actor.Future, len(ps))
	timeout := surveyTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	for i, p := range ps {
		futures[i] = cn.n.system.Root.RequestFuture(p.pid, req, timeout)
	}
	for _, f := range futures {
		res, err := f.Result()
		if r, ok := res.(*clusterpb.ChannelsReply); err == nil && ok {
			replies = append(replies, r)
		} else {
			missing++
		}
	}
	return replies, missing
}

func (cn *clusterNode) Channels(ctx context.Context, appID, prefix string) (ChannelList, error) {
	local := cn.n.reg.localChannels(appID, prefix)
	replies, missing := cn.survey(ctx, &clusterpb.ChannelsRequest{AppId: appID, Prefix: prefix})
	byName := map[string]*ChannelInfo{}
	for i := range local {
		byName[local[i].Name] = &local[i]
	}
	for _, r := range replies {
		for _, c := range r.Channels {
			ci := byName[c.Name]
			if ci == nil {
				// Occupied elsewhere only: the user count is the same on
				// every node (presence is mirrored).
				info := cn.n.reg.localChannel(channelKey(appID, c.Name), c.Name)
				info.Subscriptions, info.Occupied = 0, true
				byName[c.Name] = &info
				ci = &info
			}
			ci.Subscriptions += int(c.Subscriptions)
		}
	}
	out := make([]ChannelInfo, 0, len(byName))
	for _, ci := range byName {
		out = append(out, *ci)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return ChannelList{Channels: out, Missing: missing}, nil
}

func (cn *clusterNode) Channel(ctx context.Context, appID, name string) (ChannelInfo, error) {
	info := cn.n.reg.localChannel(channelKey(appID, name), name)
	replies, missing := cn.survey(ctx, &clusterpb.ChannelsRequest{AppId: appID, Name: name})
	for _, r := range replies {
		for _, c := range r.Channels {
			info.Subscriptions += int(c.Subscriptions)
		}
	}
	info.Occupied = info.Subscriptions > 0
	info.Missing = missing
	return info, nil
}

func (cn *clusterNode) Users(_ context.Context, appID, name string) ([]string, error) {
	// Every node mirrors every presence channel's members.
	return cn.n.localUsers(appID, name)
}

// nodeActor is a member's well-known actor: it receives what other nodes
// send, and sends this node's presence changes in order. All fields are only
// touched inside Receive.
type nodeActor struct {
	cn       *clusterNode
	peers    map[string]peer                       // id → peer
	members  map[string]peer                       // the membership provider's latest view, self excluded
	dead     map[string]bool                       // ids that did not answer a probe: readmitted only when they report again
	gone     map[string]bool                       // ids that left; never readmitted (a restart has a new id)
	lastSeen map[string]time.Time                  // when each peer last reported (NodeStats, Snapshot)
	seq      uint64                                // this node's presence and online changes so far
	applied  map[string]uint64                     // per peer: its changes applied here (absent: no snapshot yet)
	asked    map[string]time.Time                  // per peer: when its snapshot was last asked for
	presence map[string]map[string]json.RawMessage // this node's presence: key → user id → user_info
	online   map[string]bool                       // this node's signed-in users: appID\x00userID
	inbox    map[string]*inbound                   // per peer: its forwards received (forwards.go)
	ticker   *time.Ticker
	stop     chan struct{}
}

type statsTickMsg struct{}

func newNodeActor(cn *clusterNode) *nodeActor {
	return &nodeActor{
		cn: cn, peers: map[string]peer{}, members: map[string]peer{}, dead: map[string]bool{}, gone: map[string]bool{},
		lastSeen: map[string]time.Time{}, applied: map[string]uint64{}, asked: map[string]time.Time{},
		presence: map[string]map[string]json.RawMessage{}, online: map[string]bool{},
		inbox: map[string]*inbound{},
	}
}

func (a *nodeActor) Receive(ctx actor.Context) {
	n := a.cn.n
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.ticker, a.stop = time.NewTicker(statsInterval), make(chan struct{})
		self, root := ctx.Self(), ctx.ActorSystem().Root
		go func() {
			for {
				select {
				case <-a.ticker.C:
					root.Send(self, &statsTickMsg{})
				case <-a.stop:
					return
				}
			}
		}()
	case *actor.Stopping:
		a.ticker.Stop()
		close(a.stop)

	// Membership.
	case *cluster.ClusterTopology:
		a.members = map[string]peer{}
		for _, mb := range m.Members {
			id := memberID(mb.Id)
			if id == a.cn.self {
				continue
			}
			a.members[id] = peer{id: id, address: mb.Address(), pid: actor.NewPID(mb.Address(), nodeActorName)}
		}
		a.reconcile(ctx)
	case *remote.EndpointTerminatedEvent:
		// The connection to that address broke: the node died, or a node
		// that died there earlier is reported late while a new one already
		// took its place. Ask whoever is there now before dropping anyone.
		for _, p := range a.peers {
			if p.address == m.Address {
				a.probe(ctx, p)
			}
		}
	case *probeAnsweredMsg:
		// The peer lives, but what was queued to it when the connection
		// broke was dropped: the forwards come again when it asks for them
		// (forwards.go), and the webhook states it owns are sent again now.
		if _, ok := a.peers[m.id]; ok {
			n.hooks.resync(m.id, false)
		}
	case *probeFailedMsg:
		if _, ok := a.peers[m.id]; ok {
			n.log.Warn("cluster peer unreachable", "peer", m.id)
			a.dead[m.id] = true
			a.drop(ctx, m.id)
		}
	case *clusterpb.Leaving:
		if _, ok := a.peers[m.Node]; ok {
			n.log.Info("cluster peer leaving", "peer", m.Node)
		}
		a.gone[m.Node] = true
		a.drop(ctx, m.Node)
	case *statsTickMsg:
		a.reconcile(ctx)
		stats := &clusterpb.NodeStats{Node: a.cn.self, Address: a.cn.addr, Connections: map[string]int64{}, Seq: a.seq, Forwarded: a.cn.out.last()}
		for id, rt := range n.byID {
			stats.Connections[id] = rt.conns.Load()
		}
		for _, p := range a.peers {
			ctx.Send(p.pid, stats)
		}

	// This node's changes, to every peer.
	case *localPresenceMsg:
		users := a.presence[m.key]
		if m.joined {
			if users == nil {
				users = map[string]json.RawMessage{}
				a.presence[m.key] = users
			}
			users[m.userID] = m.info
		} else if users != nil {
			delete(users, m.userID)
			if len(users) == 0 {
				delete(a.presence, m.key)
			}
		}
		appID, channel, _ := strings.Cut(m.key, "\x00")
		a.seq++
		delta := &clusterpb.PresenceDelta{Node: a.cn.self, AppId: appID, Channel: channel, UserId: m.userID, Info: m.info, Joined: m.joined, Seq: a.seq}
		for _, p := range a.peers {
			ctx.Send(p.pid, delta)
		}
	case *localOnlineMsg:
		key := channelKey(m.appID, m.userID)
		if m.online {
			a.online[key] = true
		} else {
			delete(a.online, key)
		}
		a.seq++
		delta := &clusterpb.OnlineDelta{Node: a.cn.self, AppId: m.appID, UserId: m.userID, Online: m.online, Seq: a.seq}
		for _, p := range a.peers {
			ctx.Send(p.pid, delta)
		}

	// What other nodes send.
	case *clusterpb.Publish:
		a.received(ctx, m)
	case *clusterpb.ClientEvent:
		a.received(ctx, m)
	case *clusterpb.Terminate:
		a.received(ctx, m)
	case *clusterpb.ResendRequest:
		if p, ok := a.peers[m.Node]; ok {
			fs, first := a.cn.out.since(m.From, m.To)
			for _, f := range fs {
				ctx.Send(p.pid, f)
			}
			n.forwardsResent.Add(int64(len(fs)))
			ctx.Send(p.pid, &clusterpb.ResendDone{Node: a.cn.self, To: m.To, SentFrom: first})
		}
	case *clusterpb.ResendDone:
		a.resent(ctx, m.Node, m.To, m.SentFrom)
	case *resendTimeoutMsg:
		a.resendTimedOut(ctx, m.node, m.gen)
	case *clusterpb.PresenceDelta:
		if a.inSequence(ctx, m.Node, m.Seq) {
			a.applyPresence(m)
		}
	case *clusterpb.OnlineDelta:
		if a.inSequence(ctx, m.Node, m.Seq) {
			ctx.Send(n.watch, &remoteOnlineMsg{node: m.Node, key: channelKey(m.AppId, m.UserId), userID: m.UserId, online: m.Online})
		}
	case *clusterpb.SnapshotRequest:
		if p, ok := a.peers[m.Node]; ok {
			ctx.Send(p.pid, a.snapshot(false))
		}
	case *clusterpb.Snapshot:
		if a.gone[m.Node] {
			return
		}
		a.reported(ctx, m.Node, m.Address)
		if applied, ok := a.applied[m.Node]; ok && m.Seq < applied {
			return // older than what is applied (a reply crossed a newer one)
		}
		a.applySnapshot(ctx, m)
		a.applied[m.Node] = m.Seq
		n.hooks.resync(m.Node, true)
		if m.WantReply {
			if p, ok := a.peers[m.Node]; ok {
				ctx.Send(p.pid, a.snapshot(false))
			}
		}
	case *clusterpb.NodeStats:
		if a.gone[m.Node] {
			return
		}
		// A node that reports to us is a peer, even if our membership
		// provider has not told us about it yet (etcd's list-then-watch
		// can miss a node that registered in between).
		a.reported(ctx, m.Node, m.Address)
		if applied, ok := a.applied[m.Node]; !ok || applied < m.Seq {
			// A change (or the snapshot) from that node never arrived:
			// messages to a node that just restarted at a dead one's
			// address can be lost. Ask again, at most once a second.
			a.askSnapshot(ctx, m.Node)
		}
		a.reportedForwards(ctx, m.Node, m.Forwarded)
		a.cn.mu.Lock()
		a.cn.census[m.Node] = m.Connections
		a.cn.mu.Unlock()
	case *clusterpb.WebhookState:
		if _, ok := a.peers[m.Node]; ok {
			n.hooks.remote(m)
		}
	case *clusterpb.WebhookStates:
		if _, ok := a.peers[m.Node]; ok {
			n.hooks.remoteAll(m)
		}
	case *clusterpb.ChannelsRequest:
		reply := &clusterpb.ChannelsReply{Node: a.cn.self}
		if m.Name != "" {
			if info := n.reg.localChannel(channelKey(m.AppId, m.Name), m.Name); info.Subscriptions > 0 {
				reply.Channels = append(reply.Channels, &clusterpb.ChannelCount{Name: m.Name, Subscriptions: int64(info.Subscriptions)})
			}
		} else {
			for _, info := range n.reg.localChannels(m.AppId, m.Prefix) {
				reply.Channels = append(reply.Channels, &clusterpb.ChannelCount{Name: info.Name, Subscriptions: int64(info.Subscriptions)})
			}
		}
		ctx.Respond(reply)
	}
}

func (a *nodeActor) applyPresence(d *clusterpb.PresenceDelta) {
	var info json.RawMessage
	if len(d.Info) > 0 {
		info = json.RawMessage(d.Info)
	}
	msg := &remotePresenceMsg{node: d.Node, userID: d.UserId, info: info, joined: d.Joined}
	key := channelKey(d.AppId, d.Channel)
	if d.Joined {
		a.cn.n.reg.forward(key, d.AppId, d.Channel, msg)
	} else {
		a.cn.n.reg.forwardIfPresent(key, msg)
	}
}

// reconcile adds the membership's members to the peers, and drops the peers
// that are neither listed nor reporting. A node's own reports (NodeStats every
// second) count as much as the provider's list: etcd's list-then-watch can
// miss a node, and protoactor never lists again a member it once dropped (a
// node that was frozen for a few seconds), while that node serves on.
func (a *nodeActor) reconcile(ctx actor.Context) {
	for id := range a.peers {
		if _, ok := a.members[id]; ok && !a.dead[id] {
			continue
		}
		if time.Since(a.lastSeen[id]) > 5*statsInterval {
			a.cn.n.log.Info("cluster peer left", "peer", id)
			a.drop(ctx, id)
		}
	}
	for id, p := range a.members {
		if !a.dead[id] {
			a.admit(ctx, id, p.address)
		}
	}
}

// inSequence reports whether a peer's change numbered seq comes next; a gap
// means one was lost, and the peer's snapshot is asked for instead.
func (a *nodeActor) inSequence(ctx actor.Context, node string, seq uint64) bool {
	if a.gone[node] {
		return false
	}
	applied, ok := a.applied[node]
	switch {
	case ok && seq == applied+1:
		a.applied[node] = seq
		return true
	case ok && seq <= applied:
		return false // the snapshot applied already had it
	default:
		a.askSnapshot(ctx, node)
		return false
	}
}

func (a *nodeActor) askSnapshot(ctx actor.Context, node string) {
	p, ok := a.peers[node]
	if !ok || time.Since(a.asked[node]) < statsInterval {
		return
	}
	a.asked[node] = time.Now()
	ctx.Send(p.pid, &clusterpb.SnapshotRequest{Node: a.cn.self})
}

// reported records that a node spoke to us: it is alive, whatever the
// membership provider says.
func (a *nodeActor) reported(ctx actor.Context, id, address string) {
	a.lastSeen[id] = time.Now()
	delete(a.dead, id)
	a.admit(ctx, id, address)
}

// probeFailedMsg: a peer did not answer a probe.
type probeFailedMsg struct{ id string }

// probeAnsweredMsg: a peer whose connection broke answered a probe.
type probeAnsweredMsg struct{ id string }

// probe asks a peer's node actor for an empty channel list, twice if need
// be: a connection that just broke can lose the first ask although a node
// answers there. No answer from that node means it is gone.
func (a *nodeActor) probe(ctx actor.Context, p peer) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		for attempt := 0; attempt < probeAttempts; attempt++ {
			time.Sleep(probePause)
			res, err := root.RequestFuture(p.pid, &clusterpb.ChannelsRequest{AppId: "\x00probe"}, probeTimeout).Result()
			// Whoever answers must be that node, not a new one at its address.
			if r, ok := res.(*clusterpb.ChannelsReply); err == nil && ok && r.GetNode() == p.id {
				root.Send(self, &probeAnsweredMsg{id: p.id})
				return
			}
		}
		root.Send(self, &probeFailedMsg{id: p.id})
	}()
}

// applySnapshot makes what this node mirrors of another exactly its
// snapshot: members it no longer reports are removed (a leave may have been
// lost while the two could not talk).
func (a *nodeActor) applySnapshot(ctx actor.Context, m *clusterpb.Snapshot) {
	n := a.cn.n
	byKey := map[string]map[string]json.RawMessage{}
	for _, d := range m.Presence {
		key := channelKey(d.AppId, d.Channel)
		if byKey[key] == nil {
			byKey[key] = map[string]json.RawMessage{}
		}
		var info json.RawMessage
		if len(d.Info) > 0 {
			info = json.RawMessage(d.Info)
		}
		byKey[key][d.UserId] = info
	}
	// Channels this node knows: each reconciles its view of m.Node.
	n.reg.all(func(key string, pid *actor.PID) {
		if _, channel, _ := strings.Cut(key, "\x00"); IsPresence(channel) {
			ctx.Send(pid, &nodeStateMsg{node: m.Node, users: byKey[key]})
		}
	})
	// Channels it does not know yet.
	for key, users := range byKey {
		appID, channel, _ := strings.Cut(key, "\x00")
		for uid, info := range users {
			n.reg.forward(key, appID, channel, &remotePresenceMsg{node: m.Node, userID: uid, info: info, joined: true})
		}
	}
	online := map[string]bool{}
	for _, d := range m.Online {
		online[channelKey(d.AppId, d.UserId)] = true
	}
	ctx.Send(n.watch, &nodeOnlineMsg{node: m.Node, online: online})
}

// admit makes id a peer if it is not one: it gets this node's snapshot and
// is asked for its own.
func (a *nodeActor) admit(ctx actor.Context, id, address string) {
	if _, ok := a.peers[id]; ok || a.gone[id] || id == a.cn.self || address == "" {
		return
	}
	for old, q := range a.peers {
		if q.address == address {
			// A new process at a dead node's address.
			a.cn.n.log.Info("cluster peer replaced", "peer", old, "by", id, "address", address)
			a.drop(ctx, old)
		}
	}
	p := peer{id: id, address: address, pid: actor.NewPID(address, nodeActorName)}
	a.peers[id] = p
	if _, ok := a.lastSeen[id]; !ok {
		a.lastSeen[id] = time.Now()
	}
	a.publishPeers()
	a.cn.n.log.Info("cluster peer joined", "peer", id, "address", address)
	ctx.Send(p.pid, a.snapshot(true))
}

// drop forgets a peer and everything it reported.
func (a *nodeActor) drop(ctx actor.Context, id string) {
	n := a.cn.n
	if _, ok := a.peers[id]; ok {
		delete(a.peers, id)
		a.publishPeers()
	}
	delete(a.lastSeen, id)
	delete(a.applied, id)
	a.flush(id)
	delete(a.asked, id)
	a.cn.mu.Lock()
	delete(a.cn.census, id)
	a.cn.mu.Unlock()
	n.hooks.nodeGone(id)
	gone := &nodeGoneMsg{node: id}
	n.reg.all(func(key string, pid *actor.PID) {
		if _, channel, _ := strings.Cut(key, "\x00"); IsPresence(channel) {
			ctx.Send(pid, gone)
		}
	})
	ctx.Send(n.watch, gone)
}

func (a *nodeActor) publishPeers() {
	ps := make([]peer, 0, len(a.peers))
	for _, p := range a.peers {
		ps = append(ps, p)
	}
	a.cn.peers.Store(&ps)
	a.cn.n.hooks.peersChanged()
}

func (a *nodeActor) snapshot(wantReply bool) *clusterpb.Snapshot {
	s := &clusterpb.Snapshot{Node: a.cn.self, Address: a.cn.addr, WantReply: wantReply, Seq: a.seq}
	for key, users := range a.presence {
		appID, channel, _ := strings.Cut(key, "\x00")
		for uid, info := range users {
			s.Presence = append(s.Presence, &clusterpb.PresenceDelta{Node: a.cn.self, AppId: appID, Channel: channel, UserId: uid, Info: info, Joined: true})
		}
	}
	for key := range a.online {
		appID, uid, _ := strings.Cut(key, "\x00")
		s.Online = append(s.Online, &clusterpb.OnlineDelta{Node: a.cn.self, AppId: appID, UserId: uid, Online: true})
	}
	return s
}

// memberID is a membership provider's member id as the node's own id: the
// etcd provider prefixes it with the cluster name ("parley@ID").
func memberID(id string) string {
	if i := strings.LastIndexByte(id, '@'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// lazyEtcd creates protoactor's etcd provider when the member starts, after
// the remote has set gRPC's global logger (creating the etcd client earlier
// races with it).
type lazyEtcd struct {
	endpoints []string
	p         *etcd.Provider
}

func (l *lazyEtcd) StartMember(c *cluster.Cluster) error {
	p, err := etcd.NewWithConfig("/parley", clientv3.Config{Endpoints: l.endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("etcd %v: %w", l.endpoints, err)
	}
	l.p = p
	return p.StartMember(c)
}

func (l *lazyEtcd) StartClient(*cluster.Cluster) error { return errors.New("parley nodes are members") }

func (l *lazyEtcd) Shutdown(graceful bool) error {
	if l.p == nil {
		return nil
	}
	return l.p.Shutdown(graceful)
}
