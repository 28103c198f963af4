package actors

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/parley-chat/parley/pusher"
)

// Foreground sockets: which chat users are connected with an app in the
// foreground, cluster-wide, for push notifications (a member with such a
// socket anywhere gets none). A socket counts for a user while it is
// subscribed to the user's own channel private-user.{id} of the chat app
// (which the chat API authorizes for that user alone) and its app has not
// marked it background with the client event AppStateEvent on that channel.
// Each node counts its own sockets and reports a user's 0↔1 transitions to
// the others (Presence.Foreground), as it does for signed-in users.

// UserChannelPrefix is the chat's per-user channel.
const UserChannelPrefix = "private-user."

// AppStateEvent is the client event an app sends on its user's own channel
// when it goes to the background ({"state":"background"}) or comes back
// ({"state":"foreground"}). The server consumes it: it reaches no other
// socket and no webhook.
const AppStateEvent = "client-parley-app-state"

// foreground is the node's foreground sockets and what the other nodes
// reported. Its methods are safe for concurrent use; reports to the cluster
// are made under mu, so they leave in the order of the changes.
type foreground struct {
	mu      sync.Mutex
	app     string                     // the chat app's id; "" = nothing counts
	sockets map[string]*fgSocket       // socket id → the user channel it counts for
	local   map[string]int             // ChannelKey(app, user) → foreground sockets here
	remote  map[string]map[string]bool // key → processes that reported one
	report  func(appID, userID string, on bool)
}

type fgSocket struct {
	user       string
	background bool
}

func newForeground(report func(appID, userID string, on bool)) *foreground {
	return &foreground{sockets: map[string]*fgSocket{}, local: map[string]int{}, remote: map[string]map[string]bool{}, report: report}
}

// userOf is the user of a chat app's user channel, or "".
func (f *foreground) userOf(appID, channel string) string {
	if appID != f.app || f.app == "" {
		return ""
	}
	user, _ := strings.CutPrefix(channel, UserChannelPrefix)
	if user == channel {
		return ""
	}
	return user
}

// subscribed: socketID joined channel. A socket counts for the first user
// channel it joins.
func (f *foreground) subscribed(appID, socketID, channel string) {
	user := f.userOf(appID, channel)
	if user == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sockets[socketID] != nil {
		return
	}
	f.sockets[socketID] = &fgSocket{user: user}
	f.add(user, 1)
}

// unsubscribed: socketID left channel (or the socket is gone: channel "").
func (f *foreground) unsubscribed(appID, socketID, channel string) {
	user := f.userOf(appID, channel)
	if user == "" && channel != "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sockets[socketID]
	if s == nil || (channel != "" && s.user != user) {
		return
	}
	delete(f.sockets, socketID)
	if !s.background {
		f.add(s.user, -1)
	}
}

// setState marks the socket background or foreground; false when the
// socket does not count for channel's user (the event is then an ordinary
// client event).
func (f *foreground) setState(appID, socketID, channel string, background bool) bool {
	user := f.userOf(appID, channel)
	if user == "" {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sockets[socketID]
	if s == nil || s.user != user {
		return false
	}
	if s.background != background {
		s.background = background
		f.add(user, map[bool]int{true: -1, false: 1}[background])
	}
	return true
}

func (f *foreground) add(user string, d int) {
	key := channelKey(f.app, user)
	n := f.local[key] + d
	switch {
	case n <= 0:
		delete(f.local, key)
		if d < 0 {
			f.report(f.app, user, false)
		}
	default:
		f.local[key] = n
		if n == 1 && d > 0 {
			f.report(f.app, user, true)
		}
	}
}

// online: the user has a foreground socket on this node or on another.
func (f *foreground) online(appID, user string) bool {
	key := channelKey(appID, user)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.local[key] > 0 || len(f.remote[key]) > 0
}

func (f *foreground) mirror(process, key string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		if f.remote[key] == nil {
			f.remote[key] = map[string]bool{}
		}
		f.remote[key][process] = true
		return
	}
	f.forgetKey(process, key)
}

func (f *foreground) forgetKey(process, key string) {
	if ps := f.remote[key]; ps != nil {
		delete(ps, process)
		if len(ps) == 0 {
			delete(f.remote, key)
		}
	}
}

// mirrorAll makes process's users exactly keys.
func (f *foreground) mirrorAll(process string, keys map[string]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for key, ps := range f.remote {
		if ps[process] && !keys[key] {
			f.forgetKey(process, key)
		}
	}
	for key := range keys {
		if f.remote[key] == nil {
			f.remote[key] = map[string]bool{}
		}
		f.remote[key][process] = true
	}
}

func (f *foreground) forget(process string) { f.mirrorAll(process, nil) }

// appState reads AppStateEvent's data: background, and whether it is one.
func appState(data string) (background, ok bool) {
	var d struct {
		State string `json:"state"`
	}
	if pusher.DecodeData(json.RawMessage(data), &d) != nil {
		return false, false
	}
	switch d.State {
	case "background":
		return true, true
	case "foreground":
		return false, true
	}
	return false, false
}

// TrackForeground makes the chat app's user channels count as their users'
// foreground sockets. Call it once, before the node serves.
func (n *Node) TrackForeground(appID string) { n.fg.app = appID }

// UserForeground reports whether userID of appID has a foreground socket on
// any node (as this node last heard from the others).
func (n *Node) UserForeground(appID, userID string) bool { return n.fg.online(appID, userID) }

// MirrorForeground applies another process's report that userID has a
// first foreground socket there (on) or no longer any.
func (n *Node) MirrorForeground(process, appID, userID string, on bool) {
	n.fg.mirror(process, channelKey(appID, userID), on)
}

// MirrorForegroundAll makes the users with a foreground socket on another
// process exactly those of keys (ChannelKey(appID, userID)).
func (n *Node) MirrorForegroundAll(process string, keys map[string]bool) {
	n.fg.mirrorAll(process, keys)
}
