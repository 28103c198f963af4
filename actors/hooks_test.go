package actors

import (
	"testing"
	"time"

	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
)

// hookReceiver takes the webhooks of the test app.
type hookReceiver = testkit.Hooks

func newHookReceiver(t *testing.T) *hookReceiver {
	return testkit.NewHooks(t, testkit.Key, testkit.Secret)
}

func startHookNode(t *testing.T, r *hookReceiver, delay time.Duration, types ...string) *testNode {
	return startNode(t, func(c *config.Config) {
		c.Apps[0].Webhooks = []config.Webhook{{URL: r.URL, EventTypes: types}}
		c.WebhookVacateDelay = delay
	})
}

// TestWebhookEvents: every event type, with its payload, once per change.
func TestWebhookEvents(t *testing.T) {
	r := newHookReceiver(t)
	tn := startHookNode(t, r, 50*time.Millisecond, config.WebhookEventTypes...)
	a, b, c := tn.dial(), tn.dial(), tn.dial()

	a.joinAs("presence-room", "u1")
	r.Expect("channel_occupied presence-room", "member_added presence-room user=u1")
	// The same user's second connection: no event (the next step shows it).
	b.joinAs("presence-room", "u1")

	a.subscribe("pub")
	r.Expect("channel_occupied pub", "subscription_count pub count=1")
	b.subscribe("pub")
	r.Expect("subscription_count pub count=2")

	a.subscribe("private-chat")
	r.Expect("channel_occupied private-chat", "subscription_count private-chat count=1")
	b.subscribe("private-chat")
	r.Expect("subscription_count private-chat count=2")

	b.Send(`{"event":"client-typing","channel":"private-chat","data":{"typing":true}}`)
	a.Expect("client-typing")
	e := r.Expect("client_event private-chat")[0]
	if e["event"] != "client-typing" || e["data"] != `{"typing":true}` || e["socket_id"] != b.SocketID {
		t.Fatalf("client_event payload %v", e)
	}
	b.Send(`{"event":"client-wave","channel":"presence-room","data":"hi"}`)
	a.Expect("client-wave")
	e = r.Expect("client_event presence-room user=u1")[0]
	if e["event"] != "client-wave" || e["data"] != "hi" || e["socket_id"] != b.SocketID {
		t.Fatalf("client_event payload %v", e)
	}

	// u1 leaves on one connection: still present on the other.
	a.Unsubscribe("presence-room")
	c.subscribe("cache-x")
	r.Expect("channel_occupied cache-x", "subscription_count cache-x count=1", "cache_miss cache-x")
	b.Unsubscribe("presence-room")
	r.Expect("member_removed presence-room user=u1", "channel_vacated presence-room")

	b.Unsubscribe("pub")
	r.Expect("subscription_count pub count=1")
	a.Conn.Close() // a socket that goes leaves every channel
	r.ExpectAnyOrder("subscription_count pub count=0", "subscription_count private-chat count=1", "channel_vacated pub")
}

// TestWebhookVacateDelay: a reconnect within the delay sends neither the
// vacate nor the re-join; a later channel's events arrive with nothing of
// the first before them.
func TestWebhookVacateDelay(t *testing.T) {
	r := newHookReceiver(t)
	const delay = time.Second
	tn := startHookNode(t, r, delay, "channel_occupied", "channel_vacated", "member_added", "member_removed")
	a := tn.dialUnowned()
	a.joinAs("presence-r", "u1")
	a.subscribe("public-r")
	r.Expect("channel_occupied presence-r", "member_added presence-r user=u1", "channel_occupied public-r")

	// The page reloads: the socket goes, a new one joins the same channels.
	left := time.Now()
	a.Conn.Close()
	waitUntil(t, "the socket to leave", func() bool { return tn.Node.Connections(testkit.AppID) == 0 })
	a2 := tn.dial()
	a2.joinAs("presence-r", "u1")
	a2.subscribe("public-r")
	if time.Since(left) >= delay {
		t.Skipf("the reconnect took %v, longer than the delay: the machine is too slow for this test", time.Since(left))
	}

	// Marker: another channel occupied and vacated. Its vacate waits the
	// same delay, so a vacate of the first channels would have come first.
	m := tn.dial()
	m.subscribe("marker-ch")
	m.Unsubscribe("marker-ch")
	start := time.Now()
	r.Expect("channel_occupied marker-ch", "channel_vacated marker-ch")
	if d := time.Since(start); d < delay*8/10 {
		t.Fatalf("channel_vacated came %v after the vacate, before the %v delay", d, delay)
	}

	// Leaving for good sends both after the delay.
	a2.Conn.Close()
	r.ExpectAnyOrder("member_removed presence-r user=u1", "channel_vacated presence-r", "channel_vacated public-r")
}

// TestWebhookRetry: a receiver that fails gets the same events again.
func TestWebhookRetry(t *testing.T) {
	r := newHookReceiver(t)
	r.Fail.Store(1)
	tn := startHookNode(t, r, 0, "channel_occupied")
	tn.dial().subscribe("retried")
	r.Expect("channel_occupied retried")
	if n := r.Requests.Load(); n != 2 {
		t.Fatalf("want a failed request and its retry, got %d requests", n)
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
	h := n.Node.hooks
	remote := func(node string, users ...string) {
		h.remoteAll(WebhookStates{Node: node, Sync: true, States: []WebhookState{
			{Node: node, AppID: testkit.AppID, Channel: "presence-x", Subscriptions: len(users), Users: users, Sync: true}}})
	}
	marker := func(u string) { // a member joining and leaving here
		h.mu.Lock()
		h.apply("marker-"+u, testkit.AppID, "presence-m", 1, map[string]bool{u: true}, false)
		h.mu.Unlock()
		r.Expect("member_added presence-m user=" + u)
	}
	remote("p2", "u2") // as a sync: known, not announced
	marker("m1")
	h.nodeGone("p2", false)
	marker("m2")
	remote("p2", "u2") // back, sync, never announced gone: nothing
	marker("m3")
	h.nodeGone("p2", true)
	r.Expect("member_removed presence-x user=u2")
	remote("p2", "u2") // back after it was announced gone
	r.Expect("member_added presence-x user=u2")
}
