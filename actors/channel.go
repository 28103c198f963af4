package actors

import (
	"encoding/json"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// cacheTTL is how long a cache channel keeps its last event (Pusher: 30 min).
const cacheTTL = 30 * time.Minute

// member is one user in a presence channel, counted per place it is present.
type member struct {
	info    json.RawMessage
	sockets int // this node's sockets
	nodes   int // other nodes where the user has at least one socket
}

// channelActor owns one channel on this node: its local subscribers, its
// presence members (local sockets plus, in a cluster, the users other nodes
// report) and, for cache channels, the last event. All fields are only
// touched inside Receive.
//
// Supervision: a panic stops the actor (see channelSupervisor); on Stopping it
// closes its sockets with 4200 so their clients reconnect and subscribe again
// to a fresh channel, rather than believing they are subscribed to nothing.
type channelActor struct {
	node  *Node  // set at construction
	key   string // set at construction
	appID string // set at construction
	name  string // set at construction
	kind  pusher.Kind
	cache bool
	stats *channelStats // written here, read by queries

	subs      []*subscriber  // fan-out order; swap-removed
	index     map[string]int // socket id → position in subs
	members   map[string]*member
	maxUsers  int                                   // presence: the app's max_presence_members
	remote    map[string]map[string]json.RawMessage // presence: node → user id → user_info
	last      *wsconn.Prepared                      // cache channels: last event
	ok        *wsconn.Prepared                      // subscription_succeeded, the same for every socket but in presence channels; made at the first subscribe
	lastAt    time.Time
	expiry    *time.Timer    // cache channels: fires when the cached event expires
	processed uint64         // messages counted by registry.forward
	parts     sync.WaitGroup // fan-out parts handed to workers, waited for
	vacated   bool           // the registry let go of this channel
}

func newChannel(n *Node, key, name string, stats *channelStats) *channelActor {
	kind, cache := pusher.Classify(name)
	appID, _, _ := strings.Cut(key, "\x00")
	c := &channelActor{node: n, key: key, appID: appID, name: name, kind: kind, cache: cache, stats: stats, index: map[string]int{}}
	if kind == pusher.KindPresence {
		c.members = map[string]*member{}
		c.maxUsers = config.DefaultMaxPresenceMembers
		if app, ok := n.App(appID); ok {
			c.maxUsers = app.MaxPresenceMembers
		}
		c.remote = map[string]map[string]json.RawMessage{}
	}
	return c
}

func (c *channelActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if c.cache {
			// Re-check vacancy when the cached event expires.
			self, root := ctx.Self(), ctx.ActorSystem().Root
			c.expiry = time.AfterFunc(cacheTTL, func() { root.Send(self, idleTick) })
		}
	case *actor.Stopping:
		if c.expiry != nil {
			c.expiry.Stop()
		}
		if !c.vacated {
			// Stopped by its supervisor after a panic: its subscribers must
			// subscribe again, to a channel that starts clean.
			c.node.reg.forget(c.key, ctx.Self())
			for _, s := range c.subs {
				closeSocket(s.conn, pusher.CodeServerRestart, "Internal error, reconnect")
			}
			c.subs, c.index = nil, map[string]int{}
			c.stats.subscriptions.Store(0)
			c.node.hooks.reset(c)
		}
	case *subscribeMsg:
		c.processed++
		c.subscribe(ctx, m)
	case *unsubscribeMsg:
		c.unsubscribe(ctx, m.socketID)
		c.maybeVacate(ctx)
	case *publishMsg:
		// With no other publish waiting, the sockets are written at once;
		// otherwise their writers put what queues meanwhile into one write.
		now := c.node.backlog.Add(-1) == 0
		if m.counted {
			c.processed++
		}
		if c.cache {
			c.last, c.lastAt = m.frame.Unstamped(), time.Now() // a replay later is no delivery latency
			c.expiry.Reset(cacheTTL)
		}
		if now {
			c.fanoutNow(m.frame, m.exclude)
		} else {
			c.fanout(m.frame, m.exclude)
		}
		c.maybeVacate(ctx)
	case *clientEventMsg:
		if _, ok := c.index[m.sender]; ok || m.remote {
			c.fanout(m.frame, m.sender)
		}
	case *remotePresenceMsg:
		c.processed++
		c.remotePresence(m)
		c.maybeVacate(ctx)
	case *nodeGoneMsg:
		c.nodeGone(m.node)
		c.maybeVacate(ctx)
	case *nodeStateMsg:
		c.nodeState(m.node, m.users)
		c.maybeVacate(ctx)
	case *presenceUsersMsg:
		ids := make([]string, 0, len(c.members))
		for id := range c.members {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		ctx.Respond(ids)
	case *terminateMsg:
		e := &pusher.Error{Code: pusher.CodeUnauthorized, Msg: "Connection terminated by the application"}
		for _, s := range c.subs {
			closeWithError(s.conn, e)
		}
	case *closeSubscribersMsg:
		for _, s := range c.subs {
			closeSocket(s.conn, m.code, m.msg)
		}
	case *idleTickMsg:
		c.maybeVacate(ctx)
	}
}

func (c *channelActor) subscribe(ctx actor.Context, m *subscribeMsg) {
	s := m.sub
	if i, ok := c.index[s.socketID]; ok {
		old := c.subs[i]
		if c.kind != pusher.KindPresence || (old.userID == s.userID && string(old.userInfo) == string(s.userInfo)) {
			// Subscribing twice is harmless: confirm again.
			if !m.silent {
				s.conn.Send(c.succeeded())
			}
			return
		}
		// The socket joins again as another member: it leaves as the old
		// one first, so the channel and the socket agree on who it is.
		c.unsubscribe(ctx, s.socketID)
	}
	newUser, firstHere, before := false, false, len(c.subs)
	if c.kind == pusher.KindPresence {
		mb := c.members[s.userID]
		if mb == nil {
			if len(c.members) >= c.maxUsers {
				sendEvent(s.conn, "pusher:subscription_error", c.name,
					`{"type":"LimitReached","error":"Presence channel has reached its limit of `+strconv.Itoa(c.maxUsers)+` members","status":403}`)
				ctx.Send(s.owner, &subscribeFailedMsg{channel: c.name})
				return
			}
			mb = &member{info: s.userInfo}
			c.members[s.userID] = mb
			newUser = true
		}
		mb.sockets++
		if mb.sockets == 1 {
			c.node.cluster.LocalPresence(c.key, s.userID, s.userInfo, true)
			firstHere = true
		}
	}
	c.index[s.socketID] = len(c.subs)
	c.subs = append(c.subs, s)
	c.storeStats()
	if firstHere {
		c.node.hooks.changed(c, before, s.userID, 1)
	} else {
		c.node.hooks.changed(c, before, "", 0)
	}

	if !m.silent {
		// Written at once: an answer to one socket, on a socket that has
		// usually nothing queued.
		s.conn.SendNow(c.succeeded())
		if c.cache {
			if c.last != nil && time.Since(c.lastAt) < cacheTTL {
				s.conn.Send(c.last)
			} else {
				sendEvent(s.conn, "pusher:cache_miss", c.name, "{}")
				c.node.hooks.s.CacheMiss(c.appID, c.name)
			}
		}
	}
	if newUser {
		c.memberAdded(s.userID, s.userInfo, s.socketID)
	}
}

func (c *channelActor) memberAdded(userID string, info json.RawMessage, exclude string) {
	data, _ := json.Marshal(struct {
		UserID   string          `json:"user_id"`
		UserInfo json.RawMessage `json:"user_info,omitempty"`
	}{userID, info})
	c.fanout(wsconn.NewPrepared(pusher.EncodeEvent("pusher_internal:member_added", c.name, string(data), "")), exclude)
}

func (c *channelActor) memberRemoved(userID string) {
	data := `{"user_id":` + string(pusher.AppendString(nil, userID)) + `}`
	c.fanout(wsconn.NewPrepared(pusher.EncodeEvent("pusher_internal:member_removed", c.name, data, "")), "")
}

func (c *channelActor) storeStats() {
	c.stats.subscriptions.Store(int64(len(c.subs)))
	c.stats.users.Store(int64(len(c.members)))
}

func (c *channelActor) succeeded() *wsconn.Prepared {
	if c.kind != pusher.KindPresence {
		// Frames are shared read-only: every subscriber gets the same one.
		if c.ok == nil {
			c.ok = wsconn.NewPrepared(pusher.EncodeEvent("pusher_internal:subscription_succeeded", c.name, "{}", ""))
		}
		return c.ok
	}
	type presence struct {
		IDs   []string                   `json:"ids"`
		Hash  map[string]json.RawMessage `json:"hash"`
		Count int                        `json:"count"`
	}
	p := presence{IDs: make([]string, 0, len(c.members)), Hash: make(map[string]json.RawMessage, len(c.members))}
	for id, mb := range c.members {
		p.IDs = append(p.IDs, id)
		info := mb.info
		if info == nil {
			info = json.RawMessage("null")
		}
		p.Hash[id] = info
	}
	p.Count = len(p.IDs)
	b, _ := json.Marshal(struct {
		Presence presence `json:"presence"`
	}{p})
	return wsconn.NewPrepared(pusher.EncodeEvent("pusher_internal:subscription_succeeded", c.name, string(b), ""))
}

func (c *channelActor) unsubscribe(ctx actor.Context, socketID string) {
	i, ok := c.index[socketID]
	if !ok {
		return
	}
	s := c.subs[i]
	before, lastHere := len(c.subs), false
	last := len(c.subs) - 1
	c.subs[i] = c.subs[last]
	c.index[c.subs[i].socketID] = i
	c.subs[last] = nil
	c.subs = c.subs[:last]
	delete(c.index, socketID)

	if c.kind == pusher.KindPresence {
		if mb := c.members[s.userID]; mb != nil {
			mb.sockets--
			if mb.sockets == 0 {
				lastHere = true
				c.node.cluster.LocalPresence(c.key, s.userID, nil, false)
				if mb.nodes == 0 {
					delete(c.members, s.userID)
					c.memberRemoved(s.userID)
				}
			}
		}
	}
	// The hooks first: CloseWebhooks waits for the subscriptions to be 0.
	if lastHere {
		c.node.hooks.changed(c, before, s.userID, -1)
	} else {
		c.node.hooks.changed(c, before, "", 0)
	}
	c.storeStats()
}

// remotePresence applies another node's report that a user joined (their
// first socket there) or left (their last socket there).
func (c *channelActor) remotePresence(m *remotePresenceMsg) {
	if c.kind != pusher.KindPresence {
		return
	}
	users := c.remote[m.node]
	if m.joined {
		if users == nil {
			users = map[string]json.RawMessage{}
			c.remote[m.node] = users
		}
		if _, ok := users[m.userID]; ok {
			return
		}
		users[m.userID] = m.info
		mb := c.members[m.userID]
		if mb == nil {
			mb = &member{info: m.info}
			c.members[m.userID] = mb
			mb.nodes++
			c.storeStats()
			c.memberAdded(m.userID, m.info, "")
			return
		}
		mb.nodes++
		return
	}
	if _, ok := users[m.userID]; !ok {
		return
	}
	delete(users, m.userID)
	if len(users) == 0 {
		delete(c.remote, m.node)
	}
	c.remoteLeft(m.userID)
}

func (c *channelActor) remoteLeft(userID string) {
	mb := c.members[userID]
	if mb == nil {
		return
	}
	mb.nodes--
	if mb.nodes == 0 && mb.sockets == 0 {
		delete(c.members, userID)
		c.storeStats()
		c.memberRemoved(userID)
	}
}

// nodeGone drops every member another node reported: it left the cluster.
func (c *channelActor) nodeGone(node string) {
	users := c.remote[node]
	delete(c.remote, node)
	ids := make([]string, 0, len(users))
	for id := range users {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c.remoteLeft(id)
	}
}

// nodeState makes another node's members exactly users.
func (c *channelActor) nodeState(node string, users map[string]json.RawMessage) {
	if c.kind != pusher.KindPresence {
		return
	}
	var left []string
	for id := range c.remote[node] {
		if _, ok := users[id]; !ok {
			left = append(left, id)
		}
	}
	sort.Strings(left)
	for _, id := range left {
		c.remotePresence(&remotePresenceMsg{node: node, userID: id})
	}
	for id, info := range users {
		c.remotePresence(&remotePresenceMsg{node: node, userID: id, info: info, joined: true})
	}
}

// fanout queues f, one encoded frame shared by all, for every subscriber
// but exclude.
func (c *channelActor) fanout(f *wsconn.Prepared, exclude string) {
	sendTo(c.subs, f, exclude, Socket.Send)
}

// fanoutNow sends f to every subscriber but exclude with SendNow, which
// writes to a socket that keeps up on the calling goroutine. So a big
// channel's subscribers are cut into parts written in parallel by the
// fan-out workers, one part here. It returns when all parts are sent, so
// that each socket gets the next event after this one.
func (c *channelActor) fanoutNow(f *wsconn.Prepared, exclude string) {
	subs := c.subs
	parts := min(len(subs)/fanoutPart, fanoutWorkers()+1)
	if parts <= 1 {
		sendTo(subs, f, exclude, Socket.SendNow)
		return
	}
	size := (len(subs) + parts - 1) / parts
	for lo := size; lo < len(subs); lo += size {
		job := fanoutJob{subs: subs[lo:min(lo+size, len(subs))], frame: f, exclude: exclude, done: &c.parts}
		c.parts.Add(1)
		select {
		case fanoutQueue <- job:
		default: // every worker is busy: send this part here too
			job.run()
		}
	}
	sendTo(subs[:size], f, exclude, Socket.SendNow)
	c.parts.Wait()
}

// sendTo sends f to every subscriber but exclude with send (Send or SendNow).
func sendTo(subs []*subscriber, f *wsconn.Prepared, exclude string, send func(Socket, *wsconn.Prepared) bool) {
	for _, s := range subs {
		if s.socketID != exclude {
			send(s.conn, f)
		}
	}
}

// fanoutPart is the fewest subscribers worth handing to another goroutine.
const fanoutPart = 256

// fanoutJob is one part of a fan-out, for a worker.
type fanoutJob struct {
	subs    []*subscriber
	frame   *wsconn.Prepared
	exclude string
	done    *sync.WaitGroup
}

func (j fanoutJob) run() {
	sendTo(j.subs, j.frame, j.exclude, Socket.SendNow)
	j.done.Done()
}

// fanoutQueue feeds the fan-out workers: GOMAXPROCS-1 goroutines shared by
// every channel of the process, started with the first big fan-out.
var (
	fanoutQueue   = make(chan fanoutJob, 64)
	fanoutStarted sync.Once
	fanoutCount   int
)

// fanoutWorkers starts the workers once and returns how many there are.
func fanoutWorkers() int {
	fanoutStarted.Do(func() {
		fanoutCount = runtime.GOMAXPROCS(0) - 1
		for range fanoutCount {
			go func() {
				for j := range fanoutQueue {
					j.run()
				}
			}()
		}
	})
	return fanoutCount
}

func (c *channelActor) maybeVacate(ctx actor.Context) {
	if len(c.subs) > 0 || len(c.remote) > 0 {
		return
	}
	if c.last != nil && time.Since(c.lastAt) < cacheTTL {
		return
	}
	if c.node.reg.vacate(c.key, ctx.Self(), c.processed) {
		c.vacated = true
		c.last = nil
		ctx.Stop(ctx.Self())
	}
}
