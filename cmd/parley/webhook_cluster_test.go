package main

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testkit"
)

// newHookSink receives app1's webhooks from every node. Its expectations
// take events in any order (several nodes send); an event that should not
// have been sent by an earlier step shows up instead of one wanted.
func newHookSink(t *testing.T) *testkit.Hooks {
	h := testkit.NewHooks(t, app1.key, app1.secret)
	h.Timeout = 15 * time.Second
	return h
}

// TestClusterWebhooks: three nodes send each cluster-wide change once
// (occupied when the first socket anywhere joins, member_added for a user's
// first connection anywhere), and after a node stops the others take its
// channels over without repeating or losing an event.
func TestClusterWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs several parley processes")
	}
	sink, counts := newHookSink(t), newHookSink(t)
	apps := `[{"id": "app-1", "key": "key-1", "secret": "secret-1", "webhooks": [{"url": "` + sink.URL + `",
	  "event_types": ["channel_occupied", "channel_vacated", "member_added", "member_removed"],
	  "filter": {"channel_name_ends_with": "-wh"}},
	  {"url": "` + counts.URL + `", "event_types": ["subscription_count"], "filter": {"channel_name_starts_with": "count-"}}]}]`
	appsFile := filepath.Join(t.TempDir(), "apps.json")
	if err := os.WriteFile(appsFile, []byte(apps), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := startStaticWith(t, 3, "parley-webhooks", func(n *procNode) {
		n.env = append(n.env, "PARLEY_APPS_FILE="+appsFile, "PARLEY_WEBHOOK_VACATE_DELAY=300ms")
	})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	waitMesh(t, 20*time.Second, nodes...)

	w1, w2, w3 := dial(t, n1, "w1"), dial(t, n2, "w2"), dial(t, n3, "w3")

	// Presence: one member_added per user, however many nodes they are on.
	p1, p2, p3 := dial(t, n1, "p1"), dial(t, n2, "p2"), dial(t, n3, "p3")
	p1.mustSubscribe("presence-room-wh", "u1")
	sink.ExpectAnyOrder("channel_occupied presence-room-wh", "member_added presence-room-wh user=u1")
	p2.mustSubscribe("presence-room-wh", "u1")
	p3.mustSubscribe("presence-room-wh", "u2")
	sink.ExpectAnyOrder("member_added presence-room-wh user=u2")
	p1.Unsubscribe("presence-room-wh") // u1 is still on node 2
	p2.Unsubscribe("presence-room-wh")
	sink.ExpectAnyOrder("member_removed presence-room-wh user=u1")
	p3.Unsubscribe("presence-room-wh")
	sink.ExpectAnyOrder("member_removed presence-room-wh user=u2", "channel_vacated presence-room-wh")

	// subscription_count: the cluster-wide count, once per change.
	for i, w := range []*wsClient{w1, w2, w3} {
		w.mustSubscribe("count-wh", "")
		counts.ExpectAnyOrder("subscription_count count-wh count=" + strconv.Itoa(i+1))
	}
	for i, w := range []*wsClient{w2, w3, w1} {
		w.Unsubscribe("count-wh")
		counts.ExpectAnyOrder("subscription_count count-wh count=" + strconv.Itoa(2-i))
	}
	sink.ExpectAnyOrder("channel_occupied count-wh", "channel_vacated count-wh")

	// Public channels: occupied once for sockets on three nodes, vacated once.
	const channels = 8
	for i := 0; i < channels; i++ {
		ch := "pub-" + strconv.Itoa(i) + "-wh"
		for _, w := range []*wsClient{w1, w2, w3} {
			w.mustSubscribe(ch, "")
		}
	}
	var want []string
	for i := 0; i < channels; i++ {
		want = append(want, "channel_occupied pub-"+strconv.Itoa(i)+"-wh")
	}
	sink.ExpectAnyOrder(want...)
	want = want[:0]
	for i := 0; i < channels; i++ {
		ch := "pub-" + strconv.Itoa(i) + "-wh"
		for _, w := range []*wsClient{w3, w1, w2} {
			w.Unsubscribe(ch)
		}
		want = append(want, "channel_vacated "+ch)
	}
	sink.ExpectAnyOrder(want...)

	// Node 1 stops. Channels: only1-* (node 1's sockets only) are vacated
	// once; mixed-* (nodes 1 and 2) stay occupied; two3-* (nodes 2 and 3)
	// see nothing; u3 (node 1 only) is removed, u1 (nodes 1 and 2) stays.
	// With 8 of each, some are owned by node 1 and handed over.
	want = want[:0]
	for i := 0; i < channels; i++ {
		is := strconv.Itoa(i)
		w1.mustSubscribe("only1-"+is+"-wh", "")
		w1.mustSubscribe("mixed-"+is+"-wh", "")
		w2.mustSubscribe("mixed-"+is+"-wh", "")
		w2.mustSubscribe("two3-"+is+"-wh", "")
		w3.mustSubscribe("two3-"+is+"-wh", "")
		want = append(want, "channel_occupied only1-"+is+"-wh", "channel_occupied mixed-"+is+"-wh", "channel_occupied two3-"+is+"-wh")
	}
	a1, a3, b1 := dial(t, n1, "a1"), dial(t, n1, "a3"), dial(t, n2, "b1")
	a1.mustSubscribe("presence-m-wh", "u1")
	a3.mustSubscribe("presence-m-wh", "u3")
	b1.mustSubscribe("presence-m-wh", "u1")
	want = append(want, "channel_occupied presence-m-wh", "member_added presence-m-wh user=u1", "member_added presence-m-wh user=u3")
	sink.ExpectAnyOrder(want...)

	n1.signal(syscall.SIGTERM)
	if code := n1.wait(20 * time.Second); code != 0 {
		t.Fatalf("node 1 exited %d", code)
	}
	want = want[:0]
	for i := 0; i < channels; i++ {
		want = append(want, "channel_vacated only1-"+strconv.Itoa(i)+"-wh")
	}
	want = append(want, "member_removed presence-m-wh user=u3")
	sink.ExpectAnyOrder(want...)

	// Node 1 comes back (a new member): the channels it now owns are
	// handed over to it, without events.
	n1.start()
	waitMesh(t, 20*time.Second, nodes...)

	// What is left is vacated once each: the first unsubscribes of two3-*
	// send nothing (the next expect shows it).
	want = want[:0]
	for i := 0; i < channels; i++ {
		is := strconv.Itoa(i)
		w3.Unsubscribe("two3-" + is + "-wh")
	}
	for i := 0; i < channels; i++ {
		is := strconv.Itoa(i)
		w2.Unsubscribe("mixed-" + is + "-wh")
		w2.Unsubscribe("two3-" + is + "-wh")
		want = append(want, "channel_vacated mixed-"+is+"-wh", "channel_vacated two3-"+is+"-wh")
	}
	b1.Unsubscribe("presence-m-wh")
	want = append(want, "member_removed presence-m-wh user=u1", "channel_vacated presence-m-wh")
	sink.ExpectAnyOrder(want...)

	// Marker: a new channel on all three nodes; nothing came before it.
	w1 = dial(t, n1, "w1-again")
	for _, w := range []*wsClient{w3, w1, w2} {
		w.mustSubscribe("marker-wh", "")
	}
	for _, w := range []*wsClient{w3, w1, w2} {
		w.Unsubscribe("marker-wh")
	}
	sink.ExpectAnyOrder("channel_occupied marker-wh", "channel_vacated marker-wh")
}
