// Package unread keeps each user's unread message counts in an actor of
// their own (the UnreadCounterActor), spawned on first use and stopped when
// idle, which publishes UnreadCountUpdated whenever the counts change.
//
// Counting: a counter loads its user's read state once (on start), then
// applies every change it is told about as arithmetic — +1 for a message from
// someone else, −N for a read of N messages (a deleted message the user had
// not read counts as a read of one: the deletion moves their read version
// too) — without asking the database.
// Each change says which it is: a new message by its id, a read by the
// reader's read version in the matter (persistence.MatterUnread). The load
// returns, from the same snapshot, each matter's last message id and read
// version; messages of a matter and reads of a member commit in that order,
// so a change at or below them is already in the loaded counts and is
// ignored, as is a change delivered twice. The arithmetic is therefore exact
// whatever the interleaving of loads and notifications.
//
// Reconciliation: what nobody announces (a member added by an admin command,
// another process writing, a notification lost while a cluster grain moved)
// is caught by reloading: every ReconcileEvery while the counter runs, when
// Get finds the counts older than that, on Reload, and at once when a change
// names a matter the counter does not know.
//
// Coalescing: at most one UnreadCountUpdated per user per Window; a change
// within the window is published when it ends, with the counts as they are
// then, so the last event always carries the final value.
package unread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/cluster/clusterpb"
	"github.com/parley-chat/parley/persistence"
)

// Source is where counts come from; persistence.Store satisfies it.
type Source interface {
	// UnreadState is the user's read state in every matter they belong to.
	UnreadState(ctx context.Context, userID int64) (map[int64]persistence.MatterUnread, error)
}

// Counts is one user's unread messages.
type Counts struct {
	UserID  int64
	Total   int
	Matters map[int64]int // every matter the user belongs to, zeros included
}

// Publisher is called by a user's counter, on its own goroutine, after the
// user's counts changed. It must not block; c is the caller's to keep.
type Publisher func(c Counts)

// Options tune the counters; zero values take the documented defaults.
type Options struct {
	// Window is the coalescing window: at most one publish per user per
	// Window, the last one carrying the final counts; default 50 ms.
	Window time.Duration
	// ReconcileEvery is how often a running counter reloads its counts from
	// the database to catch changes nobody announced; Get reloads too when
	// the counts are older. Default 30 s.
	ReconcileEvery time.Duration
	// IdleTimeout stops a user's counter after this long without messages;
	// default 5 minutes.
	IdleTimeout time.Duration
	// QueryTimeout bounds one load from the Source; default 5 s.
	QueryTimeout time.Duration
	// AskTimeout bounds Get, a load included; default 10 s.
	AskTimeout time.Duration
	// RetryAfter is the wait before retrying a failed load; default 1 s.
	RetryAfter time.Duration
	// NotifyTimeout is, in a cluster, how long a notification waits for its
	// grain's answer before it is sent again (NotifyAttempts sends in all);
	// default 2 s.
	NotifyTimeout time.Duration
	// NotifyAttempts bounds the sends of one notification; default 3.
	NotifyAttempts int
	// Log reports failed loads and reconciliations that found drift;
	// default discards.
	Log *slog.Logger
	// Push, when set, makes the counters push notifications (push.go).
	Push *PushOptions
}

func (o *Options) defaults() {
	if o.Window <= 0 {
		o.Window = 50 * time.Millisecond
	}
	if o.ReconcileEvery <= 0 {
		o.ReconcileEvery = 30 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 5 * time.Second
	}
	if o.AskTimeout <= 0 {
		o.AskTimeout = 10 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.NotifyTimeout <= 0 {
		o.NotifyTimeout = 2 * time.Second
	}
	if o.NotifyAttempts <= 0 {
		o.NotifyAttempts = 3
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Push != nil && o.Push.Window <= 0 {
		p := *o.Push
		p.Window = 3 * time.Second
		o.Push = &p
	}
}

// Messages a user's counter understands. The manager routes them by UserID.
type (
	// Incr says another member's message MessageID to MatterID committed;
	// Push, when set, is what a push notification shows of it.
	Incr struct {
		UserID, MatterID, MessageID int64
		Push                        *PushInfo
	}
	// Targets says the user's devices or mutes changed.
	Targets struct{ UserID int64 }
	// Read says the user's read of Count messages in MatterID committed,
	// taking their read version there to ReadSeq. A deletion of a message
	// the user had not read is one too (persistence.Deletion).
	Read struct {
		UserID, MatterID, ReadSeq int64
		Count                     int
	}
	// Reload says the user's counts may have changed in ways not announced
	// (membership changed).
	Reload struct{ UserID int64 }
	// Get asks for the counts; the reply is a getReply.
	Get struct{ UserID int64 }
	// Settle asks for a reply once every change held back by coalescing
	// has been published; the reply is a getReply.
	Settle struct{ UserID int64 }
)

type userMsg interface{ user() int64 }

func (m *Incr) user() int64    { return m.UserID }
func (m *Read) user() int64    { return m.UserID }
func (m *Reload) user() int64  { return m.UserID }
func (m *Targets) user() int64 { return m.UserID }
func (m *Get) user() int64     { return m.UserID }
func (m *Settle) user() int64  { return m.UserID }

type getReply struct {
	counts Counts
	err    error
}

// activeMsg asks the manager how many counters are running.
type activeMsg struct{}

// ErrUnavailable is returned by Get when the counts could not be loaded or the
// counter did not answer in time.
var ErrUnavailable = errors.New("unread counts unavailable")

// Counters is the handle on the manager actor. Its methods are safe for
// concurrent use; they only send messages.
type Counters struct {
	root    *actor.RootContext // set at construction
	pid     *actor.PID         // the manager; set at construction
	opts    Options            // set at construction
	src     Source             // set at construction
	publish Publisher          // set at construction

	// In a cluster (set by UseCluster before serving): each user's counter
	// is a grain, placed by the cluster, and notifications go to it through
	// client, which retries while the grain moves.
	cl     *cluster.Cluster
	client *actor.PID
}

// GrainKind is the cluster kind of the unread-counter grains.
const GrainKind = "unread"

// Kind is the grain kind to register with the cluster (before it starts):
// one counter per user in the whole cluster, activated where the cluster's
// identity lookup places it, loaded from the database on activation.
func (c *Counters) Kind() *cluster.Kind {
	return cluster.NewKind(GrainKind, actor.PropsFromProducer(func() actor.Actor {
		return &counter{grain: true, src: c.src, publish: c.publish, opts: c.opts}
	}))
}

// UseCluster routes every user's notifications and queries to their grain.
func (c *Counters) UseCluster(cl *cluster.Cluster) {
	c.cl = cl
	c.client = c.root.Spawn(actor.PropsFromProducer(func() actor.Actor { return newGrainClient(cl, c.opts) }))
}

// Change kinds carried by clusterpb.UnreadChanged.
const (
	changeIncr int32 = iota + 1
	changeRead
	changeReload
	changeTargets
)

// Start spawns the manager in system. publish receives every change.
func Start(system *actor.ActorSystem, src Source, publish Publisher, opts Options) *Counters {
	opts.defaults()
	m := &manager{src: src, publish: publish, opts: opts, counters: map[int64]*counterRef{}}
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return m }))
	return &Counters{root: system.Root, pid: pid, opts: opts, src: src, publish: publish}
}

func (c *Counters) route() *actor.PID {
	if c.client != nil {
		return c.client
	}
	return c.pid
}

// Incr tells userID's counter that another member's message messageID to
// matterID committed. Call it only after the commit.
func (c *Counters) Incr(userID, matterID, messageID int64) {
	c.root.Send(c.route(), &Incr{UserID: userID, MatterID: matterID, MessageID: messageID})
}

// IncrPush is Incr for a message that may be pushed to the user (see
// push.go): info is what the push shows.
func (c *Counters) IncrPush(userID, matterID, messageID int64, info PushInfo) {
	c.root.Send(c.route(), &Incr{UserID: userID, MatterID: matterID, MessageID: messageID, Push: &info})
}

// PushTargetsChanged tells userID's counter that their devices or mutes
// changed: its next push loads them again.
func (c *Counters) PushTargetsChanged(userID int64) {
	c.root.Send(c.route(), &Targets{UserID: userID})
}

// Read tells userID's counter that their read of n messages in matterID
// committed and took their read version there to readSeq (what
// persistence's MarkRead and MarkReadUpTo return). Call it only when n > 0.
func (c *Counters) Read(userID, matterID, readSeq int64, n int) {
	c.root.Send(c.route(), &Read{UserID: userID, MatterID: matterID, ReadSeq: readSeq, Count: n})
}

// Reload makes userID's counter reload and publish if anything changed.
func (c *Counters) Reload(userID int64) { c.root.Send(c.route(), &Reload{UserID: userID}) }

// Get returns userID's counts: those of the database, give or take changes
// nobody announced since the last reconciliation (at most ReconcileEvery old).
func (c *Counters) Get(userID int64) (Counts, error) {
	if c.cl != nil {
		return c.askGrain(userID, &clusterpb.UnreadGet{UserId: userID})
	}
	return c.ask(&Get{UserID: userID})
}

// Settle returns once userID's counter has handled every notification sent
// before and published whatever coalescing held back (at most Window later).
// Tests use it to know no UnreadCountUpdated is still to come.
func (c *Counters) Settle(userID int64) (Counts, error) {
	if c.cl != nil {
		return c.askGrain(userID, &clusterpb.UnreadSettle{UserId: userID})
	}
	return c.ask(&Settle{UserID: userID})
}

func (c *Counters) ask(msg userMsg) (Counts, error) {
	res, err := c.root.RequestFuture(c.pid, msg, c.opts.AskTimeout).Result()
	if err != nil {
		return Counts{}, fmt.Errorf("%w: counter of user %d did not answer: %v", ErrUnavailable, msg.user(), err)
	}
	r, ok := res.(*getReply)
	if !ok {
		return Counts{}, fmt.Errorf("%w: unexpected reply %T", ErrUnavailable, res)
	}
	return r.counts, r.err
}

func (c *Counters) askGrain(userID int64, msg any) (Counts, error) {
	res, err := c.cl.Request(strconv.FormatInt(userID, 10), GrainKind, msg, cluster.WithTimeout(c.opts.AskTimeout))
	if err != nil {
		return Counts{}, fmt.Errorf("%w: counter of user %d did not answer: %v", ErrUnavailable, userID, err)
	}
	r, ok := res.(*clusterpb.UnreadCounts)
	if !ok {
		return Counts{}, fmt.Errorf("%w: unexpected reply %T", ErrUnavailable, res)
	}
	if r.Error != "" {
		return Counts{}, fmt.Errorf("%w: %s", ErrUnavailable, r.Error)
	}
	out := Counts{UserID: userID, Total: int(r.Total), Matters: make(map[int64]int, len(r.Matters))}
	for id, n := range r.Matters {
		out.Matters[id] = int(n)
	}
	return out, nil
}

// Active reports how many users' counters are running.
func (c *Counters) Active() (int, error) {
	res, err := c.root.RequestFuture(c.pid, activeMsg{}, c.opts.AskTimeout).Result()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	n, _ := res.(int)
	return n, nil
}

// Stop stops the manager and every counter, and waits for them.
func (c *Counters) Stop() {
	_ = c.root.StopFuture(c.pid).Wait()
}

// counterRef is the manager's view of one running counter.
type counterRef struct {
	pid  *actor.PID
	sent uint64 // user messages forwarded to pid
}

// idleMsg is a counter telling its manager it has been idle; processed is how
// many forwarded messages it has handled, so the manager only stops it when
// none is still on its way.
type idleMsg struct {
	userID    int64
	pid       *actor.PID
	processed uint64
}

// manager owns the registry of counters: one per user, spawned on demand.
type manager struct {
	src      Source                // set at construction
	publish  Publisher             // set at construction
	opts     Options               // set at construction
	counters map[int64]*counterRef // only touched inside Receive
}

func (m *manager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case userMsg:
		id := msg.user()
		ref := m.counters[id]
		if ref == nil {
			c := &counter{userID: id, src: m.src, publish: m.publish, opts: m.opts}
			ref = &counterRef{pid: ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return c }))}
			m.counters[id] = ref
		}
		ref.sent++
		ctx.Forward(ref.pid) // keeps the sender, so Get's reply goes straight back
	case *idleMsg:
		if ref := m.counters[msg.userID]; ref != nil && ref.pid.Equal(msg.pid) && ref.sent == msg.processed {
			delete(m.counters, msg.userID)
			ctx.Stop(ref.pid)
		}
	case *actor.Terminated:
		// A counter that died on its own (it is restarted on panics, so
		// this is rare): forget it, the next message spawns a fresh one.
		for id, ref := range m.counters {
			if ref.pid.Equal(msg.Who) {
				delete(m.counters, id)
			}
		}
	case activeMsg:
		ctx.Respond(len(m.counters))
	}
}

// A counter's notes to itself, sent by its timers. The counter keeps its own
// timers instead of ctx.SetReceiveTimeout: in this protoactor version the
// receive-timeout timer goroutine writes the actor context's fields while the
// actor reads them (go test -race reports it). A timer that only sends a
// message is race-free.
type (
	publishMsg   struct{} // the coalescing window ended
	reconcileMsg struct{} // time for the periodic reload
	retryMsg     struct{} // retry a failed load
	idleCheckMsg struct{} // has the counter been idle?
)

// matterState is one matter of a counter's user.
type matterState struct {
	unread int
	// From the last load: changes at or below these are in unread already.
	lastID  int64
	readSeq int64
	// Changes above them applied since, so a repeat is ignored.
	incrs map[int64]struct{}
	reads map[int64]struct{}
}

// counter is the UnreadCounterActor of one user.
type counter struct {
	grain   bool      // set at construction: a cluster grain (userID comes with ClusterInit)
	userID  int64     // set at construction, or by ClusterInit
	src     Source    // set at construction
	publish Publisher // set at construction
	opts    Options   // set at construction

	// Only touched inside Receive.
	matters     map[int64]*matterState // nil until a load succeeds
	loadedAt    time.Time              // when matters were loaded
	baseline    map[int64]int          // what the user was last told, or the counts at start
	told        bool                   // something was published since the start
	announced   bool                   // a notification arrived that must be published even if the counts equal baseline
	lastPublish time.Time
	pubPending  bool         // a publishMsg is on its way
	settlers    []*actor.PID // Settle callers waiting for the pending publish
	retrying    bool         // a retryMsg is on its way
	processed   uint64       // manager-forwarded messages handled
	lastActive  time.Time    // when the last manager-forwarded message arrived
	stopping    bool         // no more timers
	push        pushState    // push notifications (push.go)

	idleTimer, reconcileTimer, publishTimer, retryTimer *time.Timer
}

func (c *counter) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if c.grain {
			return // ClusterInit names the user
		}
		c.start(ctx)
	case *cluster.ClusterInit:
		id, err := strconv.ParseInt(m.Identity.Identity, 10, 64)
		if err != nil {
			ctx.Stop(ctx.Self())
			return
		}
		c.userID = id
		c.start(ctx)
	case *clusterpb.UnreadChanged:
		c.touch()
		switch m.Kind {
		case changeIncr:
			c.incr(ctx, m.MatterId, m.MessageId)
			if m.Push {
				c.considerPush(ctx, m.MatterId, m.MessageId, &PushInfo{SenderID: m.SenderId, SenderName: m.SenderName, Text: m.Text})
			}
		case changeTargets:
			c.push.targets = nil
		case changeRead:
			c.read(ctx, m.MatterId, m.ReadSeq, int(m.Count))
		default:
			c.reload(ctx, true)
		}
		ctx.Respond(&clusterpb.UnreadCounts{UserId: c.userID, AckSeq: m.Seq})
	case *actor.Stopping, *actor.Restarting:
		c.stopping = true
		for _, t := range []*time.Timer{c.idleTimer, c.reconcileTimer, c.publishTimer, c.retryTimer, c.push.timer} {
			if t != nil {
				t.Stop()
			}
		}
	case *Incr:
		c.touch()
		c.incr(ctx, m.MatterID, m.MessageID)
		c.considerPush(ctx, m.MatterID, m.MessageID, m.Push)
	case *Targets:
		c.touch()
		c.push.targets = nil
	case pushFlushMsg:
		c.flushPushes(ctx)
	case *Read:
		c.touch()
		c.read(ctx, m.MatterID, m.ReadSeq, m.Count)
	case *Reload:
		c.touch()
		c.reload(ctx, true)
	case *Get, *clusterpb.UnreadGet:
		c.touch()
		counts, err := c.get(ctx)
		ctx.Respond(c.reply(counts, err))
	case *Settle, *clusterpb.UnreadSettle:
		c.touch()
		if c.pubPending {
			c.settlers = append(c.settlers, ctx.Sender())
			return
		}
		counts, err := c.get(ctx)
		ctx.Respond(c.reply(counts, err))
	case publishMsg:
		c.pubPending = false
		c.publishNow(ctx)
	case reconcileMsg:
		// Loads for other reasons (Get, Reload) count as reconciliations.
		if wait := c.opts.ReconcileEvery - time.Since(c.loadedAt); wait > 0 && c.matters != nil {
			c.after(ctx, &c.reconcileTimer, wait, reconcileMsg{})
			return
		}
		_ = c.reload(ctx, false)
		c.push.targets = nil // loaded again when a push needs them
		c.after(ctx, &c.reconcileTimer, c.opts.ReconcileEvery, reconcileMsg{})
	case retryMsg:
		c.retrying = false
		_ = c.reload(ctx, false)
	case idleCheckMsg:
		if c.stopping {
			return
		}
		idle := time.Since(c.lastActive)
		if idle < c.opts.IdleTimeout {
			c.after(ctx, &c.idleTimer, c.opts.IdleTimeout-idle, idleCheckMsg{})
			return
		}
		if !c.pubPending && !c.retrying && len(c.push.pending) == 0 {
			if c.grain {
				// The cluster activates the grain again on its next message.
				ctx.Poison(ctx.Self())
				return
			}
			// The manager stops us unless a message is on its way, in
			// which case we carry on and check again later.
			ctx.Send(ctx.Parent(), &idleMsg{userID: c.userID, pid: ctx.Self(), processed: c.processed})
		}
		c.after(ctx, &c.idleTimer, c.opts.IdleTimeout, idleCheckMsg{})
	}
}

func grainReply(userID int64, counts Counts, err error) *clusterpb.UnreadCounts {
	reply := &clusterpb.UnreadCounts{UserId: userID, Total: int64(counts.Total), Matters: make(map[int64]int64, len(counts.Matters))}
	if err != nil {
		reply.Error = err.Error()
	}
	for id, n := range counts.Matters {
		reply.Matters[id] = int64(n)
	}
	return reply
}

// after sends msg to the counter itself after d. Each timer kind has one
// field, so the counter's timers are few and all stopped when it stops.
func (c *counter) after(ctx actor.Context, slot **time.Timer, d time.Duration, msg any) {
	if c.stopping {
		return
	}
	if *slot != nil {
		(*slot).Stop()
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	*slot = time.AfterFunc(d, func() { root.Send(self, msg) })
}

// start loads the counts when the counter starts (or, for a grain, when it
// learns its user) and arms its timers.
func (c *counter) start(ctx actor.Context) {
	c.lastActive = time.Now()
	c.after(ctx, &c.idleTimer, c.opts.IdleTimeout, idleCheckMsg{})
	c.after(ctx, &c.reconcileTimer, c.opts.ReconcileEvery, reconcileMsg{})
	if err := c.load(); err != nil {
		c.opts.Log.Warn("unread counts: load failed", "user_id", c.userID, slog.Any("error", err))
		return // Get, a change and the reconcile timer retry
	}
	c.baseline = c.counts()
}

// incr applies another member's new message.
func (c *counter) incr(ctx actor.Context, matterID, messageID int64) {
	st := c.matters[matterID]
	if st == nil {
		// Not loaded yet, or a matter joined since the load: the database
		// has the message (it committed before we were told).
		_ = c.reload(ctx, true)
		return
	}
	c.announced = true
	if _, dup := st.incrs[messageID]; messageID > st.lastID && !dup {
		if st.incrs == nil {
			st.incrs = map[int64]struct{}{}
		}
		st.incrs[messageID] = struct{}{}
		st.unread++
	}
	c.changed(ctx)
}

// read applies the user's read of n messages that took their read version
// in the matter to seq.
func (c *counter) read(ctx actor.Context, matterID, seq int64, n int) {
	st := c.matters[matterID]
	if st == nil {
		_ = c.reload(ctx, true)
		return
	}
	c.announced = true
	if _, dup := st.reads[seq]; seq > st.readSeq && !dup {
		if st.reads == nil {
			st.reads = map[int64]struct{}{}
		}
		st.reads[seq] = struct{}{}
		st.unread -= n
		if st.unread < 0 {
			// Only drift can do this; the database knows better.
			_ = c.reload(ctx, true)
			return
		}
	}
	c.changed(ctx)
}

// reload replaces the counts with the database's and publishes a difference
// (announce: publish even without one, if the user was never told). A failed
// load is retried after RetryAfter.
func (c *counter) reload(ctx actor.Context, announce bool) error {
	if announce {
		c.announced = true
	}
	var before map[int64]int
	if c.matters != nil {
		before = c.counts()
	}
	if err := c.load(); err != nil {
		c.opts.Log.Warn("unread counts: load failed; retrying", "user_id", c.userID, slog.Any("error", err))
		if !c.retrying {
			c.retrying = true
			c.after(ctx, &c.retryTimer, c.opts.RetryAfter, retryMsg{})
		}
		return err
	}
	if c.baseline == nil {
		c.baseline = before
		if c.baseline == nil {
			c.baseline = c.counts()
		}
	}
	if before != nil && !announce && !maps.Equal(before, c.counts()) {
		c.opts.Log.Info("unread counts: reconciled a change nobody announced", "user_id", c.userID)
	}
	c.changed(ctx)
	return nil
}

// get answers the counts, reloading them first when they are older than
// ReconcileEvery (or were never loaded).
func (c *counter) get(ctx actor.Context) (Counts, error) {
	if c.matters == nil || time.Since(c.loadedAt) >= c.opts.ReconcileEvery {
		if err := c.reload(ctx, false); err != nil {
			return Counts{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	return snapshot(c.userID, c.counts()), nil
}

// changed publishes the counts now, or when the coalescing window ends if
// the last publish was within it.
func (c *counter) changed(ctx actor.Context) {
	if c.pubPending || !c.due() {
		return
	}
	if wait := c.opts.Window - time.Since(c.lastPublish); wait > 0 {
		c.pubPending = true
		c.after(ctx, &c.publishTimer, wait, publishMsg{})
		return
	}
	c.publishNow(ctx)
}

// due: the counts differ from what the user was told, or a change arrived
// since the start and the user has not been told anything yet (the load at
// start may already have included it).
func (c *counter) due() bool {
	if c.matters == nil {
		return false
	}
	return (c.announced && !c.told) || !maps.Equal(c.baseline, c.counts())
}

// publishNow publishes if due, then answers whoever waits in Settle.
func (c *counter) publishNow(ctx actor.Context) {
	if c.due() {
		cur := c.counts()
		c.baseline, c.told, c.announced, c.lastPublish = cur, true, false, time.Now()
		c.publish(snapshot(c.userID, cur))
	}
	settlers := c.settlers
	c.settlers = nil
	for _, pid := range settlers {
		ctx.Send(pid, c.reply(snapshot(c.userID, c.counts()), nil))
	}
}

// touch records a notification or question: the counter is in use, and
// (single node) one more of the manager's forwards is handled.
func (c *counter) touch() {
	c.processed++
	c.lastActive = time.Now()
}

// reply is the answer to Get or Settle: a protobuf message for a grain's
// remote callers, a getReply on a single node.
func (c *counter) reply(counts Counts, err error) any {
	if c.grain {
		return grainReply(c.userID, counts, err)
	}
	return &getReply{counts: counts, err: err}
}

// load replaces the state with the database's.
func (c *counter) load() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.QueryTimeout)
	defer cancel()
	state, err := c.src.UnreadState(ctx, c.userID)
	if err != nil {
		return err
	}
	c.matters = make(map[int64]*matterState, len(state))
	for id, s := range state {
		c.matters[id] = &matterState{unread: s.Unread, lastID: s.LastMessageID, readSeq: s.ReadSeq}
	}
	c.loadedAt = time.Now()
	return nil
}

// counts is the current unread count per matter.
func (c *counter) counts() map[int64]int {
	out := make(map[int64]int, len(c.matters))
	for id, st := range c.matters {
		out[id] = st.unread
	}
	return out
}

// snapshot copies the counts for use outside the actor.
func snapshot(userID int64, counts map[int64]int) Counts {
	out := Counts{UserID: userID, Matters: maps.Clone(counts)}
	for _, n := range counts {
		out.Total += n
	}
	return out
}
