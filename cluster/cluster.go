// Package cluster joins Parley nodes into one server: the cluster
// implementations of the node's seams (actors.Seams), the membership that
// decides who is in the cluster (membership.go), the numbered forwards
// (forwards.go) and the messages between nodes (clusterpb), over
// protoactor's remote and cluster.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/cluster/clusterpb"
	"github.com/parley-chat/parley/internal/protoactor"
	"google.golang.org/protobuf/proto"
)

// nodeActorName is the well-known name of each member's node actor, the one
// address every other member sends to: actor.NewPID(member address, name).
const nodeActorName = "parley-node"

// Cluster timings.
const (
	statsInterval = time.Second            // NodeStats to every known address (the membership's heartbeat)
	surveyTimeout = 2 * time.Second        // a node that has not answered a query by then is left out
	probeTimeout  = 500 * time.Millisecond // a peer whose connection broke must answer a probe within this,
	probeAttempts = 2                      // in one of this many asks,
	probePause    = 200 * time.Millisecond // each after this pause
	startTimeout  = 30 * time.Second       // starting the cluster member (gRPC server, grain kinds)
)

// peer is another member's node actor.
type peer struct {
	id      string // its member id (process.incarnation)
	process string
	address string
	pid     *actor.PID
}

// liveView is what publishers, webhooks and queries read of the membership;
// the node actor replaces it whenever the membership changes.
type liveView struct {
	self    string // this node's member id
	peers   []peer // the live members but this node
	up      bool   // this node serves: it has a quorum
	missing int    // known addresses with no live member
	counted int    // members counted for the quorum, this node included
}

// clusterNode is the cluster implementation of the seams (Broker, Presence,
// ChannelDirectory, Census). Publishes go straight from the caller to each
// peer's node actor; presence changes go through this node's node actor,
// which keeps what it has told the others so that it can tell a newcomer
// everything first (a Snapshot) and then every change, in order.
type clusterNode struct {
	n       *actors.Node
	c       *protocluster.Cluster
	name    string     // the cluster's name; set at construction
	process string     // this process's id (its actor system's); set at construction
	started int64      // when this process joined, Unix ns; set at construction
	addr    string     // this member's cluster address; set at construction
	static  []string   // the configured peers' addresses; set at construction
	pid     *actor.PID // this node's node actor
	etcd    *etcdRegistry

	live atomic.Pointer[liveView] // written by the node actor
	out  forwardLog               // numbers and keeps what goes to every peer

	// Forwards sent again to a peer that missed them, and missed here and
	// given up (forwards.go).
	resent, lost atomic.Int64

	mu     sync.Mutex
	census map[string]map[string]int64 // guarded by mu; peer id → app id → sockets
}

var (
	_ actors.Broker           = (*clusterNode)(nil)
	_ actors.Presence         = (*clusterNode)(nil)
	_ actors.ChannelDirectory = (*clusterNode)(nil)
	_ actors.Census           = (*clusterNode)(nil)
	_ actors.WebhookRoutes    = (*clusterNode)(nil)
	_ actors.Membership       = (*clusterNode)(nil)
)

// Options configure Join.
type Options struct {
	Name    string   // nodes of different names never join
	Address string   // host:port of this node's cluster endpoint (gRPC)
	Peers   []string // other nodes' cluster addresses (static membership)
	Etcd    []string // etcd endpoints (etcd registry) instead of Peers
	// Kinds are extra grain kinds hosted by this node (the chat's unread counters).
	Kinds []*protocluster.Kind
}

// Join makes the node a member of a cluster and gives it the cluster
// implementations of its seams (actors.Node.Attach). Call it before the node
// serves; it does not serve (Ready is false) until it reaches a quorum of
// its cluster (membership.go). The protoactor cluster returned hosts the
// grains (the chat's unread counters).
func Join(n *actors.Node, opts Options) (*protocluster.Cluster, error) {
	host, portStr, err := net.SplitHostPort(opts.Address)
	if err != nil {
		return nil, fmt.Errorf("cluster address %q: %w", opts.Address, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster address %q: bad port", opts.Address)
	}
	for _, p := range opts.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, fmt.Errorf("cluster peer %q: %w", p, err)
		}
	}
	system := n.System()
	cn := &clusterNode{n: n, name: opts.Name, process: system.ID, started: time.Now().UnixNano(), addr: opts.Address, static: opts.Peers,
		census: map[string]map[string]int64{}}
	cn.out.keep = n.Config().ClusterForwardKeep
	cc := protoactor.ClusterConfig(opts.Name, host, port, opts.Kinds...)
	c := protocluster.New(system, cc)
	cn.c = c
	cn.live.Store(&liveView{self: memberIDOf(cn.process, 1)})
	// Until the membership finds a quorum, the node does not serve.
	n.Attach(actors.Seams{Broker: cn, Presence: cn, Directory: cn, Census: cn, Webhooks: cn, Membership: cn})

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
		return nil, fmt.Errorf("join cluster %q: the cluster member did not start within %v", opts.Name, startTimeout)
	}
	self := memberInfo{ID: memberIDOf(cn.process, 1), Process: cn.process, Incarnation: 1, Started: cn.started, Address: opts.Address, Kinds: c.GetClusterKinds()}
	sort.Strings(self.Kinds)
	var reg *etcdRegistry
	if len(opts.Etcd) > 0 {
		reg = newEtcdRegistry(opts.Etcd, opts.Name, n.Log())
		cn.etcd = reg
	}
	cn.pid, err = system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newNodeActor(cn, self, reg == nil) }), nodeActorName)
	if err != nil {
		return nil, fmt.Errorf("spawn the node actor: %w", err)
	}
	system.EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*remote.EndpointTerminatedEvent); ok {
			system.Root.Send(cn.pid, evt)
		}
	})
	if reg != nil {
		reg.start(self, system.Root, cn.pid)
	}
	n.Log().Info("cluster member started", "cluster", opts.Name, "address", opts.Address, "id", self.ID,
		"membership", map[bool]string{true: "static peers", false: "etcd"}[reg == nil])
	return c, nil
}

// Leave tells the other members this node is stopping, so they drop its
// presence at once and stop counting it, and takes its etcd registration
// back.
func (cn *clusterNode) Leave() {
	v := cn.view()
	for _, p := range v.peers {
		cn.n.System().Root.Send(p.pid, &clusterpb.Leaving{Node: v.self})
	}
	if cn.etcd != nil {
		cn.etcd.close()
	}
}

// Stop stops the node actor (its stats tick sends to peers: before the
// remote goes), then the cluster and the actor system.
func (cn *clusterNode) Stop() {
	_ = cn.n.System().Root.StopFuture(cn.pid).Wait()
	cn.c.Shutdown(true)
}

// Status implements actors.Membership.
func (cn *clusterNode) Status() actors.ClusterStatus {
	v := cn.view()
	return actors.ClusterStatus{Member: v.self, Up: v.up, Live: len(v.peers) + 1, Counted: v.counted, Missing: v.missing}
}

// Forwards implements actors.Membership.
func (cn *clusterNode) Forwards() (resent, lost int64) { return cn.resent.Load(), cn.lost.Load() }

// Members implements actors.WebhookRoutes: the live processes.
func (cn *clusterNode) Members() (self string, others []string) {
	v := cn.view()
	for _, p := range v.peers {
		others = append(others, p.process)
	}
	return cn.process, others
}

// SendState implements actors.WebhookRoutes.
func (cn *clusterNode) SendState(owner string, st actors.WebhookState) {
	if p, ok := cn.peerOf(owner); ok {
		cn.n.System().Root.Send(p.pid, webhookStatePB(st))
	}
}

// SendStates implements actors.WebhookRoutes.
func (cn *clusterNode) SendStates(owner string, sts actors.WebhookStates) {
	p, ok := cn.peerOf(owner)
	if !ok {
		return
	}
	m := &clusterpb.WebhookStates{Node: sts.Node, Sync: sts.Sync, Members: sts.Members}
	for _, st := range sts.States {
		m.States = append(m.States, webhookStatePB(st))
	}
	cn.n.System().Root.Send(p.pid, m)
}

// peerOf is the live peer of a process.
func (cn *clusterNode) peerOf(process string) (peer, bool) {
	for _, p := range cn.view().peers {
		if p.process == process {
			return p, true
		}
	}
	return peer{}, false
}

func webhookStatePB(st actors.WebhookState) *clusterpb.WebhookState {
	return &clusterpb.WebhookState{Node: st.Node, AppId: st.AppID, Channel: st.Channel, Subscriptions: int64(st.Subscriptions), Users: st.Users, Sync: st.Sync}
}

func webhookState(m *clusterpb.WebhookState) actors.WebhookState {
	return actors.WebhookState{Node: m.Node, AppID: m.AppId, Channel: m.Channel, Subscriptions: int(m.Subscriptions), Users: m.Users, Sync: m.Sync}
}

func (cn *clusterNode) view() *liveView { return cn.live.Load() }

// --- Broker ---

// forward sends m to every peer, numbered (forwards.go).
func (cn *clusterNode) forward(m proto.Message) {
	cn.out.send(cn.n.System().Root, cn.view().peers, cn.process, m)
}

func (cn *clusterNode) Publish(ev actors.Event) {
	cn.forward(&clusterpb.Publish{AppId: ev.AppID, Channels: ev.Channels, Name: ev.Name, Data: ev.Data, SocketId: ev.SocketID})
}

func (cn *clusterNode) ClientEvent(appID, channel, name, data, userID, sender string) {
	cn.forward(&clusterpb.ClientEvent{AppId: appID, Channel: channel, Name: name, Data: data, UserId: userID, Sender: sender})
}

func (cn *clusterNode) Terminate(appID, userID string) {
	cn.forward(&clusterpb.Terminate{AppId: appID, UserId: userID})
}

// --- Presence ---

func (cn *clusterNode) LocalPresence(key, userID string, info json.RawMessage, joined bool) {
	cn.n.System().Root.Send(cn.pid, &localPresenceMsg{key: key, userID: userID, info: info, joined: joined})
}

func (cn *clusterNode) SignedIn(appID, userID string, online bool) {
	cn.n.System().Root.Send(cn.pid, &localOnlineMsg{appID: appID, userID: userID, online: online})
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

func (cn *clusterNode) Foreground(appID, userID string, on bool) {
	cn.n.System().Root.Send(cn.pid, &localForegroundMsg{appID: appID, userID: userID, on: on})
}

type localForegroundMsg struct {
	appID, userID string
	on            bool
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
// arrive before the deadline; missing counts the others, and the known
// members that are not peers now (their sockets are not in the answer).
func (cn *clusterNode) survey(ctx context.Context, req *clusterpb.ChannelsRequest) (replies []*clusterpb.ChannelsReply, missing int) {
	v := cn.view()
	futures := make([]*actor.Future, len(v.peers))
	timeout := surveyTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	for i, p := range v.peers {
		futures[i] = cn.n.System().Root.RequestFuture(p.pid, req, timeout)
	}
	missing = v.missing
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

func (cn *clusterNode) Channels(ctx context.Context, appID, prefix string) (actors.ChannelList, error) {
	local := cn.n.LocalChannels(appID, prefix)
	replies, missing := cn.survey(ctx, &clusterpb.ChannelsRequest{AppId: appID, Prefix: prefix})
	byName := map[string]*actors.ChannelInfo{}
	for i := range local {
		byName[local[i].Name] = &local[i]
	}
	for _, r := range replies {
		for _, c := range r.Channels {
			ci := byName[c.Name]
			if ci == nil {
				// Occupied elsewhere only: the user count is the same on
				// every node (presence is mirrored).
				info := cn.n.LocalChannel(appID, c.Name)
				info.Subscriptions, info.Occupied = 0, true
				byName[c.Name] = &info
				ci = &info
			}
			ci.Subscriptions += int(c.Subscriptions)
		}
	}
	out := make([]actors.ChannelInfo, 0, len(byName))
	for _, ci := range byName {
		out = append(out, *ci)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return actors.ChannelList{Channels: out, Missing: missing}, nil
}

func (cn *clusterNode) Channel(ctx context.Context, appID, name string) (actors.ChannelInfo, error) {
	info := cn.n.LocalChannel(appID, name)
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
	return cn.n.LocalUsers(appID, name)
}

// nodeActor is a member's well-known actor: it keeps the membership, receives
// what other nodes send, and sends this node's presence changes in order.
// All fields are only touched inside Receive.
type nodeActor struct {
	cn       *clusterNode
	mem      *membership
	peers    map[string]peer                       // member id → the live peers
	seq      uint64                                // this node's presence and online changes so far
	applied  map[string]uint64                     // per peer: its changes applied here (absent: no snapshot yet)
	asked    map[string]time.Time                  // per peer: when its snapshot was last asked for
	told     map[string]time.Time                  // per removed member id: when it was last told so
	presence map[string]map[string]json.RawMessage // this node's presence: key → user id → user_info
	online   map[string]bool                       // this node's signed-in users: appID\x00userID
	// foreground are this node's chat users with a foreground socket.
	foreground map[string]bool
	inbox      map[string]*inbound // per process: its forwards received (forwards.go)
	topology   string              // the members protoactor was last told, joined
	downLog    time.Time           // when "no quorum" was last logged
	ticker     *time.Ticker
	stop       chan struct{}
}

type statsTickMsg struct{}

func newNodeActor(cn *clusterNode, self memberInfo, static bool) *nodeActor {
	return &nodeActor{
		cn: cn, mem: newMembership(self, cn.static, static, time.Now()), peers: map[string]peer{},
		applied: map[string]uint64{}, asked: map[string]time.Time{}, told: map[string]time.Time{},
		presence: map[string]map[string]json.RawMessage{}, online: map[string]bool{}, foreground: map[string]bool{},
		inbox: map[string]*inbound{},
	}
}

func (a *nodeActor) Receive(ctx actor.Context) {
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
		a.changed(ctx, a.mem.tick(time.Now()))
		a.publish(ctx)
		a.report(ctx, a.mem.addresses())
	case *actor.Stopping:
		a.ticker.Stop()
		close(a.stop)
	default:
		if !a.membership(ctx, m) && !a.local(ctx, m) {
			a.fromPeer(ctx, m)
		}
	}
}

// membership handles the messages that decide who is in the cluster; false
// for any other.
func (a *nodeActor) membership(ctx actor.Context, msg any) bool {
	n := a.cn.n
	switch m := msg.(type) {
	case *statsTickMsg:
		a.changed(ctx, a.mem.tick(time.Now()))
		a.report(ctx, a.mem.addresses())
		if !a.mem.up && time.Since(a.downLog) > 10*time.Second {
			a.downLog = time.Now()
			n.Log().Warn("cluster: no quorum, not serving", "hears", a.mem.liveCount(), "counted", a.mem.counted(),
				"needs", a.mem.counted()/2+1, "lease", a.mem.lease, "peers", strings.Join(a.mem.addresses(), ","))
		}
	case *clusterpb.NodeStats:
		a.nodeStats(ctx, m)
	case *clusterpb.Removed:
		ch := a.mem.removedBy(m.Node, m.Member, int(m.View), m.Lowest, time.Now())
		if ch.reincarnated {
			n.Log().Warn("cluster: this node was removed; rejoining as a new incarnation", "by", m.Node, "old", m.Member, "new", a.mem.self.ID)
		}
		a.changed(ctx, ch)
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
			n.WebhooksResync(processOf(m.id), false)
		}
	case *probeFailedMsg:
		if _, ok := a.peers[m.id]; ok {
			n.Log().Warn("cluster peer unreachable", "peer", m.id)
			a.changed(ctx, a.mem.unreachable(m.id, time.Now()))
		}
	case *clusterpb.Leaving:
		if _, ok := a.peers[m.Node]; ok {
			n.Log().Info("cluster peer leaving", "peer", m.Node)
		}
		a.changed(ctx, a.mem.left(m.Node, time.Now()))
	case *etcdMembersMsg:
		a.changed(ctx, a.mem.registry(m.members, time.Now()))
		a.report(ctx, a.mem.addresses())
	case *etcdLeaseMsg:
		if m.held != a.mem.lease {
			n.Log().Info("cluster: etcd lease", "held", m.held)
		}
		a.changed(ctx, a.mem.setLease(m.held, time.Now()))
	default:
		return false
	}
	return true
}

// nodeStats applies another node's report: the membership hears it, and
// what it says of its changes and forwards shows what this node missed.
func (a *nodeActor) nodeStats(ctx actor.Context, m *clusterpb.NodeStats) {
	x := memberInfo{ID: m.Node, Process: m.Process, Incarnation: m.Incarnation, Started: m.Started, Address: m.Address, Kinds: m.Kinds}
	if x.Process == "" || m.Cluster != a.cn.name {
		// Another cluster's node (given our addresses as its peers), or a
		// release without incarnations: nodes of a cluster run one release.
		return
	}
	a.changed(ctx, a.mem.heard(x, m.View, time.Now()))
	if _, ok := a.peers[m.Node]; !ok {
		return
	}
	if applied, ok := a.applied[m.Node]; !ok || applied < m.Seq {
		// A change (or the snapshot) from that node never arrived: messages
		// to a node that just restarted at a dead one's address can be
		// lost. Ask again, at most once a second.
		a.askSnapshot(ctx, m.Node)
	}
	a.reportedForwards(ctx, m.Process, m.Forwarded)
	a.cn.mu.Lock()
	a.cn.census[m.Node] = m.Connections
	a.cn.mu.Unlock()
}

// local handles this node's presence and sign-in changes, which go to every
// peer in order; false for any other message.
func (a *nodeActor) local(ctx actor.Context, msg any) bool {
	switch m := msg.(type) {
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
		a.toPeers(ctx, &clusterpb.PresenceDelta{Node: a.mem.self.ID, AppId: appID, Channel: channel, UserId: m.userID, Info: m.info, Joined: m.joined, Seq: a.seq})
	case *localOnlineMsg:
		setMember(a.online, actors.ChannelKey(m.appID, m.userID), m.online)
		a.seq++
		a.toPeers(ctx, &clusterpb.OnlineDelta{Node: a.mem.self.ID, AppId: m.appID, UserId: m.userID, Online: m.online, Seq: a.seq})
	case *localForegroundMsg:
		setMember(a.foreground, actors.ChannelKey(m.appID, m.userID), m.on)
		a.seq++
		a.toPeers(ctx, &clusterpb.ForegroundDelta{Node: a.mem.self.ID, AppId: m.appID, UserId: m.userID, On: m.on, Seq: a.seq})
	default:
		return false
	}
	return true
}

// setMember puts key in the set when in is true and takes it out otherwise.
func setMember(set map[string]bool, key string, in bool) {
	if in {
		set[key] = true
	} else {
		delete(set, key)
	}
}

func (a *nodeActor) toPeers(ctx actor.Context, m proto.Message) {
	for _, p := range a.peers {
		ctx.Send(p.pid, m)
	}
}

// fromPeer handles what other nodes send: forwards and their repair,
// presence, snapshots, webhook states and queries.
func (a *nodeActor) fromPeer(ctx actor.Context, msg any) {
	n := a.cn.n
	switch m := msg.(type) {
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
			a.cn.resent.Add(int64(len(fs)))
			ctx.Send(p.pid, &clusterpb.ResendDone{Node: a.cn.process, To: m.To, SentFrom: first})
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
			n.MirrorOnline(processOf(m.Node), m.AppId, m.UserId, m.Online)
		}
	case *clusterpb.ForegroundDelta:
		if a.inSequence(ctx, m.Node, m.Seq) {
			n.MirrorForeground(processOf(m.Node), m.AppId, m.UserId, m.On)
		}
	case *clusterpb.SnapshotRequest:
		if p, ok := a.peers[m.Node]; ok {
			ctx.Send(p.pid, a.snapshot(false))
		}
	case *clusterpb.Snapshot:
		a.snapshotReceived(ctx, m)
	case *clusterpb.WebhookState:
		if _, ok := a.peerOf(m.Node); ok {
			n.ApplyWebhookState(webhookState(m))
		}
	case *clusterpb.WebhookStates:
		if _, ok := a.peerOf(m.Node); ok {
			sts := actors.WebhookStates{Node: m.Node, Sync: m.Sync, Members: m.Members}
			for _, st := range m.States {
				sts.States = append(sts.States, webhookState(st))
			}
			n.ApplyWebhookStates(sts)
		}
	case *clusterpb.ChannelsRequest:
		ctx.Respond(a.channels(m))
	}
}

// snapshotReceived applies a peer's snapshot and answers with this node's
// when asked to.
func (a *nodeActor) snapshotReceived(ctx actor.Context, m *clusterpb.Snapshot) {
	if _, ok := a.peers[m.Node]; !ok {
		return // not a peer (yet, or any more): its reports make it one
	}
	if applied, ok := a.applied[m.Node]; ok && m.Seq < applied {
		return // older than what is applied (a reply crossed a newer one)
	}
	a.applySnapshot(m)
	a.applied[m.Node] = m.Seq
	a.cn.n.WebhooksResync(processOf(m.Node), true)
	if m.WantReply {
		ctx.Send(a.peers[m.Node].pid, a.snapshot(false))
	}
}

// channels answers a survey (or a probe) with this node's channels.
func (a *nodeActor) channels(m *clusterpb.ChannelsRequest) *clusterpb.ChannelsReply {
	n := a.cn.n
	reply := &clusterpb.ChannelsReply{Node: a.mem.self.ID}
	if m.Name != "" {
		if info := n.LocalChannel(m.AppId, m.Name); info.Subscriptions > 0 {
			reply.Channels = append(reply.Channels, &clusterpb.ChannelCount{Name: m.Name, Subscriptions: int64(info.Subscriptions)})
		}
		return reply
	}
	for _, info := range n.LocalChannels(m.AppId, m.Prefix) {
		reply.Channels = append(reply.Channels, &clusterpb.ChannelCount{Name: info.Name, Subscriptions: int64(info.Subscriptions)})
	}
	return reply
}

// changed carries out what a membership event changed.
func (a *nodeActor) changed(ctx actor.Context, ch memberChanges) {
	n := a.cn.n
	for _, x := range ch.tellRemoved {
		if time.Since(a.told[x.ID]) < statsInterval {
			continue
		}
		a.told[x.ID] = time.Now()
		ctx.Send(actor.NewPID(x.Address, nodeActorName), &clusterpb.Removed{Node: a.mem.self.ID, Member: x.ID,
			View: int32(a.mem.liveCount()), Lowest: a.mem.lowestLive()})
	}
	if !ch.any() && len(ch.processGone) == 0 {
		return
	}
	// Going down first: what dropping the peers changes is then not told to
	// webhooks as events (this side does not decide any more).
	if ch.wentDown {
		n.Log().Warn("cluster: lost the quorum; not serving, closing every socket", "hears", a.mem.liveCount(), "counted", a.mem.counted())
		n.SetServing(false, true)
	}
	live := map[string]bool{} // processes with a live member now
	for _, x := range a.mem.peers() {
		live[x.Process] = true
	}
	for _, x := range ch.dropped {
		if _, ok := a.peers[x.ID]; ok {
			if live[x.Process] {
				n.Log().Info("cluster peer rejoined as a new incarnation", "peer", x.ID, "address", x.Address)
			} else {
				n.Log().Info("cluster peer left", "peer", x.ID, "address", x.Address)
			}
			a.drop(ctx, x.ID, live[x.Process])
		}
	}
	for _, p := range ch.processGone {
		a.flush(p)
	}
	if ch.reincarnated {
		// Every node learns the new id now; each admits it (or replaces
		// the old one with it) and exchanges snapshots with it as with a
		// newcomer. This node's peers keep their ids: nothing of what it
		// mirrors of them changes.
		a.cn.etcd.update(a.mem.self)
		a.publish(ctx)
		a.report(ctx, a.mem.addresses())
	}
	var admitted []string
	for _, x := range ch.admitted {
		if _, ok := a.peers[x.ID]; !ok {
			a.admit(ctx, x)
			admitted = append(admitted, x.Address)
		}
	}
	if len(admitted) > 0 {
		// Answer at once: the newcomer counts us only once we list it.
		a.report(ctx, admitted)
	}
	if ch.wentUp {
		// No socket of this node lived through what it may have missed
		// while it did not serve.
		a.inbox = map[string]*inbound{}
		n.Log().Info("cluster: quorum reached; serving", "hears", a.mem.liveCount(), "counted", a.mem.counted(), "id", a.mem.self.ID)
		n.SetServing(true, false)
	}
	a.publish(ctx)
}

// publish makes the membership visible to publishers and queries, and tells
// protoactor's member list the members while this node has a quorum (a node
// without one decides nothing: its member list stays as it was, so it never
// blocks a member that is still part of the cluster).
func (a *nodeActor) publish(ctx actor.Context) {
	ps := make([]peer, 0, len(a.peers))
	for _, p := range a.peers {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].address < ps[j].address })
	old := a.cn.view()
	v := &liveView{self: a.mem.self.ID, peers: ps, up: a.mem.up, missing: a.mem.missing(), counted: a.mem.counted()}
	a.cn.live.Store(v)
	if old.self != v.self || !slices.EqualFunc(old.peers, v.peers, func(x, y peer) bool { return x.id == y.id }) {
		a.cn.n.WebhooksPeersChanged()
	}
	if !a.mem.quorum(time.Now(), 0) {
		return
	}
	members := []*protocluster.Member{memberOf(a.mem.self)}
	for _, x := range a.mem.peers() {
		members = append(members, memberOf(x))
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.Id
	}
	sort.Strings(ids)
	if key := strings.Join(ids, ","); key != a.topology {
		a.topology = key
		a.cn.c.MemberList.UpdateClusterTopology(members)
	}
}

func memberOf(x memberInfo) *protocluster.Member { return protoactor.Member(x.ID, x.Address, x.Kinds) }

// report sends this node's NodeStats to the node actors at addrs.
func (a *nodeActor) report(ctx actor.Context, addrs []string) {
	n := a.cn.n
	self := a.mem.self
	stats := &clusterpb.NodeStats{Node: self.ID, Address: self.Address, Connections: n.SocketsByApp(), Seq: a.seq,
		Forwarded: a.cn.out.last(), Process: self.Process, Incarnation: self.Incarnation, Started: self.Started,
		View: a.mem.view(), Kinds: self.Kinds, Up: a.mem.up, Cluster: a.cn.name}
	for _, addr := range addrs {
		ctx.Send(actor.NewPID(addr, nodeActorName), stats)
	}
}

func (a *nodeActor) applyPresence(d *clusterpb.PresenceDelta) {
	var info json.RawMessage
	if len(d.Info) > 0 {
		info = json.RawMessage(d.Info)
	}
	a.cn.n.MirrorMember(processOf(d.Node), d.AppId, d.Channel, d.UserId, info, d.Joined)
}

// inSequence reports whether a peer's change numbered seq comes next; a gap
// means one was lost, and the peer's snapshot is asked for instead.
func (a *nodeActor) inSequence(ctx actor.Context, node string, seq uint64) bool {
	if _, ok := a.peers[node]; !ok {
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
	ctx.Send(p.pid, &clusterpb.SnapshotRequest{Node: a.mem.self.ID})
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
			// Whoever answers must be that member, not a new one at its address.
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
// lost while the two could not talk). Mirrors are kept per process: a new
// incarnation's snapshot replaces what its earlier one reported, without
// member events for what stayed.
func (a *nodeActor) applySnapshot(m *clusterpb.Snapshot) {
	n := a.cn.n
	byKey := map[string]map[string]json.RawMessage{}
	for _, d := range m.Presence {
		key := actors.ChannelKey(d.AppId, d.Channel)
		if byKey[key] == nil {
			byKey[key] = map[string]json.RawMessage{}
		}
		var info json.RawMessage
		if len(d.Info) > 0 {
			info = json.RawMessage(d.Info)
		}
		byKey[key][d.UserId] = info
	}
	process := processOf(m.Node)
	n.MirrorMembers(process, byKey)
	online := map[string]bool{}
	for _, d := range m.Online {
		online[actors.ChannelKey(d.AppId, d.UserId)] = true
	}
	n.MirrorOnlineAll(process, online)
	fg := map[string]bool{}
	for _, d := range m.Foreground {
		fg[actors.ChannelKey(d.AppId, d.UserId)] = true
	}
	n.MirrorForegroundAll(process, fg)
}

// admit makes x a peer: it gets this node's snapshot and is asked for its
// own.
func (a *nodeActor) admit(ctx actor.Context, x memberInfo) {
	if _, ok := a.peers[x.ID]; ok {
		return
	}
	p := peer{id: x.ID, process: x.Process, address: x.Address, pid: actor.NewPID(x.Address, nodeActorName)}
	a.peers[x.ID] = p
	a.cn.n.Log().Info("cluster peer joined", "peer", x.ID, "address", x.Address)
	ctx.Send(p.pid, a.snapshot(true))
}

// drop forgets a peer. Unless its process lives on as a new incarnation
// (superseded), what it reported goes too: its presence, its users online,
// its webhook states. Its forwards' numbering is kept (per process): a gap
// from before the drop is still seen when it comes back.
func (a *nodeActor) drop(ctx actor.Context, id string, superseded bool) {
	n := a.cn.n
	delete(a.peers, id)
	delete(a.applied, id)
	delete(a.asked, id)
	a.cn.mu.Lock()
	delete(a.cn.census, id)
	a.cn.mu.Unlock()
	if superseded {
		return // the new incarnation's snapshot replaces what it reported
	}
	process := processOf(id)
	// Webhooks hear that its users are gone only from a node that speaks
	// for the cluster: one cut off drops its peers too, and they are not
	// gone.
	n.WebhooksNodeGone(process, a.mem.decides(time.Now()))
	n.ForgetProcess(process)
}

// processOf is a member id's process: the id is process.incarnation.
func processOf(id string) string {
	if i := strings.LastIndexByte(id, '.'); i >= 0 {
		return id[:i]
	}
	return id
}

// peerOf is the live peer of a process.
func (a *nodeActor) peerOf(process string) (peer, bool) {
	for _, p := range a.peers {
		if p.process == process {
			return p, true
		}
	}
	return peer{}, false
}

func (a *nodeActor) snapshot(wantReply bool) *clusterpb.Snapshot {
	self := a.mem.self.ID
	s := &clusterpb.Snapshot{Node: self, Address: a.cn.addr, WantReply: wantReply, Seq: a.seq}
	for key, users := range a.presence {
		appID, channel, _ := strings.Cut(key, "\x00")
		for uid, info := range users {
			s.Presence = append(s.Presence, &clusterpb.PresenceDelta{Node: self, AppId: appID, Channel: channel, UserId: uid, Info: info, Joined: true})
		}
	}
	for key := range a.online {
		appID, uid, _ := strings.Cut(key, "\x00")
		s.Online = append(s.Online, &clusterpb.OnlineDelta{Node: self, AppId: appID, UserId: uid, Online: true})
	}
	for key := range a.foreground {
		appID, uid, _ := strings.Cut(key, "\x00")
		s.Foreground = append(s.Foreground, &clusterpb.ForegroundDelta{Node: self, AppId: appID, UserId: uid, On: true})
	}
	return s
}
