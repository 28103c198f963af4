// Package unread keeps each user's unread message counts in an actor of
// their own (the UnreadCounterActor), spawned on first use and stopped when
// idle, which publishes UnreadCountUpdated whenever the counts change.
//
// Consistency: the database is the only truth. A counter never does
// arithmetic that could drift from it; every change notification (Incr, Read,
// Reload) marks its counts stale, and the actor reloads them with one indexed
// query before publishing. Callers notify only after their write committed,
// and an actor handles its mailbox one message at a time, so the reload that
// follows the last notification sees every committed write before it: the
// last event a user receives equals the database. Notifications that pile up
// while a reload runs are coalesced into one more reload.
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
	"github.com/parley-chat/parley/actors/clusterpb"
)

// Source is where counts come from; persistence.Store satisfies it.
type Source interface {
	// UnreadCounts maps every matter the user belongs to (zeros included) to
	// the messages in it that others sent and the user has not read.
	UnreadCounts(ctx context.Context, userID int64) (map[int64]int, error)
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
	// IdleTimeout stops a user's counter after this long without messages;
	// default 5 minutes.
	IdleTimeout time.Duration
	// QueryTimeout bounds one load from the Source; default 5 s.
	QueryTimeout time.Duration
	// AskTimeout bounds Get, a load included; default 10 s.
	AskTimeout time.Duration
	// MaxAge is how long Get may answer from memory before reloading, which
	// catches changes made outside this process (admin commands adding a
	// member); default 30 s.
	MaxAge time.Duration
	// RetryAfter is the wait before retrying a failed load that has a change
	// to publish; default 1 s.
	RetryAfter time.Duration
	// Log reports failed loads; default discards.
	Log *slog.Logger
}

func (o *Options) defaults() {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 5 * time.Second
	}
	if o.AskTimeout <= 0 {
		o.AskTimeout = 10 * time.Second
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 30 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Messages a user's counter understands. The manager routes them by UserID.
type (
	// Incr says someone else committed a message to MatterID.
	Incr struct{ UserID, MatterID int64 }
	// Read says the user committed a read of a message in MatterID.
	Read struct{ UserID, MatterID int64 }
	// Reload says the user's counts may have changed in ways not announced
	// (membership changed).
	Reload struct{ UserID int64 }
	// Get asks for the counts; the reply is a getReply.
	Get struct{ UserID int64 }
)

type userMsg interface{ user() int64 }

func (m *Incr) user() int64   { return m.UserID }
func (m *Read) user() int64   { return m.UserID }
func (m *Reload) user() int64 { return m.UserID }
func (m *Get) user() int64    { return m.UserID }

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
	c.client = c.root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &grainClient{cl: cl, opts: c.opts} }))
}

// grainClient delivers notifications to counter grains in order, retrying
// while a grain is re-activated elsewhere (a node left).
type grainClient struct {
	cl   *cluster.Cluster
	opts Options
}

func (g *grainClient) Receive(ctx actor.Context) {
	var user, matter int64
	var kind int32
	switch m := ctx.Message().(type) {
	case *Incr:
		user, matter, kind = m.UserID, m.MatterID, changeIncr
	case *Read:
		user, matter, kind = m.UserID, m.MatterID, changeRead
	case *Reload:
		user, kind = m.UserID, changeReload
	default:
		return
	}
	msg := &clusterpb.UnreadChanged{UserId: user, MatterId: matter, Kind: kind}
	for attempt := 0; attempt < 3; attempt++ {
		if _, err := g.cl.Request(strconv.FormatInt(user, 10), GrainKind, msg, cluster.WithTimeout(2*time.Second)); err == nil {
			return
		} else if attempt == 2 {
			g.opts.Log.Warn("unread counts: notification lost", "user_id", user, slog.Any("error", err))
		}
	}
}

// Change kinds carried by clusterpb.UnreadChanged.
const (
	changeIncr int32 = iota + 1
	changeRead
	changeReload
)

// Start spawns the manager in system. publish receives every change.
func Start(system *actor.ActorSystem, src Source, publish Publisher, opts Options) *Counters {
	opts.defaults()
	m := &manager{src: src, publish: publish, opts: opts, counters: map[int64]*counterRef{}}
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return m }))
	return &Counters{root: system.Root, pid: pid, opts: opts, src: src, publish: publish}
}

// Incr tells userID's counter that another member's message to matterID
// committed. Call it only after the commit.
func (c *Counters) Incr(userID, matterID int64) {
	c.root.Send(c.route(), &Incr{UserID: userID, MatterID: matterID})
}

func (c *Counters) route() *actor.PID {
	if c.client != nil {
		return c.client
	}
	return c.pid
}

// Read tells userID's counter that their read of a message in matterID
// committed.
func (c *Counters) Read(userID, matterID int64) {
	c.root.Send(c.route(), &Read{UserID: userID, MatterID: matterID})
}

// Reload makes userID's counter reload and publish if anything changed.
func (c *Counters) Reload(userID int64) { c.root.Send(c.route(), &Reload{UserID: userID}) }

// Get returns userID's counts as the database has them.
func (c *Counters) Get(userID int64) (Counts, error) {
	if c.cl != nil {
		res, err := c.cl.Request(strconv.FormatInt(userID, 10), GrainKind, &clusterpb.UnreadGet{UserId: userID}, cluster.WithTimeout(c.opts.AskTimeout))
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
	res, err := c.root.RequestFuture(c.pid, &Get{UserID: userID}, c.opts.AskTimeout).Result()
	if err != nil {
		return Counts{}, fmt.Errorf("%w: counter of user %d did not answer: %v", ErrUnavailable, userID, err)
	}
	r, ok := res.(*getReply)
	if !ok {
		return Counts{}, fmt.Errorf("%w: unexpected reply %T", ErrUnavailable, res)
	}
	return r.counts, r.err
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

// flushMsg is a counter's note to itself to reload and publish; coalesces
// the notifications that arrive before it is handled.
type flushMsg struct{}

// idleCheckMsg is a counter's timer asking it whether it has been idle.
//
// The counter keeps its own timer instead of ctx.SetReceiveTimeout: in this
// protoactor version the receive-timeout timer goroutine writes the actor
// context's fields while the actor reads them (go test -race reports it). A
// timer that only sends a message is race-free.
type idleCheckMsg struct{}

// counter is the UnreadCounterActor of one user.
type counter struct {
	grain   bool      // set at construction: a cluster grain (userID comes with ClusterInit)
	userID  int64     // set at construction, or by ClusterInit
	src     Source    // set at construction
	publish Publisher // set at construction
	opts    Options   // set at construction

	// Only touched inside Receive.
	counts      map[int64]int // as last loaded; nil until a load succeeds
	loadedAt    time.Time     // when counts were loaded
	published   map[int64]int // as last published; nil until the first publish
	dirty       bool          // a committed change may be missing from counts
	flushQueued bool          // a flushMsg is on its way to us
	processed   uint64        // manager-forwarded messages handled
	lastActive  time.Time     // when the last manager-forwarded message arrived
	idleTimer   *time.Timer   // sends idleCheckMsg; nil once stopping
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
		c.lastActive = time.Now()
		c.dirty = true
		c.queueFlush(ctx)
		ctx.Respond(&clusterpb.UnreadCounts{UserId: c.userID})
	case *clusterpb.UnreadGet:
		c.lastActive = time.Now()
		counts, err := c.get()
		reply := &clusterpb.UnreadCounts{UserId: c.userID, Total: int64(counts.Total), Matters: make(map[int64]int64, len(counts.Matters))}
		if err != nil {
			reply.Error = err.Error()
		}
		for id, n := range counts.Matters {
			reply.Matters[id] = int64(n)
		}
		ctx.Respond(reply)
	case *actor.Stopping, *actor.Restarting:
		if c.idleTimer != nil {
			c.idleTimer.Stop()
			c.idleTimer = nil
		}
	case *Incr, *Read, *Reload:
		c.processed++
		c.lastActive = time.Now()
		c.dirty = true
		c.queueFlush(ctx)
	case flushMsg:
		c.flushQueued = false
		if !c.dirty {
			return
		}
		if err := c.load(); err != nil {
			c.opts.Log.Warn("unread counts: reload failed; retrying", "user_id", c.userID, slog.Any("error", err))
			c.flushQueued = true
			self, root := ctx.Self(), ctx.ActorSystem().Root
			time.AfterFunc(c.opts.RetryAfter, func() { root.Send(self, flushMsg{}) })
			return
		}
		c.publishIfChanged()
	case *Get:
		c.processed++
		c.lastActive = time.Now()
		counts, err := c.get()
		ctx.Respond(&getReply{counts: counts, err: err})
	case idleCheckMsg:
		if c.idleTimer == nil {
			return // stopping
		}
		idle := time.Since(c.lastActive)
		if idle < c.opts.IdleTimeout {
			c.armIdle(ctx, c.opts.IdleTimeout-idle)
			return
		}
		if c.grain && !c.flushQueued {
			// The cluster activates the grain again on its next message.
			ctx.Poison(ctx.Self())
			return
		}
		if !c.flushQueued {
			// The manager stops us unless a message is on its way, in
			// which case we carry on and check again later.
			ctx.Send(ctx.Parent(), &idleMsg{userID: c.userID, pid: ctx.Self(), processed: c.processed})
		}
		c.armIdle(ctx, c.opts.IdleTimeout)
	}
}

// start loads the counts when the counter starts (or, for a grain, when it
// learns its user).
func (c *counter) start(ctx actor.Context) {
	c.counts, c.published, c.dirty, c.flushQueued = nil, nil, false, false
	c.lastActive = time.Now()
	c.armIdle(ctx, c.opts.IdleTimeout)
	if err := c.load(); err != nil {
		c.dirty = true // Get and the next change retry
	}
}

// get answers the counts, reloading them when a change may be missing or
// they are old.
func (c *counter) get() (Counts, error) {
	if c.dirty || c.counts == nil || time.Since(c.loadedAt) > c.opts.MaxAge {
		announced, before := c.dirty, c.counts
		if err := c.load(); err != nil {
			return Counts{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		// A pending change is published here (the queued flush will find
		// nothing left to do); so is a change made outside this process.
		// A plain first look publishes nothing.
		if announced || (before != nil && !maps.Equal(before, c.counts)) {
			c.publishIfChanged()
		}
	}
	return c.snapshot(), nil
}

func (c *counter) armIdle(ctx actor.Context, d time.Duration) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.idleTimer = time.AfterFunc(d, func() { root.Send(self, idleCheckMsg{}) })
}

func (c *counter) queueFlush(ctx actor.Context) {
	if !c.flushQueued {
		c.flushQueued = true
		ctx.Send(ctx.Self(), flushMsg{})
	}
}

// load replaces the counts with the database's; dirty clears only on success.
func (c *counter) load() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.QueryTimeout)
	defer cancel()
	counts, err := c.src.UnreadCounts(ctx, c.userID)
	if err != nil {
		return err
	}
	c.counts, c.loadedAt, c.dirty = counts, time.Now(), false
	return nil
}

// publishIfChanged publishes the counts unless they equal the last published.
// The first change after a start always publishes, even when the load at
// start already included it: the user has not been told yet.
func (c *counter) publishIfChanged() {
	if c.published != nil && maps.Equal(c.published, c.counts) {
		return
	}
	c.published = c.counts
	c.publish(c.snapshot())
}

// snapshot copies the counts for use outside the actor.
func (c *counter) snapshot() Counts {
	out := Counts{UserID: c.userID, Matters: make(map[int64]int, len(c.counts))}
	for id, n := range c.counts {
		out.Matters[id] = n
		out.Total += n
	}
	return out
}
