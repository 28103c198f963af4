package cluster

// The in-process tests' harness: a node (actors.Node behind a real
// WebSocket endpoint on 127.0.0.1), its clients, and a webhook receiver.

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

const (
	tKey    = "key-1"
	tSecret = "secret-1"
	tApp    = "app-1"
)

type testNode struct {
	t    *testing.T
	node *actors.Node
	url  string
}

func startNode(t *testing.T, mutate func(*config.Config)) *testNode {
	t.Helper()
	cfg, err := config.Load(nil, func(k string) (string, bool) {
		v, ok := map[string]string{
			"PARLEY_APP_ID": tApp, "PARLEY_APP_KEY": tKey, "PARLEY_APP_SECRET": tSecret,
			"PARLEY_DATA_DIR": t.TempDir(),
		}[k]
		return v, ok
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	n := actors.NewNode(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := wsconn.Upgrade(w, r, n.ConnOptions())
		if err != nil {
			return
		}
		n.Accept(conn, strings.TrimPrefix(r.URL.Path, "/app/"), r.URL.Query().Get("protocol"), "", "127.0.0.1")
	}))
	t.Cleanup(func() {
		srv.Close()
		n.Stop()
	})
	return &testNode{t: t, node: n, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
}

type tFrame struct {
	Event   string `json:"event"`
	Channel string `json:"channel"`
	Data    string `json:"data"`
}

type tClient struct {
	t        *testing.T
	c        *websocket.Conn
	frames   chan tFrame
	socketID string
}

func (tn *testNode) dial() *tClient {
	tn.t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(tn.url+"/app/"+tKey+"?protocol=7", nil)
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.t.Cleanup(func() { c.Close() })
	w := &tClient{t: tn.t, c: c, frames: make(chan tFrame, 1<<14)}
	go func() {
		defer close(w.frames)
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			var f tFrame
			_ = json.Unmarshal(b, &f)
			w.frames <- f
		}
	}()
	f := w.next()
	if f.Event != "pusher:connection_established" {
		tn.t.Fatalf("first frame %+v", f)
	}
	var d struct {
		SocketID string `json:"socket_id"`
	}
	_ = json.Unmarshal([]byte(f.Data), &d)
	w.socketID = d.SocketID
	return w
}

func (w *tClient) next() tFrame {
	w.t.Helper()
	select {
	case f, ok := <-w.frames:
		if !ok {
			w.t.Fatal("socket closed")
		}
		return f
	case <-time.After(5 * time.Second):
		w.t.Fatal("no frame within 5 s")
	}
	return tFrame{}
}

// subscribe joins a public channel.
func (w *tClient) subscribe(channel string) {
	w.t.Helper()
	d := map[string]string{"channel": channel}
	if strings.HasPrefix(channel, "private-") {
		d["auth"] = pusher.ChannelAuth(tKey, tSecret, w.socketID, channel, "")
	}
	b, _ := json.Marshal(map[string]any{"event": "pusher:subscribe", "data": d})
	if err := w.c.WriteMessage(websocket.TextMessage, b); err != nil {
		w.t.Fatal(err)
	}
	if f := w.next(); f.Event != "pusher_internal:subscription_succeeded" || f.Channel != channel {
		w.t.Fatalf("subscribe %s: %+v", channel, f)
	}
}

func waitUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hookReceiver is a real HTTP server on 127.0.0.1 taking webhooks.
type hookReceiver struct {
	t      *testing.T
	url    string
	events chan string // "name channel"
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{t: t, events: make(chan string, 1000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var p struct {
			Events []map[string]any `json:"events"`
		}
		_ = json.NewDecoder(req.Body).Decode(&p)
		for _, e := range p.Events {
			r.events <- e["name"].(string) + " " + e["channel"].(string)
		}
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/hooks"
	return r
}

// expectAnyOrder takes the next len(want) events and compares them with
// want in any order.
func (r *hookReceiver) expectAnyOrder(want ...string) {
	r.t.Helper()
	var got []string
	for len(got) < len(want) {
		select {
		case e := <-r.events:
			got = append(got, e)
		case <-time.After(10 * time.Second):
			r.t.Fatalf("want %q, got only %q within 10 s", want, got)
		}
	}
	w := append([]string(nil), want...)
	sort.Strings(w)
	sort.Strings(got)
	if strings.Join(w, "|") != strings.Join(got, "|") {
		r.t.Fatalf("want %q in any order, got %q", w, got)
	}
}
