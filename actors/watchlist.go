package actors

import (
	"encoding/json"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// MaxWatchlist is the most user ids one signed-in user may watch (Pusher: 100).
const MaxWatchlist = 100

// signedInMsg and signedOutMsg tell the watchlist actor a socket's user
// identity changed.
type signedInMsg struct {
	appID     string
	userID    string
	socketID  string
	conn      Socket
	watchlist []string
}

type signedOutMsg struct {
	appID    string
	userID   string
	socketID string
}

// watcher is one signed-in socket waiting for online/offline news.
type watcher struct {
	socketID string
	conn     Socket
}

// watchlistActor owns who is online (signed in on at least one socket) per
// app and who watches whom, and sends pusher_internal:watchlist_events. All
// fields are only touched inside Receive.
type watchlistActor struct {
	node     *Node                          // set at construction
	online   map[string]int                 // appID\x00userID → signed-in sockets on this node
	remote   map[string]map[string]bool     // appID\x00userID → nodes where the user is signed in
	watchers map[string]map[string]*watcher // appID\x00watched userID → socket id → watcher
	watching map[string][]string            // socket id → keys it watches
}

func newWatchlist(n *Node) actor.Actor {
	return &watchlistActor{node: n, online: map[string]int{}, remote: map[string]map[string]bool{},
		watchers: map[string]map[string]*watcher{}, watching: map[string][]string{}}
}

// remoteOnlineMsg is another node's news that a user is signed in there (on
// at least one socket) or no longer.
type remoteOnlineMsg struct {
	node, key, userID string
	online            bool
}

func (w *watchlistActor) isOnline(key string) bool {
	return w.online[key] > 0 || len(w.remote[key]) > 0
}

func (w *watchlistActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *signedInMsg:
		key := channelKey(m.appID, m.userID)
		was := w.isOnline(key)
		w.online[key]++
		if w.online[key] == 1 {
			w.node.cluster.SignedIn(m.appID, m.userID, true)
			if !was {
				w.notify(key, "online", m.userID)
			}
		}
		if len(m.watchlist) == 0 {
			return
		}
		var nowOnline []string
		for _, id := range m.watchlist {
			k := channelKey(m.appID, id)
			if w.watchers[k] == nil {
				w.watchers[k] = map[string]*watcher{}
			}
			w.watchers[k][m.socketID] = &watcher{socketID: m.socketID, conn: m.conn}
			w.watching[m.socketID] = append(w.watching[m.socketID], k)
			if w.isOnline(k) {
				nowOnline = append(nowOnline, id)
			}
		}
		if len(nowOnline) > 0 {
			m.conn.Send(watchlistFrame("online", nowOnline))
		}
	case *signedOutMsg:
		for _, k := range w.watching[m.socketID] {
			delete(w.watchers[k], m.socketID)
			if len(w.watchers[k]) == 0 {
				delete(w.watchers, k)
			}
		}
		delete(w.watching, m.socketID)
		key := channelKey(m.appID, m.userID)
		if w.online[key]--; w.online[key] <= 0 {
			delete(w.online, key)
			w.node.cluster.SignedIn(m.appID, m.userID, false)
			if !w.isOnline(key) {
				w.notify(key, "offline", m.userID)
			}
		}
	case *remoteOnlineMsg:
		w.setRemote(m.key, m.userID, m.node, m.online)
	case *nodeOnlineMsg:
		for key, nodes := range w.remote {
			if nodes[m.node] && !m.online[key] {
				w.setRemote(key, keyUserID(key), m.node, false)
			}
		}
		for key := range m.online {
			w.setRemote(key, keyUserID(key), m.node, true)
		}
	case *nodeGoneMsg:
		for key, nodes := range w.remote {
			if nodes[m.node] {
				w.setRemote(key, keyUserID(key), m.node, false)
			}
		}
	}
}

// keyUserID is the user id of an appID\x00userID key.
func keyUserID(key string) string {
	_, userID, _ := strings.Cut(key, "\x00")
	return userID
}

// setRemote records whether the user of key is signed in on another node,
// and notifies watchers if that changed whether the user is online.
func (w *watchlistActor) setRemote(key, userID, node string, online bool) {
	was := w.isOnline(key)
	if online {
		if w.remote[key] == nil {
			w.remote[key] = map[string]bool{}
		}
		w.remote[key][node] = true
	} else if nodes := w.remote[key]; nodes != nil {
		delete(nodes, node)
		if len(nodes) == 0 {
			delete(w.remote, key)
		}
	}
	w.transition(key, userID, was)
}

// transition notifies watchers when a user's cluster-wide online state changed.
func (w *watchlistActor) transition(key, userID string, was bool) {
	switch now := w.isOnline(key); {
	case now && !was:
		w.notify(key, "online", userID)
	case !now && was:
		w.notify(key, "offline", userID)
	}
}

func (w *watchlistActor) notify(key, name, userID string) {
	ws := w.watchers[key]
	if len(ws) == 0 {
		return
	}
	f := watchlistFrame(name, []string{userID})
	for _, x := range ws {
		x.conn.Send(f)
	}
}

func watchlistFrame(name string, ids []string) *wsconn.Prepared {
	b, _ := json.Marshal(struct {
		Events []struct {
			Name    string   `json:"name"`
			UserIDs []string `json:"user_ids"`
		} `json:"events"`
	}{Events: []struct {
		Name    string   `json:"name"`
		UserIDs []string `json:"user_ids"`
	}{{name, ids}}})
	return wsconn.NewPrepared(pusher.EncodeEvent("pusher_internal:watchlist_events", "", string(b), ""))
}
