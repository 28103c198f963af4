package actors

import (
	"encoding/json"

	"github.com/asynkron/protoactor-go/actor"
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
	conn      *wsconn.Conn
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
	conn     *wsconn.Conn
}

// watchlistActor owns who is online (signed in on at least one socket) per
// app and who watches whom, and sends pusher_internal:watchlist_events. All
// fields are only touched inside Receive.
type watchlistActor struct {
	online   map[string]int                 // appID\x00userID → signed-in sockets
	watchers map[string]map[string]*watcher // appID\x00watched userID → socket id → watcher
	watching map[string][]string            // socket id → keys it watches
}

func newWatchlist() actor.Actor {
	return &watchlistActor{online: map[string]int{}, watchers: map[string]map[string]*watcher{}, watching: map[string][]string{}}
}

func (w *watchlistActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *signedInMsg:
		key := channelKey(m.appID, m.userID)
		w.online[key]++
		if w.online[key] == 1 {
			w.notify(key, "online", m.userID)
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
			if w.online[k] > 0 {
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
			w.notify(key, "offline", m.userID)
		}
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
	return wsconn.NewPrepared(wsconn.EncodeEvent("pusher_internal:watchlist_events", "", string(b), ""))
}
