package unread

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/push"
)

// Push notifications are decided here, by the user's counter: it has one
// owner in a cluster (a grain) and knows the count the badge shows. For
// each new message from someone else it pushes to the user's devices when
// the user has no foreground socket on any node and has not muted the
// matter. At most one push per matter leaves per Window: the first at
// once, later ones held and pushed when the window ends, with the latest
// message and the count as it is then (none if the user came to the
// foreground or read the matter meanwhile). The devices, titles and mutes
// are loaded from the database when a push needs them and dropped at every
// reconciliation and when the user's devices or mutes change
// (Counters.PushTargetsChanged), so a user without messages costs nothing.

// PushOptions turn push notifications on.
type PushOptions struct {
	// Send delivers a push to the devices; it must not block
	// (push.Dispatcher.Push).
	Send func(n push.Notification, devices []persistence.Device)
	// Targets loads a user's devices and matters (persistence.Store's
	// PushTargets).
	Targets func(ctx context.Context, userID int64) (persistence.PushTargets, error)
	// Foreground reports whether the user has a foreground socket on any
	// node.
	Foreground func(userID int64) bool
	// Window: at most one push per matter per Window; default 3 s.
	Window time.Duration
}

// PushInfo is what a push shows of a message, given with its Incr.
type PushInfo struct {
	SenderID   int64
	SenderName string
	Text       string // already cut to the configured length; "" for none
}

// pushSeen is how many message ids a counter remembers having considered,
// so a notification delivered twice is pushed once.
const pushSeen = 1024

// pushState is a counter's push bookkeeping; only touched inside Receive.
type pushState struct {
	targets *persistence.PushTargets // nil: load when needed
	seen    map[int64]struct{}
	order   []int64                      // seen, oldest first
	last    map[int64]time.Time          // per matter: when its last push left
	pending map[int64]*push.Notification // per matter: held until last + Window
	timer   *time.Timer
}

// pushFlushMsg: a held push may be due.
type pushFlushMsg struct{}

// considerPush is called for every new message from someone else.
func (c *counter) considerPush(ctx actor.Context, matterID, messageID int64, info *PushInfo) {
	po := c.opts.Push
	if po == nil || info == nil || info.SenderID == c.userID || c.firstSight(messageID) {
		return
	}
	if po.Foreground(c.userID) {
		return
	}
	n := &push.Notification{UserID: c.userID, MatterID: matterID, MessageID: messageID, SenderID: info.SenderID,
		SenderName: info.SenderName, Text: info.Text}
	if last, ok := c.push.last[matterID]; ok && time.Since(last) < po.Window {
		if c.push.pending == nil {
			c.push.pending = map[int64]*push.Notification{}
		}
		c.push.pending[matterID] = n
		c.armPushTimer(ctx)
		return
	}
	// A push held for this matter whose timer has not run yet is superseded.
	delete(c.push.pending, matterID)
	c.sendPush(n)
}

// firstSight records messageID; false when it was seen before.
func (c *counter) firstSight(messageID int64) bool {
	if c.push.seen == nil {
		c.push.seen = map[int64]struct{}{}
	}
	if _, dup := c.push.seen[messageID]; dup {
		return true
	}
	c.push.seen[messageID] = struct{}{}
	c.push.order = append(c.push.order, messageID)
	if len(c.push.order) > pushSeen {
		delete(c.push.seen, c.push.order[0])
		c.push.order = c.push.order[1:]
	}
	return false
}

// sendPush pushes n to the user's devices unless the matter is muted,
// with the matter's title and the user's total unread count.
func (c *counter) sendPush(n *push.Notification) {
	t := c.pushTargets(n.MatterID)
	if t == nil {
		return
	}
	mp, ok := t.Matters[n.MatterID]
	if !ok || mp.Muted || len(t.Devices) == 0 {
		return
	}
	if c.push.last == nil {
		c.push.last = map[int64]time.Time{}
	}
	c.push.last[n.MatterID] = time.Now()
	n.Title = mp.Title
	for _, st := range c.matters {
		n.Badge += st.unread
	}
	c.opts.Push.Send(*n, t.Devices)
}

// pushTargets are the user's devices and matters, loaded when missing or
// when they lack matterID (joined since the load).
func (c *counter) pushTargets(matterID int64) *persistence.PushTargets {
	if t := c.push.targets; t != nil {
		if _, ok := t.Matters[matterID]; ok {
			return t
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.QueryTimeout)
	defer cancel()
	t, err := c.opts.Push.Targets(ctx, c.userID)
	if err != nil {
		c.opts.Log.Warn("push: loading the user's devices failed; no push", "user_id", c.userID, slog.Any("error", err))
		return nil
	}
	c.push.targets = &t
	return &t
}

// armPushTimer sets the timer for the earliest held push.
func (c *counter) armPushTimer(ctx actor.Context) {
	var due time.Time
	for matterID := range c.push.pending {
		if d := c.push.last[matterID].Add(c.opts.Push.Window); due.IsZero() || d.Before(due) {
			due = d
		}
	}
	if !due.IsZero() {
		c.after(ctx, &c.push.timer, max(time.Until(due), time.Millisecond), pushFlushMsg{})
	}
}

// flushPushes sends the held pushes whose window ended, unless the user
// came to the foreground or has nothing unread left in the matter.
func (c *counter) flushPushes(ctx actor.Context) {
	fg := c.opts.Push.Foreground(c.userID)
	for matterID, n := range c.push.pending {
		if time.Since(c.push.last[matterID]) < c.opts.Push.Window {
			continue
		}
		delete(c.push.pending, matterID)
		if st := c.matters[matterID]; fg || st == nil || st.unread == 0 {
			continue
		}
		c.sendPush(n)
	}
	c.armPushTimer(ctx)
}
