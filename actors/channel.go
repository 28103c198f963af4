package actors

import (
	"encoding/json"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/wsconn"
)

// MaxPresenceMembers is Pusher's limit of distinct users in a presence channel.
const MaxPresenceMembers = 100

// cacheTTL is how long a cache channel keeps its last event (Pusher: 30 min).
const cacheTTL = 30 * time.Minute

// member is one user in a presence channel.
type member struct {
	info    json.RawMessage
	sockets int
}

// channelActor owns one occupied channel on this node: its subscribers, its
// presence members and, for cache channels, the last event. All fields are
// only touched inside Receive.
type channelActor struct {
	key    string // set at construction
	name   string // set at construction
	kind   channelKind
	cache  bool
	router *actor.PID
	stats  *channelStats // written here, read by the router

	subs      []*subscriber  // fan-out order; swap-removed
	index     map[string]int // socket id → position in subs
	members   map[string]*member
	last      *wsconn.Prepared // cache channels: last event
	lastAt    time.Time
	expiry    *time.Timer // cache channels: fires when the cached event expires
	processed uint64
}

func newChannel(key, name string, router *actor.PID, stats *channelStats) *channelActor {
	kind, cache := classify(name)
	c := &channelActor{key: key, name: name, kind: kind, cache: cache, router: router, stats: stats, index: map[string]int{}}
	if kind == kindPresence {
		c.members = map[string]*member{}
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
	case *subscribeMsg:
		c.processed++
		c.subscribe(ctx, m)
	case *unsubscribeMsg:
		c.unsubscribe(m.socketID)
		c.maybeVacate(ctx)
	case *publishMsg:
		if c.cache {
			c.processed++
			c.last, c.lastAt = m.frame, time.Now()
			c.expiry.Reset(cacheTTL)
		}
		c.fanout(m.frame, m.exclude)
		c.maybeVacate(ctx)
	case *clientEventMsg:
		if _, ok := c.index[m.sender]; ok {
			c.fanout(m.frame, m.sender)
		}
	case *presenceUsersMsg:
		ids := make([]string, 0, len(c.members))
		for id := range c.members {
			ids = append(ids, id)
		}
		ctx.Respond(ids)
	case *terminateMsg:
		e := &wsconn.Error{Code: wsconn.CodeUnauthorized, Msg: "Connection terminated by the application"}
		for _, s := range c.subs {
			s.conn.CloseWithError(e)
		}
	case *idleTickMsg:
		c.maybeVacate(ctx)
	}
}

func (c *channelActor) subscribe(ctx actor.Context, m *subscribeMsg) {
	s := m.sub
	if _, ok := c.index[s.socketID]; ok {
		// Subscribing twice is harmless: confirm again.
		if !m.silent {
			s.conn.Send(c.succeeded())
		}
		return
	}
	newUser := false
	if c.kind == kindPresence {
		mb := c.members[s.userID]
		if mb == nil {
			if len(c.members) >= MaxPresenceMembers {
				s.conn.SendEvent("pusher:subscription_error", c.name,
					`{"type":"LimitReached","error":"Presence channel has reached its limit of 100 members","status":403}`)
				ctx.Send(s.owner, &subscribeFailedMsg{channel: c.name})
				return
			}
			mb = &member{info: s.userInfo}
			c.members[s.userID] = mb
			newUser = true
		}
		mb.sockets++
	}
	c.index[s.socketID] = len(c.subs)
	c.subs = append(c.subs, s)
	c.stats.subscriptions.Store(int64(len(c.subs)))
	c.stats.users.Store(int64(len(c.members)))

	if !m.silent {
		s.conn.Send(c.succeeded())
		if c.cache {
			if c.last != nil && time.Since(c.lastAt) < cacheTTL {
				s.conn.Send(c.last)
			} else {
				s.conn.SendEvent("pusher:cache_miss", c.name, "{}")
			}
		}
	}
	if newUser {
		data, _ := json.Marshal(struct {
			UserID   string          `json:"user_id"`
			UserInfo json.RawMessage `json:"user_info,omitempty"`
		}{s.userID, s.userInfo})
		c.fanout(wsconn.NewPrepared(wsconn.EncodeEvent("pusher_internal:member_added", c.name, string(data), "")), s.socketID)
	}
}

func (c *channelActor) succeeded() *wsconn.Prepared {
	data := "{}"
	if c.kind == kindPresence {
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
		data = string(b)
	}
	return wsconn.NewPrepared(wsconn.EncodeEvent("pusher_internal:subscription_succeeded", c.name, data, ""))
}

func (c *channelActor) unsubscribe(socketID string) {
	i, ok := c.index[socketID]
	if !ok {
		return
	}
	s := c.subs[i]
	last := len(c.subs) - 1
	c.subs[i] = c.subs[last]
	c.index[c.subs[i].socketID] = i
	c.subs[last] = nil
	c.subs = c.subs[:last]
	delete(c.index, socketID)

	if c.kind == kindPresence {
		if mb := c.members[s.userID]; mb != nil {
			mb.sockets--
			if mb.sockets <= 0 {
				delete(c.members, s.userID)
				data := `{"user_id":` + string(wsconn.AppendString(nil, s.userID)) + `}`
				c.fanout(wsconn.NewPrepared(wsconn.EncodeEvent("pusher_internal:member_removed", c.name, data, "")), "")
			}
		}
	}
	c.stats.subscriptions.Store(int64(len(c.subs)))
	c.stats.users.Store(int64(len(c.members)))
}

// fanout hands the same encoded frame to every subscriber but exclude.
func (c *channelActor) fanout(f *wsconn.Prepared, exclude string) {
	for _, s := range c.subs {
		if s.socketID != exclude {
			s.conn.Send(f)
		}
	}
}

func (c *channelActor) maybeVacate(ctx actor.Context) {
	if len(c.subs) > 0 {
		return
	}
	if c.last != nil && time.Since(c.lastAt) < cacheTTL {
		return
	}
	c.last = nil
	ctx.Send(c.router, &vacatedMsg{key: c.key, pid: ctx.Self(), processed: c.processed})
}
