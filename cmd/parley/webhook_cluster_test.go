package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hookSink is a real HTTP receiver on 127.0.0.1 for every node's webhooks.
type hookSink struct {
	t      *testing.T
	url    string
	events chan string
}

func newHookSink(t *testing.T, secret string) *hookSink {
	s := &hookSink{t: t, events: make(chan string, 10000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		if r.Header.Get("X-Pusher-Signature") != hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("webhook with a bad signature: %s", body)
		}
		var p struct {
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("bad webhook body %s: %v", body, err)
		}
		for _, e := range p.Events {
			d := fmt.Sprint(e["name"], " ", e["channel"])
			if u, ok := e["user_id"]; ok {
				d += fmt.Sprint(" user=", u)
			}
			if n, ok := e["subscription_count"]; ok {
				d += fmt.Sprint(" count=", n)
			}
			s.events <- d
		}
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// expect takes the next len(want) events and compares them with want in
// any order (several nodes send). An event that should not have been sent
// by an earlier step shows up here instead of one wanted.
func (s *hookSink) expect(want ...string) {
	s.t.Helper()
	var got []string
	for len(got) < len(want) {
		select {
		case e := <-s.events:
			got = append(got, e)
		case <-time.After(15 * time.Second):
			s.t.Fatalf("want %q, got only %q within 15 s", want, got)
		}
	}
	w := append([]string(nil), want...)
	sort.Strings(w)
	sort.Strings(got)
	if strings.Join(w, "|") != strings.Join(got, "|") {
		s.t.Fatalf("want %q, got %q", w, got)
	}
}

func (w *wsClient) unsubscribe(channel string) {
	w.t.Helper()
	w.send(map[string]any{"event": "pusher:unsubscribe", "data": map[string]string{"channel": channel}})
}

// TestClusterWebhooks: three nodes send each cluster-wide change once
// (occupied when the first socket anywhere joins, member_added for a user's
// first connection anywhere), and after a node stops the others take its
// channels over without repeating or losing an event.
func TestClusterWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs several parley processes")
	}
	sink, counts := newHookSink(t, "secret-1"), newHookSink(t, "secret-1")
	apps := `[{"id": "app-1", "key": "key-1", "secret": "secret-1", "webhooks": [{"url": "` + sink.url + `",
	  "event_types": ["channel_occupied", "channel_vacated", "member_added", "member_removed"],
	  "filter": {"channel_name_ends_with": "-wh"}},
	  {"url": "` + counts.url + `", "event_types": ["subscription_count"], "filter": {"channel_name_starts_with": "count-"}}]}]`
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
	sink.expect("channel_occupied presence-room-wh", "member_added presence-room-wh user=u1")
	p2.mustSubscribe("presence-room-wh", "u1")
	p3.mustSubscribe("presence-room-wh", "u2")
	sink.expect("member_added presence-room-wh user=u2")
	p1.unsubscribe("presence-room-wh") // u1 is still on node 2
	p2.unsubscribe("presence-room-wh")
	sink.expect("member_removed presence-room-wh user=u1")
	p3.unsubscribe("presence-room-wh")
	sink.expect("member_removed presence-room-wh user=u2", "channel_vacated presence-room-wh")

	// subscription_count: the cluster-wide count, once per change.
	for i, w := range []*wsClient{w1, w2, w3} {
		w.mustSubscribe("count-wh", "")
		counts.expect("subscription_count count-wh count=" + strconv.Itoa(i+1))
	}
	for i, w := range []*wsClient{w2, w3, w1} {
		w.unsubscribe("count-wh")
		counts.expect("subscription_count count-wh count=" + strconv.Itoa(2-i))
	}
	sink.expect("channel_occupied count-wh", "channel_vacated count-wh")

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
	sink.expect(want...)
	want = want[:0]
	for i := 0; i < channels; i++ {
		ch := "pub-" + strconv.Itoa(i) + "-wh"
		for _, w := range []*wsClient{w3, w1, w2} {
			w.unsubscribe(ch)
		}
		want = append(want, "channel_vacated "+ch)
	}
	sink.expect(want...)

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
	sink.expect(want...)

	n1.signal(syscall.SIGTERM)
	if code := n1.wait(20 * time.Second); code != 0 {
		t.Fatalf("node 1 exited %d", code)
	}
	want = want[:0]
	for i := 0; i < channels; i++ {
		want = append(want, "channel_vacated only1-"+strconv.Itoa(i)+"-wh")
	}
	want = append(want, "member_removed presence-m-wh user=u3")
	sink.expect(want...)

	// Node 1 comes back (a new member): the channels it now owns are
	// handed over to it, without events.
	n1.start()
	waitMesh(t, 20*time.Second, nodes...)

	// What is left is vacated once each: the first unsubscribes of two3-*
	// send nothing (the next expect shows it).
	want = want[:0]
	for i := 0; i < channels; i++ {
		is := strconv.Itoa(i)
		w3.unsubscribe("two3-" + is + "-wh")
	}
	for i := 0; i < channels; i++ {
		is := strconv.Itoa(i)
		w2.unsubscribe("mixed-" + is + "-wh")
		w2.unsubscribe("two3-" + is + "-wh")
		want = append(want, "channel_vacated mixed-"+is+"-wh", "channel_vacated two3-"+is+"-wh")
	}
	b1.unsubscribe("presence-m-wh")
	want = append(want, "member_removed presence-m-wh user=u1", "channel_vacated presence-m-wh")
	sink.expect(want...)

	// Marker: a new channel on all three nodes; nothing came before it.
	w1 = dial(t, n1, "w1-again")
	for _, w := range []*wsClient{w3, w1, w2} {
		w.mustSubscribe("marker-wh", "")
	}
	for _, w := range []*wsClient{w3, w1, w2} {
		w.unsubscribe("marker-wh")
	}
	sink.expect("channel_occupied marker-wh", "channel_vacated marker-wh")
}
