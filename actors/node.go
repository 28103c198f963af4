// Package actors holds Parley's actors: one ConnectionActor per socket, one
// ChannelActor per occupied channel, the watchlist and the unread counters,
// and the Node through which every socket, subscribe and publish enters. The
// Node talks to the rest of its cluster through its seams (seams.go); a
// single node uses the local ones.
package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/actors/unread"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/protoactor"
	"github.com/parley-chat/parley/metrics"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// appRuntime is an app's configuration plus its live connection count.
type appRuntime struct {
	*config.App
	conns atomic.Int64
	meter *metrics.AppMeter // nil unless SetMetrics
}

// Node is one Parley server's actor system: the router, the channels and the
// sockets. Its methods are safe for concurrent use.
type Node struct {
	cfg    *config.Config // set at construction
	log    *slog.Logger
	debug  *slog.Logger // nil unless --debug
	system *actor.ActorSystem
	reg    *registry
	idle   *idleWheel   // wakes ConnectionActors for their activity checks
	watch  *actor.PID   // the watchlist actor
	fg     *foreground  // the chat users' foreground sockets, cluster-wide
	conns0 *actor.Props // shared by every ConnectionActor: Props per socket cost ~400 B each
	// dispatch runs ChannelActors' mailboxes, connDispatch ConnectionActors'.
	dispatch, connDispatch *protoactor.WorkerDispatcher
	chanSV                 actor.SupervisorStrategy
	byKey                  map[string]*appRuntime // set at construction
	byID                   map[string]*appRuntime // set at construction

	// The cluster seams; set at construction (local) or by JoinCluster
	// before the node serves anything.
	broker  Broker
	cluster Presence
	dir     ChannelDirectory
	remote  Census
	routes  WebhookRoutes // nil on a single node
	members Membership    // nil on a single node

	hooks *hooks // webhooks; set at construction

	// backlog counts publishes queued for channel actors and not yet fanned
	// out; past maxBacklog, Publish refuses with ErrBusy.
	backlog    atomic.Int64
	maxBacklog int64

	// Publishes and chat writes refused: the backlog was full, or the node
	// had no quorum; refusing is set during a run of ErrBusy.
	refusedBusy, refusedNoQuorum atomic.Int64
	refusing                     atomic.Bool

	socketSeq atomic.Uint64
	draining  atomic.Bool
	// cut is set while this node is in a cluster and has no quorum (when it
	// joins, until it first reaches one): it serves no sockets and accepts
	// no publishes (membership.go).
	cut atomic.Bool

	maxConns int              // set at construction; 0 = no node-wide cap
	metrics  *metrics.Metrics // set by SetMetrics before serving; nil = not counted

	mu    sync.Mutex
	conns map[Socket]string // guarded by mu; every live socket → its client address
	perIP map[string]int    // guarded by mu; live sockets per client address
	empty chan struct{}     // guarded by mu; closed when conns empties while draining
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// quietLogger is protoactor's logger: none.
func quietLogger(*actor.ActorSystem) *slog.Logger { return quiet }

// NewNode starts the actor system and the router.
func NewNode(cfg *config.Config, log *slog.Logger) *Node {
	system := actor.NewActorSystem(actor.WithLoggerFactory(quietLogger))
	protoactor.NarrowRegistry(system)
	n := &Node{
		cfg: cfg, log: log, system: system,
		byKey: map[string]*appRuntime{}, byID: map[string]*appRuntime{},
		conns: map[Socket]string{}, perIP: map[string]int{},
		maxConns: cfg.MaxConnections,
	}
	if cfg.Debug {
		n.debug = log
	}
	for i := range cfg.Apps {
		rt := &appRuntime{App: &cfg.Apps[i]}
		n.byKey[rt.Key], n.byID[rt.ID] = rt, rt
	}
	n.maxBacklog = int64(cfg.MaxPublishBacklog)
	if n.maxBacklog <= 0 {
		n.maxBacklog = 1 << 20
	}
	n.reg = newRegistry(n)
	n.hooks = newHooks(n)
	n.idle = newIdleWheel(system.Root)
	n.broker, n.cluster, n.dir, n.remote = localNode{}, localNode{}, localDirectory{n}, localNode{}
	n.fg = newForeground(func(appID, userID string, on bool) { n.cluster.Foreground(appID, userID, on) })
	// Supervision, decided per actor kind:
	//  - ConnectionActor: stop; on Stopping it closes its socket (4200, the
	//    client reconnects) and leaves its channels.
	//  - ChannelActor: stop; on Stopping it closes its sockets with 4200 and
	//    leaves the registry, so the next subscribe starts a clean channel.
	//  - watchlist: resume; its maps stay consistent between messages, and
	//    losing them would mark every user offline.
	logPanic := func(kind string, d actor.Directive) actor.DeciderFunc {
		return func(reason any) actor.Directive {
			log.Error("actor panic", "actor", kind, "error", fmt.Sprint(reason), "directive", d.String())
			return d
		}
	}
	n.chanSV = actor.NewOneForOneStrategy(0, 0, logPanic("channel", actor.StopDirective))
	n.watch = system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return newWatchlist(n) },
		actor.WithGuardian(actor.NewOneForOneStrategy(0, 0, logPanic("watchlist", actor.ResumeDirective)))))
	// The lock-free mailbox: a ConnectionActor gets few messages (what its
	// client sends), and this mailbox costs ~350 B less per socket than the
	// default ring buffer.
	n.dispatch = protoactor.NewWorkerDispatcher(4*runtime.GOMAXPROCS(0), 300, 0) // 300: protoactor's default throughput
	// A ConnectionActor never blocks: its mailbox may wait for a worker.
	n.connDispatch = protoactor.NewWorkerDispatcher(2*runtime.GOMAXPROCS(0), 300, 64*runtime.GOMAXPROCS(0))
	n.conns0 = actor.PropsFromProducer(func() actor.Actor { return &connActor{} },
		actor.WithMailbox(actor.UnboundedLockfree()), actor.WithDispatcher(n.connDispatch),
		actor.WithGuardian(actor.NewOneForOneStrategy(0, 0, logPanic("connection", actor.StopDirective))))
	return n
}

// channelProps builds a ChannelActor's Props.
func (n *Node) channelProps(key, name string, stats *channelStats) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return newChannel(n, key, name, stats) },
		actor.WithGuardian(n.chanSV), actor.WithDispatcher(n.dispatch))
}

// App returns the app with this id.
func (n *Node) App(id string) (*config.App, bool) {
	rt, ok := n.byID[id]
	if !ok {
		return nil, false
	}
	return rt.App, true
}

// Ready reports whether the node accepts new sockets.
func (n *Node) Ready() bool { return !n.draining.Load() && !n.cut.Load() }

// Health is Ready with the reason when not: "draining" or "no quorum".
func (n *Node) Health() (ok bool, reason string) {
	switch {
	case n.draining.Load():
		return false, "draining"
	case n.cut.Load():
		return false, "no quorum: this node cannot reach a majority of its cluster"
	}
	return true, ""
}

// setServing is the membership's decision: serve (a quorum) or not. A node
// that stops serving closes its sockets with a reconnect code when
// closeSockets: they can no longer be given what the rest of the cluster
// publishes, and their clients reconnect to the side that serves.
func (n *Node) setServing(serving, closeSockets bool) {
	n.cut.Store(!serving)
	if !serving && closeSockets {
		n.closeAll(pusher.CodeClusterLost, "This node lost its cluster: reconnect")
	}
}

// closeAll closes every socket with code.
func (n *Node) closeAll(code pusher.Code, msg string) int {
	n.mu.Lock()
	conns := make([]Socket, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, c := range conns {
		closeSocket(c, code, msg)
	}
	return len(conns)
}

// closeSubscribed closes every socket subscribed to a channel with code, and
// returns how many channels were told.
func (n *Node) closeSubscribed(code pusher.Code, msg string) int {
	count := 0
	m := &closeSubscribersMsg{code: code, msg: msg}
	n.reg.all(func(_ string, pid *actor.PID) {
		n.system.Root.Send(pid, m)
		count++
	})
	return count
}

// ConnOptions are the wsconn options for a socket of this node.
func (n *Node) ConnOptions() wsconn.Options {
	var limit int64 = 64 << 10
	for _, a := range n.cfg.Apps {
		// Room for the JSON around the largest allowed event.
		if l := int64(a.MaxEventSize)*2 + 4096; l > limit {
			limit = l
		}
	}
	return wsconn.Options{ReadLimit: limit, MaxPendingBytes: n.cfg.MaxPendingBytes, SendBuffer: n.cfg.SocketSendBuffer, Debug: n.debug,
		OverflowStatus: int(pusher.CodeSlowConsumer), OverflowReason: pusher.CodeSlowConsumer.Message(),
		// Accept always queues connection_established or an error at once.
		HelloWithFirstFrame: true}
}

// Accept takes an upgraded socket for the app with this key. Refusals are
// sent over the socket, as Pusher clients expect them.
func (n *Node) Accept(conn *wsconn.Conn, appKey, protocol, origin, clientIP string) {
	rt, ok := n.byKey[appKey]
	refuse := func(code pusher.Code, msg string) {
		n.refused(conn, rt, appKey, clientIP, code, msg)
		closeWithError(conn, &pusher.Error{Code: code, Msg: msg})
		conn.Serve(func(b []byte) { conn.Done(len(b)) }, func() {}, nil)
	}
	if n.draining.Load() {
		refuse(pusher.CodeServerRestart, "Server is shutting down, reconnect")
		return
	}
	if n.cut.Load() {
		refuse(pusher.CodeNoQuorum, pusher.CodeNoQuorum.Message())
		return
	}
	if !ok {
		refuse(pusher.CodeAppNotFound, fmt.Sprintf("App key %s does not exist", wsconn.Truncate(appKey, 64)))
		return
	}
	if problem := checkProtocol(protocol); problem != "" {
		refuse(pusher.CodeUnsupportedProtocol, problem)
		return
	}
	if !rt.OriginAllowed(origin) {
		refuse(pusher.CodeUnauthorized, "Origin not allowed: "+wsconn.Truncate(origin, 100))
		return
	}
	if c := rt.conns.Add(1); rt.MaxConnections > 0 && c+n.remote.Connections(rt.ID) > int64(rt.MaxConnections) {
		rt.conns.Add(-1)
		refuse(pusher.CodeOverCapacity, "Over capacity: this app allows "+strconv.Itoa(rt.MaxConnections)+" connections")
		return
	}
	n.mu.Lock()
	switch {
	case n.maxConns > 0 && len(n.conns) >= n.maxConns:
		n.mu.Unlock()
		rt.conns.Add(-1)
		refuse(pusher.CodeOverCapacity, "Over capacity: this server holds at most "+strconv.Itoa(n.maxConns)+" connections")
		return
	case n.cfg.MaxConnectionsPerIP > 0 && n.perIP[clientIP] >= n.cfg.MaxConnectionsPerIP:
		n.mu.Unlock()
		rt.conns.Add(-1)
		refuse(pusher.CodeOverCapacity, "Over capacity: at most "+strconv.Itoa(n.cfg.MaxConnectionsPerIP)+" connections per client address")
		return
	}
	n.conns[conn] = clientIP
	n.perIP[clientIP]++
	n.mu.Unlock()
	if rt.meter != nil {
		rt.meter.Opened()
		conn.SetMeter(rt.meter)
	}
	if n.draining.Load() {
		// Drain may have listed the sockets before this one was added.
		closeSocket(conn, pusher.CodeServerRestart, "Server is shutting down, reconnect")
	}

	socketID := strconv.FormatUint(uint64(rand.Uint32N(1e9)), 10) + "." + strconv.FormatUint(n.socketSeq.Add(1), 10)
	conn.SetID(socketID)
	root := n.system.Root
	pid := root.Spawn(n.conns0)
	// The first message, before anything the socket sends (Serve starts below).
	root.Send(pid, &connInitMsg{node: n, app: rt, conn: conn, socketID: socketID})
	conn.ServeHandler(&connEvents{root: root, pid: pid})
}

// connEvents forwards a socket's events to its ConnectionActor.
type connEvents struct {
	root *actor.RootContext
	pid  *actor.PID
}

func (e *connEvents) Message(b []byte) { e.root.Send(e.pid, &inboundMsg{data: b}) }
func (e *connEvents) Activity()        { e.root.Send(e.pid, activity) }
func (e *connEvents) End()             { e.root.Send(e.pid, gone) }

// MinProtocol is the oldest Pusher protocol version accepted. Pusher retired
// only 1-3; the official Java/Android SDK (and Flutter's plugin on Android)
// sends 5, older iOS SDKs 6 or 7, pusher-js 7.
const MinProtocol = 4

// checkProtocol describes what is wrong with the ?protocol= value, or "".
// Every refusal is 4007: a 4000-4099 close tells a client not to retry, which
// is right for a version that will never be accepted.
func checkProtocol(protocol string) string {
	if protocol == "" {
		return "No protocol version supplied: connect with ?protocol=7"
	}
	v, err := strconv.Atoi(protocol)
	if err != nil {
		return "Invalid protocol version " + wsconn.Truncate(protocol, 16) + ": connect with ?protocol=7"
	}
	if v < MinProtocol {
		return "Unsupported protocol version " + protocol + ": versions " + strconv.Itoa(MinProtocol) + " and up are accepted"
	}
	return ""
}

// release is called by a ConnectionActor when it stops.
func (n *Node) release(rt *appRuntime, conn Socket) {
	rt.conns.Add(-1)
	n.mu.Lock()
	if ip, ok := n.conns[conn]; ok {
		delete(n.conns, conn)
		if n.perIP[ip]--; n.perIP[ip] <= 0 {
			delete(n.perIP, ip)
		}
	}
	if len(n.conns) == 0 && n.empty != nil {
		close(n.empty)
		n.empty = nil
	}
	n.mu.Unlock()
}

// Connections is the number of live sockets of an app.
func (n *Node) Connections(appID string) int {
	if rt, ok := n.byID[appID]; ok {
		return int(rt.conns.Load())
	}
	return 0
}

// Event is one publish: an event to one or more channels of an app.
type Event struct {
	AppID    string
	Channels []string
	Name     string
	Data     string // sent to clients as the "data" string
	SocketID string // this socket does not receive it ("" = everyone)
}

// ErrBusy is returned by Publish when the fan-out backlog is past its bound:
// the caller should answer 503 and let the publisher retry later.
var ErrBusy = errors.New("fan-out backlog is full, retry later")

// ErrNoQuorum is returned by Publish on a node cut off from the majority of
// its cluster: what it published would not reach the others' sockets.
var ErrNoQuorum = errors.New("this node cannot reach a majority of its cluster: publish through another node, or retry later")

// CanPublish says whether a publish is accepted now: nil, ErrBusy or
// ErrNoQuorum; a refusal is counted (metrics) and the first of a run of
// ErrBusy is logged. A caller that must not lose an event once it has done
// something (the chat commits a message) asks first, refuses its request if
// told so, and publishes with PublishCommitted after it committed.
func (n *Node) CanPublish() error {
	if n.cut.Load() {
		n.refusedNoQuorum.Add(1)
		return ErrNoQuorum
	}
	if b := n.backlog.Load(); b >= n.maxBacklog {
		n.refusedBusy.Add(1)
		if n.refusing.CompareAndSwap(false, true) {
			n.log.Warn("fan-out backlog full: refusing publishes and chat writes (503) until it drains", "backlog", b, "max", n.maxBacklog)
		}
		return ErrBusy
	}
	if n.refusing.Load() && n.refusing.CompareAndSwap(true, false) {
		n.log.Info("fan-out backlog drained: publishes accepted again", "refused_total", n.refusedBusy.Load())
	}
	return nil
}

// Publish delivers an event to this node's sockets and forwards it once to
// every other node of the cluster. The frame is encoded once per channel
// here, on the caller's goroutine, and shared by every local socket.
// Several events are refused or accepted together, so a batch is never
// published in part.
func (n *Node) Publish(evs ...Event) error {
	if err := n.CanPublish(); err != nil {
		return err
	}
	n.PublishCommitted(evs...)
	return nil
}

// PublishCommitted is Publish without refusals, for events about what is
// already done and must not be lost: the chat asks CanPublish before it
// commits, so the backlog grows past its bound by at most the commits in
// flight.
func (n *Node) PublishCommitted(evs ...Event) {
	for _, ev := range evs {
		n.deliver(ev)
		n.broker.Publish(ev)
	}
}

// deliver fans an event out to this node's sockets only.
func (n *Node) deliver(ev Event) {
	for _, ch := range ev.Channels {
		key := channelKey(ev.AppID, ch)
		if _, cache := pusher.Classify(ch); cache {
			// A cache channel keeps its last event even with nobody in it.
			n.backlog.Add(1)
			frame := wsconn.NewPrepared(pusher.EncodeEvent(ev.Name, ch, ev.Data, ""))
			frame.Stamp()
			n.reg.forward(key, ev.AppID, ch, &publishMsg{frame: frame, exclude: ev.SocketID, counted: true})
			continue
		}
		// No frame is encoded for a channel nobody here is in (every node
		// of a cluster gets every publish).
		pid := n.reg.lookup(key)
		if pid == nil {
			continue
		}
		n.backlog.Add(1)
		frame := wsconn.NewPrepared(pusher.EncodeEvent(ev.Name, ch, ev.Data, ""))
		frame.Stamp()
		n.system.Root.Send(pid, &publishMsg{frame: frame, exclude: ev.SocketID})
	}
}

// deliverClientEvent fans a client event out to this node's sockets.
func (n *Node) deliverClientEvent(appID, channel, name, data, userID, sender string, remote bool) {
	if pid := n.reg.lookup(channelKey(appID, channel)); pid != nil {
		frame := wsconn.NewPrepared(pusher.EncodeEvent(name, channel, data, userID))
		n.system.Root.Send(pid, &clientEventMsg{sender: sender, frame: frame, remote: remote})
	}
}

// ErrTimeout is returned when the actors did not answer a query in time.
var ErrTimeout = errors.New("actors did not answer in time")

const queryTimeout = 5 * time.Second

// Channels lists the app's occupied channels whose names start with prefix.
func (n *Node) Channels(ctx context.Context, appID, prefix string) (ChannelList, error) {
	return n.dir.Channels(ctx, appID, prefix)
}

// Channel describes one channel; Occupied is false when nobody is in it.
func (n *Node) Channel(ctx context.Context, appID, name string) (ChannelInfo, error) {
	return n.dir.Channel(ctx, appID, name)
}

// PresenceUsers lists the user ids in a presence channel.
func (n *Node) PresenceUsers(ctx context.Context, appID, name string) ([]string, error) {
	return n.dir.Users(ctx, appID, name)
}

// localUsers asks a presence channel's actor for its members.
func (n *Node) localUsers(appID, name string) ([]string, error) {
	pid := n.reg.lookup(channelKey(appID, name))
	if pid == nil {
		return nil, nil
	}
	res, err := n.system.Root.RequestFuture(pid, &presenceUsersMsg{}, queryTimeout).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	ids, _ := res.([]string)
	return ids, nil
}

// TerminateUser disconnects every socket signed in as userID.
func (n *Node) TerminateUser(appID, userID string) {
	n.terminateLocal(appID, userID)
	n.broker.Terminate(appID, userID)
}

func (n *Node) terminateLocal(appID, userID string) {
	n.reg.send(channelKey(appID, pusher.ServerToUserPrefix+userID), &terminateMsg{})
}

// Drain stops accepting sockets and asks every socket to reconnect elsewhere
// (close 4200). It returns when all sockets are gone or ctx ends.
func (n *Node) Drain(ctx context.Context) error {
	n.draining.Store(true)
	n.mu.Lock()
	conns := make([]Socket, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	var empty chan struct{}
	if len(n.conns) > 0 {
		n.empty = make(chan struct{})
		empty = n.empty
	}
	n.mu.Unlock()
	for _, c := range conns {
		closeSocket(c, pusher.CodeServerRestart, "Server is shutting down, reconnect")
	}
	if empty == nil {
		return nil
	}
	select {
	case <-empty:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop ends the actor system, leaving the cluster first if in one.
func (n *Node) Stop() {
	defer n.idle.close()
	defer n.dispatch.Stop()
	defer n.connDispatch.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	n.hooks.close(ctx) // a no-op after CloseWebhooks
	cancel()
	if n.members != nil {
		// The membership stops the actor system after it left.
		n.members.Stop()
		return
	}
	n.system.Shutdown()
}

// StartUnreadCounters starts the chat's unread counters on this node's actor
// system; publish receives every change.
func (n *Node) StartUnreadCounters(src unread.Source, publish unread.Publisher, opts unread.Options) *unread.Counters {
	return unread.Start(n.system, src, publish, opts)
}

// Backlog is the number of publishes waiting to be fanned out on this node.
func (n *Node) Backlog() int64 { return n.backlog.Load() }
