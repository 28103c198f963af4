package bench

import (
	"cmp"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/parley-chat/parley/pusher"
)

// fakePusher is a small Pusher-protocol server for the tests: connection
// handshake, public/private/presence subscriptions, the signed events
// endpoint (signature checked) and a sliver of Parley's chat API. Faults
// can be switched on to check that the bench counts them exactly.
type fakePusher struct {
	appID, key, secret string
	srv                *httptest.Server
	upgrader           websocket.Upgrader

	// Faults, set before the run.
	dropEvery     int    // drop every dropEvery-th event for the victim
	victimChannel string // the victim is the first subscriber of this channel
	dupSeq        int64  // the event with this ~seq is delivered twice; -1 = none
	hideEvery     int    // the chat history leaves out message ids divisible by this
	closeSlow     bool   // close slow consumers with 4101 right after they subscribe

	badSignatures  atomic.Int64
	published      atomic.Int64
	slowSubscribed atomic.Int64 // subscriptions by sockets with the slow consumers' User-Agent
	afterQueries   atomic.Int64 // chat history requests with after_id
	pageQueries    atomic.Int64 // chat history requests by page
	readQueries    atomic.Int64 // the chat readers' list, before_id, read and unread requests

	handler http.Handler
	nodes   []*fakeNode // nodes[0] serves srv; all share this state, like a cluster

	mu          sync.Mutex
	nextSocket  int
	channels    map[string][]*fakeConn   // guarded by mu
	members     map[string][]fakeMember  // presence channel → members, guarded by mu
	victim      *fakeConn                // guarded by mu
	victimCount int                      // guarded by mu
	chat        *fakeChat                // nil unless the test sets it up
	userConns   map[string]*fakeConn     // private-user channel → conn, guarded by mu
	messages    map[string][]fakeMessage // matter → history, guarded by mu
	nextMsgID   int                      // guarded by mu
}

type fakeMember struct{ userID, socketID string }

// fakeNode is one listener of the fake "cluster", with what it was asked.
type fakeNode struct {
	srv     *httptest.Server
	sockets atomic.Int64 // WebSocket upgrade requests
	events  atomic.Int64 // HTTP API publishes
}

type fakeConn struct {
	mu       sync.Mutex
	ws       *websocket.Conn
	socketID string
	slow     bool // the bench's slow consumer (by User-Agent)
}

func (c *fakeConn) send(v any) {
	b, _ := json.Marshal(v)
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.WriteMessage(websocket.TextMessage, b)
}

func newFakePusher(t *testing.T) *fakePusher {
	t.Helper()
	f := &fakePusher{
		appID: "42", key: "bench-key", secret: "bench-secret",
		dupSeq:   -1,
		channels: map[string][]*fakeConn{},
		members:  map[string][]fakeMember{},
		messages: map[string][]fakeMessage{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/app/{key}", f.serveWS)
	mux.HandleFunc("POST /apps/{app}/events", f.serveEvents)
	mux.HandleFunc("POST /api/broadcasting/auth", f.serveChatAuth)
	mux.HandleFunc("POST /api/messages/send", f.serveChatSend)
	mux.HandleFunc("GET /api/messages", f.serveChatHistory)
	mux.HandleFunc("PUT /api/matters/{id}/read", f.serveChatReadUpTo)
	mux.HandleFunc("GET /api/messages/unread-count", f.serveChatUnread)
	f.handler = mux
	f.srv = f.addNode(t).srv
	return f
}

// addNode starts one more listener on the same state: a socket on any
// node gets what is published through any node.
func (f *fakePusher) addNode(t *testing.T) *fakeNode {
	t.Helper()
	n := &fakeNode{}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/app/"):
			n.sockets.Add(1)
		case strings.HasSuffix(r.URL.Path, "/events"):
			n.events.Add(1)
		}
		f.handler.ServeHTTP(w, r)
	}))
	t.Cleanup(n.srv.Close)
	f.nodes = append(f.nodes, n)
	return n
}

// port is the node's port, for --port.
func (n *fakeNode) port() string {
	u, _ := url.Parse(n.srv.URL)
	return u.Port()
}

// args are the target flags pointing the bench at f.
func (f *fakePusher) args() []string {
	u, _ := url.Parse(f.srv.URL)
	return []string{"--host", u.Hostname(), "--port", u.Port(), "--app-id", f.appID, "--key", f.key, "--secret", f.secret, "--quiet"}
}

func frameData(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (f *fakePusher) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := f.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &fakeConn{ws: ws, slow: r.UserAgent() == slowUserAgent}
	f.mu.Lock()
	f.nextSocket++
	c.socketID = fmt.Sprintf("%d.%d", 1000+f.nextSocket, 7)
	f.mu.Unlock()
	if r.PathValue("key") != f.key {
		c.send(map[string]any{"event": "pusher:error", "data": frameData(map[string]any{"code": 4001, "message": "unknown app key"})})
		ws.Close()
		return
	}
	c.send(map[string]any{"event": "pusher:connection_established", "data": frameData(map[string]any{"socket_id": c.socketID, "activity_timeout": 120})})
	defer ws.Close()
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var in struct {
			Event string `json:"event"`
			Data  struct {
				Channel     string `json:"channel"`
				Auth        string `json:"auth"`
				ChannelData string `json:"channel_data"`
			} `json:"data"`
		}
		if json.Unmarshal(msg, &in) != nil {
			continue
		}
		switch in.Event {
		case "pusher:ping":
			c.send(map[string]any{"event": "pusher:pong", "data": "{}"})
		case "pusher:subscribe":
			f.subscribe(c, in.Data.Channel, in.Data.Auth, in.Data.ChannelData)
		}
	}
}

func (f *fakePusher) subscribe(c *fakeConn, ch, auth, channelData string) {
	private := strings.HasPrefix(ch, "private-") || strings.HasPrefix(ch, "presence-")
	if private && !hmac.Equal([]byte(auth), []byte(pusher.ChannelAuth(f.key, f.secret, c.socketID, ch, channelData))) {
		c.send(map[string]any{"event": "pusher:subscription_error", "channel": ch, "data": frameData(map[string]any{"type": "AuthError", "error": "bad auth", "status": 401})})
		return
	}
	f.mu.Lock()
	f.channels[ch] = append(f.channels[ch], c)
	if ch == f.victimChannel && f.victim == nil {
		f.victim = c
	}
	if strings.HasPrefix(ch, "private-user.") {
		if f.userConns == nil {
			f.userConns = map[string]*fakeConn{}
		}
		f.userConns[ch] = c
	}
	if !strings.HasPrefix(ch, "presence-") {
		f.mu.Unlock()
		c.send(map[string]any{"event": "pusher_internal:subscription_succeeded", "channel": ch, "data": "{}"})
		if c.slow {
			f.slowSubscribed.Add(1)
			if f.closeSlow {
				// As Parley does once a socket's queue overflows.
				c.mu.Lock()
				_ = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4101, "slow consumer"))
				c.mu.Unlock()
				c.ws.Close()
			}
		}
		return
	}
	var cd struct {
		UserID   string          `json:"user_id"`
		UserInfo json.RawMessage `json:"user_info"`
	}
	_ = json.Unmarshal([]byte(channelData), &cd)
	f.members[ch] = append(f.members[ch], fakeMember{cd.UserID, c.socketID})
	ids := []string{}
	hash := map[string]json.RawMessage{}
	for _, m := range f.members[ch] {
		ids = append(ids, m.userID)
		hash[m.userID] = json.RawMessage(`{}`)
	}
	others := append([]*fakeConn(nil), f.channels[ch]...)
	// Holding mu while sending keeps member_added after the snapshot for
	// every pair of sockets, as a real server's channel actor would.
	defer f.mu.Unlock()
	c.send(map[string]any{"event": "pusher_internal:subscription_succeeded", "channel": ch,
		"data": frameData(map[string]any{"presence": map[string]any{"ids": ids, "hash": hash, "count": len(ids)}})})
	for _, o := range others {
		if o != c {
			o.send(map[string]any{"event": "pusher_internal:member_added", "channel": ch, "data": frameData(map[string]any{"user_id": cd.UserID, "user_info": cd.UserInfo})})
		}
	}
}

// verifySignature checks a signed HTTP API request as a Pusher server must.
func (f *fakePusher) verifySignature(r *http.Request, body []byte) bool {
	q := r.URL.Query()
	params := map[string]string{}
	for k, v := range q {
		params[k] = v[0]
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "auth_signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+params[k])
	}
	want := pusher.Sign(f.secret, r.Method+"\n"+r.URL.Path+"\n"+strings.Join(parts, "&"))
	sum := md5.Sum(body)
	return params["auth_key"] == f.key &&
		params["body_md5"] == hex.EncodeToString(sum[:]) &&
		hmac.Equal([]byte(want), []byte(params["auth_signature"]))
}

func (f *fakePusher) serveEvents(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.PathValue("app") != f.appID || !f.verifySignature(r, body) {
		f.badSignatures.Add(1)
		http.Error(w, `{"error":"invalid signature"}`, http.StatusUnauthorized)
		return
	}
	var ev struct {
		Name     string   `json:"name"`
		Channels []string `json:"channels"`
		Data     string   `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.published.Add(1)
	seq, _ := intAfter([]byte(ev.Data), keySeq)
	for _, ch := range ev.Channels {
		f.mu.Lock()
		subs := append([]*fakeConn(nil), f.channels[ch]...)
		drop := false
		if f.victim != nil && ch == f.victimChannel {
			f.victimCount++
			drop = f.dropEvery > 0 && f.victimCount%f.dropEvery == 0
		}
		victim := f.victim
		f.mu.Unlock()
		frame := map[string]any{"event": ev.Name, "channel": ch, "data": ev.Data}
		for _, c := range subs {
			if drop && c == victim {
				continue
			}
			c.send(frame)
			if seq == f.dupSeq {
				c.send(frame)
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{}")
}

// ---- A sliver of Parley's chat API ----

type fakeChat struct {
	users   map[string]string   // token → user id
	matters map[string][]string // matter id → member user ids
}

type fakeMessage struct {
	ID       int    `json:"id"`
	Message  string `json:"message"`
	MatterID int    `json:"client_matter_id"`
	SenderID int    `json:"sender_id"`
}

func (f *fakePusher) chatUser(r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || f.chat == nil {
		return "", false
	}
	id, ok := f.chat.users[tok]
	return id, ok
}

func (f *fakePusher) serveChatAuth(w http.ResponseWriter, r *http.Request) {
	uid, ok := f.chatUser(r)
	var in struct {
		SocketID    string `json:"socket_id"`
		ChannelName string `json:"channel_name"`
	}
	if !ok || json.NewDecoder(r.Body).Decode(&in) != nil || in.ChannelName != "private-user."+uid {
		http.Error(w, `{"message":"forbidden"}`, http.StatusForbidden)
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"auth": pusher.ChannelAuth(f.key, f.secret, in.SocketID, in.ChannelName, "")})
}

func (f *fakePusher) serveChatSend(w http.ResponseWriter, r *http.Request) {
	uid, ok := f.chatUser(r)
	var in struct {
		Message  string `json:"message"`
		MatterID int    `json:"client_matter_id"`
	}
	if !ok || json.NewDecoder(r.Body).Decode(&in) != nil {
		http.Error(w, `{"message":"unauthenticated"}`, http.StatusUnauthorized)
		return
	}
	mid := strconv.Itoa(in.MatterID)
	f.mu.Lock()
	f.nextMsgID++
	sender, _ := strconv.Atoi(uid)
	m := fakeMessage{ID: f.nextMsgID, Message: in.Message, MatterID: in.MatterID, SenderID: sender}
	f.messages[mid] = append(f.messages[mid], m)
	var targets []*fakeConn
	for _, member := range f.chat.matters[mid] {
		if member != uid {
			if c := f.userConns["private-user."+member]; c != nil {
				targets = append(targets, c)
			}
		}
	}
	f.mu.Unlock()
	for _, c := range targets {
		c.send(map[string]any{"event": chatEvent, "channel": "private-user.x", "data": frameData(map[string]any{"message": m})})
	}
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{"data": m})
}

func (f *fakePusher) serveChatHistory(w http.ResponseWriter, r *http.Request) {
	if _, ok := f.chatUser(r); !ok {
		http.Error(w, `{"message":"unauthenticated"}`, http.StatusUnauthorized)
		return
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	page, limit = max(page, 1), cmp.Or(limit, 20)
	f.mu.Lock()
	var all []fakeMessage
	for _, m := range f.messages[r.URL.Query().Get("client_matter_id")] {
		if f.hideEvery == 0 || m.ID%f.hideEvery != 0 {
			all = append(all, m)
		}
	}
	f.mu.Unlock()
	if after, _ := strconv.Atoi(r.URL.Query().Get("after_id")); after > 0 {
		f.afterQueries.Add(1)
		var page []fakeMessage
		for _, m := range all {
			if m.ID > after && len(page) < limit {
				page = append(page, m)
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"data": page})
		return
	}
	if before, _ := strconv.Atoi(r.URL.Query().Get("before_id")); before > 0 {
		f.readQueries.Add(1)
		var page []fakeMessage
		for i := len(all) - 1; i >= 0 && len(page) < limit; i-- {
			if all[i].ID < before {
				page = append(page, all[i])
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"data": page})
		return
	}
	if r.URL.Query().Get("page") == "" {
		f.readQueries.Add(1) // a reader's newest page, not the history check
	} else {
		f.pageQueries.Add(1)
	}
	last := max((len(all)+limit-1)/limit, 1)
	from, to := min((page-1)*limit, len(all)), min(page*limit, len(all))
	json.NewEncoder(w).Encode(map[string]any{"data": all[from:to], "current_page": page, "per_page": limit, "total": len(all), "last_page": last})
}

func (f *fakePusher) serveChatReadUpTo(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UpToID int64 `json:"up_to_id"`
	}
	if _, ok := f.chatUser(r); !ok || json.NewDecoder(r.Body).Decode(&in) != nil || in.UpToID <= 0 {
		http.Error(w, `{"message":"bad read"}`, http.StatusUnprocessableEntity)
		return
	}
	f.readQueries.Add(1)
	json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"up_to_id": in.UpToID, "count": 0}})
}

func (f *fakePusher) serveChatUnread(w http.ResponseWriter, r *http.Request) {
	if _, ok := f.chatUser(r); !ok {
		http.Error(w, `{"message":"unauthenticated"}`, http.StatusUnauthorized)
		return
	}
	f.readQueries.Add(1)
	json.NewEncoder(w).Encode(map[string]any{"unread_count": 0, "matters": map[string]int{}})
}
