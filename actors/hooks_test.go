package actors

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/config"
)

// hookReceiver is a real HTTP server on 127.0.0.1 taking webhooks: it
// checks each request's signature and hands on the events one by one.
type hookReceiver struct {
	t        *testing.T
	url      string
	events   chan map[string]any
	requests atomic.Int64
	fail     atomic.Int64 // answer this many more requests with 500
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{t: t, events: make(chan map[string]any, 1000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		body, _ := io.ReadAll(req.Body)
		mac := hmac.New(sha256.New, []byte(tSecret))
		mac.Write(body)
		if req.Method != http.MethodPost || req.Header.Get("X-Pusher-Key") != tKey || req.Header.Get("X-Pusher-Signature") != hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("webhook with a bad method, key or signature: %s %v", req.Method, req.Header)
		}
		if r.fail.Load() > 0 {
			r.fail.Add(-1)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var p struct {
			TimeMS int64            `json:"time_ms"`
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.TimeMS < time.Now().Add(-time.Minute).UnixMilli() || len(p.Events) == 0 {
			t.Errorf("bad webhook body %s (%v)", body, err)
		}
		for _, e := range p.Events {
			r.events <- e
		}
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/hooks"
	return r
}

// describe turns an event into "name channel [user_id] [subscription_count]".
func describe(e map[string]any) string {
	s := fmt.Sprint(e["name"], " ", e["channel"])
	if u, ok := e["user_id"]; ok {
		s += fmt.Sprint(" user=", u)
	}
	if n, ok := e["subscription_count"]; ok {
		s += fmt.Sprint(" count=", n)
	}
	return s
}

// expect takes the next events and compares them, in order, with want.
// Events arrive in the order they happened, so anything sent by an earlier
// step that should have sent nothing shows up here.
func (r *hookReceiver) expect(want ...string) []map[string]any {
	r.t.Helper()
	var got []map[string]any
	for len(got) < len(want) {
		select {
		case e := <-r.events:
			got = append(got, e)
		case <-time.After(10 * time.Second):
			r.t.Fatalf("want %q, got only %d event(s) within 10 s: %v", want, len(got), got)
		}
	}
	for i, e := range got {
		if describe(e) != want[i] {
			var all []string
			for _, g := range got {
				all = append(all, describe(g))
			}
			r.t.Fatalf("want %q, got %q", want, all)
		}
	}
	return got
}

func startHookNode(t *testing.T, r *hookReceiver, delay time.Duration, types ...string) *testNode {
	return startNode(t, func(c *config.Config) {
		c.Apps[0].Webhooks = []config.Webhook{{URL: r.url, EventTypes: types}}
		c.WebhookVacateDelay = delay
	})
}

func (w *tClient) unsubscribe(channel string) {
	w.t.Helper()
	w.send(`{"event":"pusher:unsubscribe","data":{"channel":"` + channel + `"}}`)
}

// TestWebhookEvents: every event type, with its payload, once per change.
func TestWebhookEvents(t *testing.T) {
	r := newHookReceiver(t)
	tn := startHookNode(t, r, 50*time.Millisecond, config.WebhookEventTypes...)
	a, b, c := tn.dial(), tn.dial(), tn.dial()

	a.subscribeAs("presence-room", "u1")
	a.expect("pusher_internal:subscription_succeeded")
	r.expect("channel_occupied presence-room", "member_added presence-room user=u1")
	// The same user's second connection: no event (the next step shows it).
	b.subscribeAs("presence-room", "u1")
	b.expect("pusher_internal:subscription_succeeded")

	a.subscribe("pub")
	r.expect("channel_occupied pub", "subscription_count pub count=1")
	b.subscribe("pub")
	r.expect("subscription_count pub count=2")

	a.subscribe("private-chat")
	r.expect("channel_occupied private-chat", "subscription_count private-chat count=1")
	b.subscribe("private-chat")
	r.expect("subscription_count private-chat count=2")

	b.send(`{"event":"client-typing","channel":"private-chat","data":{"typing":true}}`)
	a.expect("client-typing")
	e := r.expect("client_event private-chat")[0]
	if e["event"] != "client-typing" || e["data"] != `{"typing":true}` || e["socket_id"] != b.socketID {
		t.Fatalf("client_event payload %v", e)
	}
	b.send(`{"event":"client-wave","channel":"presence-room","data":"hi"}`)
	a.expect("client-wave")
	e = r.expect("client_event presence-room user=u1")[0]
	if e["event"] != "client-wave" || e["data"] != "hi" || e["socket_id"] != b.socketID {
		t.Fatalf("client_event payload %v", e)
	}

	// u1 leaves on one connection: still present on the other.
	a.unsubscribe("presence-room")
	c.subscribe("cache-x")
	r.expect("channel_occupied cache-x", "subscription_count cache-x count=1", "cache_miss cache-x")
	b.unsubscribe("presence-room")
	r.expect("member_removed presence-room user=u1", "channel_vacated presence-room")

	b.unsubscribe("pub")
	r.expect("subscription_count pub count=1")
	a.c.Close() // a socket that goes leaves every channel
	r.expectAnyOrder("subscription_count pub count=0", "subscription_count private-chat count=1", "channel_vacated pub")
}

// TestWebhookVacateDelay: a reconnect within the delay sends neither the
// vacate nor the re-join; a later channel's events arrive with nothing of
// the first before them.
func TestWebhookVacateDelay(t *testing.T) {
	r := newHookReceiver(t)
	const delay = time.Second
	tn := startHookNode(t, r, delay, "channel_occupied", "channel_vacated", "member_added", "member_removed")
	a := tn.dialUnowned()
	a.subscribeAs("presence-r", "u1")
	a.expect("pusher_internal:subscription_succeeded")
	a.subscribe("public-r")
	r.expect("channel_occupied presence-r", "member_added presence-r user=u1", "channel_occupied public-r")

	// The page reloads: the socket goes, a new one joins the same channels.
	left := time.Now()
	a.c.Close()
	waitUntil(t, "the socket to leave", func() bool { return tn.node.Connections(tApp) == 0 })
	a2 := tn.dial()
	a2.subscribeAs("presence-r", "u1")
	a2.expect("pusher_internal:subscription_succeeded")
	a2.subscribe("public-r")
	if time.Since(left) >= delay {
		t.Skipf("the reconnect took %v, longer than the delay: the machine is too slow for this test", time.Since(left))
	}

	// Marker: another channel occupied and vacated. Its vacate waits the
	// same delay, so a vacate of the first channels would have come first.
	m := tn.dial()
	m.subscribe("marker-ch")
	m.unsubscribe("marker-ch")
	start := time.Now()
	r.expect("channel_occupied marker-ch", "channel_vacated marker-ch")
	if d := time.Since(start); d < delay*8/10 {
		t.Fatalf("channel_vacated came %v after the vacate, before the %v delay", d, delay)
	}

	// Leaving for good sends both after the delay.
	a2.c.Close()
	r.expectAnyOrder("member_removed presence-r user=u1", "channel_vacated presence-r", "channel_vacated public-r")
}

// TestWebhookRetry: a receiver that fails gets the same events again.
func TestWebhookRetry(t *testing.T) {
	r := newHookReceiver(t)
	r.fail.Store(1)
	tn := startHookNode(t, r, 0, "channel_occupied")
	tn.dial().subscribe("retried")
	r.expect("channel_occupied retried")
	if n := r.requests.Load(); n != 2 {
		t.Fatalf("want a failed request and its retry, got %d requests", n)
	}
}

// expectAnyOrder is expect for events of several channels, whose order
// between channels is not defined.
func (r *hookReceiver) expectAnyOrder(want ...string) {
	r.t.Helper()
	var got []string
	for len(got) < len(want) {
		select {
		case e := <-r.events:
			got = append(got, describe(e))
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

// TestWebhookNodeGoneAnnouncedOnlyByADeciderAndBackWithEvents: a node that
// does not speak for the cluster (cut off, it drops its peers too) drops a
// peer's states without events; one that does reports the peer's users gone,
// and reports them back when that peer's states come again after it
// returns. Each step is checked against a marker event sent after it.
func TestWebhookNodeGoneAnnouncedOnlyByADeciderAndBackWithEvents(t *testing.T) {
	r := newHookReceiver(t)
	n := startHookNode(t, r, 0, "member_added", "member_removed")
	h := n.node.hooks
	remote := func(node string, users ...string) {
		h.remoteAll(WebhookStates{Node: node, Sync: true, States: []WebhookState{
			{Node: node, AppID: tApp, Channel: "presence-x", Subscriptions: len(users), Users: users, Sync: true}}})
	}
	marker := func(u string) { // a member joining and leaving here
		h.mu.Lock()
		h.apply("marker-"+u, tApp, "presence-m", 1, map[string]bool{u: true}, false)
		h.mu.Unlock()
		r.expect("member_added presence-m user=" + u)
	}
	remote("p2", "u2") // as a sync: known, not announced
	marker("m1")
	h.nodeGone("p2", false)
	marker("m2")
	remote("p2", "u2") // back, sync, never announced gone: nothing
	marker("m3")
	h.nodeGone("p2", true)
	r.expect("member_removed presence-x user=u2")
	remote("p2", "u2") // back after it was announced gone
	r.expect("member_added presence-x user=u2")
}
