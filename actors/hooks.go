package actors

import (
	"context"
	"hash/fnv"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/actors/webhook"
	"github.com/parley-chat/parley/pusher"
)

// hooks decides when a channel's webhook events happen and which node sends
// them. Each channel has one owner among the cluster's live members
// (rendezvous hashing of their processes, so every node agrees once they see
// the same members, and a member that rejoins as a new incarnation keeps
// its channels); every node reports its own state of the channel (its
// socket count and, for presence, the users with a socket on it) to the
// owner whenever it changes, and the owner sums the states: channel_occupied
// when the first socket anywhere joins, channel_vacated when the last one
// anywhere leaves, member_added/member_removed when a user's first/last
// connection anywhere comes or goes. A single node owns every channel.
//
// When the members change, each node hands its states over to the new
// owners as a sync (no events for it); when a node leaves or dies, the
// owners drop its states (events for what it held), and if that node comes
// back (a partition that healed, a frozen process that runs again), the
// states it sends then are applied with events, so that every user reported
// gone and still there is reported back. A node without a quorum sends no
// events at all: the side that serves decides. States are kept per process
// (the member id less its incarnation). client_event and cache_miss happen
// on the node of the socket concerned and are sent there.
type hooks struct {
	n *Node
	s *webhook.Sender // nil when no app has webhooks

	mu     sync.Mutex
	local  map[string]*nodeState  // guarded by mu; channel key → this node's state
	sentTo map[string]string      // guarded by mu; channel key → the owner (a process) last told
	owned  map[string]*ownedState // guarded by mu; channels this node sends hooks for
	gone   map[string]bool        // guarded by mu; processes whose states were dropped with events
}

// nodeState is what one node holds of a channel.
type nodeState struct {
	subs  int
	users map[string]bool // presence: users with a socket there
}

func (s *nodeState) empty() bool { return s.subs == 0 && len(s.users) == 0 }

// ownedState sums every node's state of a channel this node owns.
type ownedState struct {
	nodes map[string]*nodeState
	total int
	users map[string]int // user → nodes where they have a socket
}

// Event types whose counting needs the cluster-wide state.
var stateHookTypes = []string{"channel_occupied", "channel_vacated", "member_added", "member_removed", "subscription_count"}

func newHooks(n *Node) *hooks {
	h := &hooks{n: n, local: map[string]*nodeState{}, sentTo: map[string]string{}, owned: map[string]*ownedState{}, gone: map[string]bool{}}
	for _, a := range n.cfg.Apps {
		for _, w := range a.Webhooks {
			shown := w.URL
			if u, err := url.Parse(w.URL); err == nil {
				shown = u.Redacted()
			}
			n.log.Info("webhook", "app", a.ID, "url", shown, "events", strings.Join(w.EventTypes, ","))
			if h.s == nil {
				h.s = webhook.New(n.cfg.Apps, webhook.Options{VacateDelay: n.cfg.WebhookVacateDelay, Log: n.log})
			}
		}
	}
	return h
}

// close sends what is delayed and waits for the queues to empty or ctx to end.
func (h *hooks) close(ctx context.Context) { h.s.Close(ctx) }

// changed is called by a channel actor after a subscription came or went:
// before is its socket count before, userDelta +1 when userID's first socket
// here joined a presence channel, -1 when the last one left.
func (h *hooks) changed(c *channelActor, before int, userID string, userDelta int) {
	if h.s == nil || strings.HasPrefix(c.name, "#") || !h.s.Wants(c.appID, stateHookTypes...) {
		return
	}
	after := len(c.subs)
	if userDelta == 0 && (before == 0) == (after == 0) && (c.kind == pusher.KindPresence || !h.s.Wants(c.appID, "subscription_count")) {
		return // nothing an owner counts
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	self, ps := h.members()
	owner := ownerOf(c.key, self, ps)
	st := h.local[c.key]
	if st == nil {
		st = &nodeState{users: map[string]bool{}}
		h.local[c.key] = st
	} else if old := h.sentTo[c.key]; old != owner {
		// The members changed and peersChanged has not run yet.
		h.handOver(c.key, st, old, owner, self, ps)
	}
	st.subs = after
	switch {
	case userDelta > 0:
		st.users[userID] = true
	case userDelta < 0:
		delete(st.users, userID)
	}
	h.report(owner, self, ps, c.appID, c.name, st, false)
	h.sentTo[c.key] = owner
	if st.empty() {
		delete(h.local, c.key)
		delete(h.sentTo, c.key)
	}
}

// members is this node's process and its live peers' ("" and none on a
// single node).
func (h *hooks) members() (string, []string) {
	if h.n.routes != nil {
		return h.n.routes.Members()
	}
	return "", nil
}

// WebhookOwner is the process that sends a channel's webhooks among self
// and peers (processes): the highest rendezvous score of key and process.
func WebhookOwner(key, self string, peers []string) string { return ownerOf(key, self, peers) }

// ownerOf is the process that sends the channel's hooks: the highest
// rendezvous score of key and process.
func ownerOf(key, self string, peers []string) string {
	best, bestScore := self, score(self, key)
	for _, p := range peers {
		if s := score(p, key); s > bestScore || (s == bestScore && p > best) {
			best, bestScore = p, s
		}
	}
	return best
}

func score(member, key string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(member))
	f.Write([]byte{0})
	f.Write([]byte(key))
	x := f.Sum64()
	// splitmix64's finaliser: FNV's low bits mix poorly on their own.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// report sends this node's state of a channel to its owner; with mu held.
func (h *hooks) report(owner, self string, ps []string, appID, channel string, st *nodeState, sync bool) {
	if owner == self {
		users := make(map[string]bool, len(st.users))
		for u := range st.users {
			users[u] = true
		}
		h.apply(self, appID, channel, st.subs, users, sync)
		return
	}
	if slices.Contains(ps, owner) {
		h.n.routes.SendState(owner, stateOf(self, appID, channel, st, sync))
	}
}

func stateOf(self, appID, channel string, st *nodeState, sync bool) WebhookState {
	ws := WebhookState{Node: self, AppID: appID, Channel: channel, Subscriptions: st.subs, Sync: sync}
	for u := range st.users {
		ws.Users = append(ws.Users, u)
	}
	sort.Strings(ws.Users)
	return ws
}

// ApplyWebhookState applies a state another node (m.Node, a process)
// reported for a channel this node owns.
func (n *Node) ApplyWebhookState(m WebhookState) {
	h := n.hooks
	users := make(map[string]bool, len(m.Users))
	for _, u := range m.Users {
		users[u] = true
	}
	h.mu.Lock()
	h.apply(m.Node, m.AppID, m.Channel, m.Subscriptions, users, m.Sync && !h.gone[m.Node])
	h.mu.Unlock()
}

// apply replaces what node holds of a channel this node owns and sends the
// events the difference makes (none for a sync, and none while this node has
// no quorum: the side that serves decides, and a node cut off would report
// the users of the others as gone); with mu held.
func (h *hooks) apply(node, appID, channel string, subs int, users map[string]bool, sync bool) {
	sync = sync || h.n.cut.Load()
	key := channelKey(appID, channel)
	o := h.owned[key]
	if o == nil {
		o = &ownedState{nodes: map[string]*nodeState{}, users: map[string]int{}}
		h.owned[key] = o
	}
	prev := o.nodes[node]
	if prev == nil {
		prev = &nodeState{}
	}
	before := o.total
	o.total += subs - prev.subs
	if before == 0 && o.total > 0 {
		h.s.Occupied(appID, channel, sync)
	}
	var added, removed []string
	for u := range users {
		if !prev.users[u] {
			if o.users[u]++; o.users[u] == 1 {
				added = append(added, u)
			}
		}
	}
	for u := range prev.users {
		if !users[u] {
			if o.users[u]--; o.users[u] <= 0 {
				delete(o.users, u)
				removed = append(removed, u)
			}
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	for _, u := range added {
		h.s.MemberAdded(appID, channel, u, sync)
	}
	for _, u := range removed {
		h.s.MemberRemoved(appID, channel, u, sync)
	}
	if before > 0 && o.total == 0 {
		h.s.Vacated(appID, channel, sync)
	}
	if o.total != before && !sync && !pusher.IsPresence(channel) {
		h.s.SubscriptionCount(appID, channel, o.total)
	}
	if subs == 0 && len(users) == 0 {
		delete(o.nodes, node)
	} else {
		o.nodes[node] = &nodeState{subs: subs, users: users}
	}
	if len(o.nodes) == 0 {
		delete(h.owned, key)
	}
}

// reset reports that a channel stopped by its supervisor has nobody here.
func (h *hooks) reset(c *channelActor) {
	if h.s == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.local[c.key]
	if st == nil {
		return
	}
	self, ps := h.members()
	h.report(h.sentTo[c.key], self, ps, c.appID, c.name, &nodeState{}, false)
	delete(h.local, c.key)
	delete(h.sentTo, c.key)
}

// peersChanged hands this node's states over to the channels' new owners,
// and tells the old ones, if still members, to forget them.
func (h *hooks) peersChanged() {
	if h.s == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	self, ps := h.members()
	for key, st := range h.local {
		if owner, old := ownerOf(key, self, ps), h.sentTo[key]; owner != old {
			h.handOver(key, st, old, owner, self, ps)
		}
	}
}

// handOver gives a channel's new owner this node's state as a sync, and
// tells the old owner to forget it; with mu held.
func (h *hooks) handOver(key string, st *nodeState, old, owner, self string, ps []string) {
	appID, channel, _ := strings.Cut(key, "\x00")
	h.report(owner, self, ps, appID, channel, st, true)
	h.moved(key, old, owner, self, ps)
}

// moved records that a channel's state goes to owner from now on, and tells
// the old owner, if still a member (report skips one that is not), to forget
// it; with mu held.
func (h *hooks) moved(key, old, owner, self string, ps []string) {
	appID, channel, _ := strings.Cut(key, "\x00")
	h.report(old, self, ps, appID, channel, &nodeState{}, true)
	h.sentTo[key] = owner
}

// resync sends a node every state of the channels it owns, as one list: one
// that (re)admitted this node (sync: what was sent before it knew this node
// may have been dropped, and any difference was told by the node that owned
// the channel then), or one to which what was queued was dropped (not sync:
// the events of the difference were never sent). The owner forgets this
// node's states of channels not in the list.
func (h *hooks) resync(owner string, sync bool) {
	if h.s == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	self, ps := h.members()
	if !slices.Contains(ps, owner) {
		return
	}
	msg := WebhookStates{Node: self, Sync: sync, Members: append([]string{self}, ps...)}
	sort.Strings(msg.Members)
	for key, st := range h.local {
		if ownerOf(key, self, ps) != owner {
			continue
		}
		appID, channel, _ := strings.Cut(key, "\x00")
		m := stateOf(self, appID, channel, st, sync)
		if old := h.sentTo[key]; old != owner {
			m.Sync = true // a hand-over, as in handOver
			h.moved(key, old, owner, self, ps)
		}
		msg.States = append(msg.States, m)
	}
	h.n.routes.SendStates(owner, msg)
}

// remoteAll applies every state another node holds of channels this node
// owns, and forgets its states of the channels not listed. A node whose
// states this node dropped with events (it left the live set) has them
// applied with events: the users reported gone that are still there are
// reported back.
func (h *hooks) remoteAll(m WebhookStates) {
	h.mu.Lock()
	defer h.mu.Unlock()
	back := h.gone[m.Node]
	delete(h.gone, m.Node)
	listed := make(map[string]bool, len(m.States))
	for _, st := range m.States {
		users := make(map[string]bool, len(st.Users))
		for _, u := range st.Users {
			users[u] = true
		}
		h.apply(m.Node, st.AppID, st.Channel, st.Subscriptions, users, st.Sync && !back)
		listed[channelKey(st.AppID, st.Channel)] = true
	}
	self, ps := h.members()
	// The sender lists the channels it believes this node owns; while the
	// two see different members, what it leaves out may just be owned by
	// another in its view: that is forgotten silently.
	same := len(m.Members) == 0 || sameMembers(m.Members, self, ps)
	for key, o := range h.owned {
		if _, ok := o.nodes[m.Node]; ok && !listed[key] {
			// Silently where this node no longer owns the channel: a
			// hand-over whose "forget it" was lost.
			appID, channel, _ := strings.Cut(key, "\x00")
			h.apply(m.Node, appID, channel, 0, nil, m.Sync || !same || ownerOf(key, self, ps) != self)
		}
	}
}

// sameMembers reports whether members (sorted processes) are self and ps.
func sameMembers(members []string, self string, ps []string) bool {
	mine := append([]string{self}, ps...)
	sort.Strings(mine)
	return slices.Equal(mine, members)
}

// nodeGone drops a departed node's states (by process): its sockets are
// gone, as far as this side knows; with announce, with events (the states it
// sends if it comes back are then applied with events too).
func (h *hooks) nodeGone(node string, announce bool) {
	if h.s == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	announce = announce && !h.n.cut.Load()
	for key, o := range h.owned {
		if _, ok := o.nodes[node]; ok {
			appID, channel, _ := strings.Cut(key, "\x00")
			h.apply(node, appID, channel, 0, nil, !announce)
			if announce {
				h.gone[node] = true
			}
		}
	}
}

// CloseWebhooks sends the webhooks still delayed at once and waits until
// everything queued is sent, or ctx ends. Call it after Drain.
func (n *Node) CloseWebhooks(ctx context.Context) {
	if n.hooks.s == nil {
		return
	}
	// The sockets are gone, but their channels may not have handled every
	// unsubscribe yet: wait for them, so their vacates are sent too.
	for n.reg.subscriptions() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	n.hooks.close(ctx)
}

// What the cluster (package cluster) tells this node's webhook owners.

// ApplyWebhookStates applies every state another node holds of the channels
// this node owns (see remoteAll).
func (n *Node) ApplyWebhookStates(m WebhookStates) { n.hooks.remoteAll(m) }

// WebhooksNodeGone drops a departed process's states (see nodeGone).
func (n *Node) WebhooksNodeGone(process string, announce bool) { n.hooks.nodeGone(process, announce) }

// WebhooksResync sends owner every state of the channels it owns (see
// resync).
func (n *Node) WebhooksResync(owner string, sync bool) { n.hooks.resync(owner, sync) }

// WebhooksPeersChanged hands this node's states over to the channels' new
// owners after the members changed.
func (n *Node) WebhooksPeersChanged() { n.hooks.peersChanged() }
