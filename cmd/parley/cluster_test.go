package main

// Clustering, end to end: separate parley processes on 127.0.0.1 joined by
// the automanaged membership (a static peer list) or by etcd, checked as
// Pusher clients see them. Figures logged with t.Logf (times to notice a
// dead node, gaps in delivery) are measured on the machine running the test.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testkit"
)

var uniqSeq atomic.Int64

// uniq names a channel or user no other check uses.
func uniq(prefix string) string { return prefix + "-" + strconv.FormatInt(uniqSeq.Add(1), 10) }

// users lists a presence channel's members through node's HTTP API.
func users(t *testing.T, n *procNode, channel string) []string {
	t.Helper()
	r := n.mustAPI(t, "GET", "/apps/"+app1.id+"/channels/"+channel+"/users", nil, nil)
	list, _ := r.body["users"].([]any)
	ids := []string{}
	for _, u := range list {
		m, _ := u.(map[string]any)
		id, _ := m["id"].(string)
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// publishToEveryNode subscribes a socket on each node to ch, publishes
// count numbered events through the first node, and requires every socket
// to get them all in order, and exactly once: the next frame is a marker
// published after them. It returns the sockets.
func publishToEveryNode(t *testing.T, nodes []*procNode, ch string, count int) []*wsClient {
	t.Helper()
	var socks []*wsClient
	for _, n := range nodes {
		s := dial(t, n, "sub")
		s.mustSubscribe(ch, "")
		socks = append(socks, s)
	}
	for i := 0; i < count; i++ {
		nodes[0].trigger(t, ch, "numbered", strconv.Itoa(i))
	}
	for _, s := range socks {
		for i := 0; i < count; i++ {
			if f := s.Next(); f.Event != "numbered" || f.Channel != ch || f.Data != strconv.Itoa(i) {
				t.Fatalf("%s: event %d: got %+v", s.Name, i, f)
			}
		}
	}
	m := nodes[0].marker(t, ch)
	for _, s := range socks {
		s.expectMarker(m)
	}
	return socks
}

// joinAcross joins presence channel pch with a socket per user, users[i]
// on nodes[i], each once that node lists the users before it. Each new
// member's subscription_succeeded lists the members so far, and the
// earlier ones get its member_added.
func joinAcross(t *testing.T, pch string, nodes []*procNode, users ...string) []*wsClient {
	t.Helper()
	var socks []*wsClient
	for i, u := range users {
		if i > 0 {
			waitUsers(t, pch, slices.Clone(users[:i]), nodes[i])
		}
		s := dial(t, nodes[i], u)
		want := slices.Sorted(slices.Values(users[:i+1]))
		if ids := presenceIDs(t, s.mustSubscribe(pch, u)); !reflect.DeepEqual(ids, want) {
			t.Fatalf("%s sees %v, want %v", u, ids, want)
		}
		for _, earlier := range socks {
			memberEvent(t, earlier, earlier.Next(), "pusher_internal:member_added", u)
		}
		socks = append(socks, s)
	}
	return socks
}

// waitUsers waits until every node lists exactly want as channel's members.
func waitUsers(t *testing.T, channel string, want []string, nodes ...*procNode) {
	t.Helper()
	sort.Strings(want)
	for _, n := range nodes {
		eventually(t, 5*time.Second, n.name+" users of "+channel, func() string {
			if got := users(t, n, channel); !reflect.DeepEqual(got, want) {
				return fmt.Sprintf("got %v, want %v", got, want)
			}
			return ""
		})
	}
}

// channelInfo is GET /channels/{name} through node.
func channelInfo(t *testing.T, n *procNode, channel, info string) apiResult {
	t.Helper()
	q := url.Values{}
	if info != "" {
		q.Set("info", info)
	}
	return n.mustAPI(t, "GET", "/apps/"+app1.id+"/channels/"+channel, q, nil)
}

// num reads a JSON number field as an int (-1 when absent).
func num(m map[string]any, k string) int {
	v, ok := m[k].(float64)
	if !ok {
		return -1
	}
	return int(v)
}

// memberEvent checks that f is event for user uid.
func memberEvent(t *testing.T, w *wsClient, f frame, event, uid string) {
	t.Helper()
	if f.Event != event {
		t.Fatalf("%s: want %s %s, got %+v", w.Name, event, uid, f)
	}
	if got, _ := f.DataMap(t)["user_id"].(string); got != uid {
		t.Fatalf("%s: want %s %s, got %+v", w.Name, event, uid, f)
	}
}

// memberEventsAfter requires the next frame of each socket to be event of
// user uid within d of since, when deed happened, and logs how long after
// it each came; it returns those times.
func memberEventsAfter(t *testing.T, deed string, since time.Time, d time.Duration, event, uid string, socks ...*wsClient) []time.Duration {
	t.Helper()
	name := strings.TrimPrefix(event, "pusher_internal:")
	var after []time.Duration
	for _, s := range socks {
		r, err := s.TryNext(time.Until(since.Add(d)))
		if err != nil {
			t.Fatalf("%s: no %s %s within %v of %s: %v", s.Name, name, uid, d, deed, err)
		}
		memberEvent(t, s, r.Frame, event, uid)
		after = append(after, r.At.Sub(since))
		t.Logf("%s: %s got %s %s after %v", deed, s.Name, name, uid, after[len(after)-1].Round(time.Millisecond))
	}
	return after
}

// presenceMarker joins channel on node as a fresh marker user and returns
// the user id: its member_added reaches the other nodes through the same
// path as every presence change of node's before it.
func presenceMarker(t *testing.T, n *procNode, channel string) (string, *wsClient) {
	t.Helper()
	uid := uniq(markerUser + "user")
	w := dial(t, n, "marker")
	w.mustSubscribe(channel, uid)
	return uid, w
}

// pubLoop publishes numbered "tick" events through a node at a steady pace.
type pubLoop struct {
	stop, done chan struct{}
	sent       int
	failed     map[int]string
}

func startLoop(n *procNode, channel string, every time.Duration, max int) *pubLoop {
	l := &pubLoop{stop: make(chan struct{}), done: make(chan struct{}), failed: map[int]string{}}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; i < max; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			r, err := n.api(app1, "POST", "/apps/"+app1.id+"/events", nil,
				map[string]any{"name": "tick", "channel": channel, "data": strconv.Itoa(i)})
			if err != nil || r.status != 200 {
				l.failed[i] = fmt.Sprintf("%d %v %v", r.status, r.body, err)
			}
			l.sent = i + 1
		}
	}()
	return l
}

// finish stops the loop and returns how many it sent and which failed.
func (l *pubLoop) finish(t *testing.T) (int, map[int]string) {
	t.Helper()
	close(l.stop)
	<-l.done
	for i, e := range l.failed {
		t.Errorf("publish %d failed: %s", i, e)
	}
	return l.sent, l.failed
}

// steadyTicks requires each socket to get ticks from..sent-1 but the failed
// ones, in order (from < 0: from whichever comes first), with no more than
// a second between two arrivals; while says when, in failures and logs.
func steadyTicks(t *testing.T, while string, from, sent int, failed map[int]string, socks ...*wsClient) {
	t.Helper()
	for _, s := range socks {
		gap := checkTicks(t, s, from, sent, failed)
		t.Logf("%s: ticks in order (one every 20 ms) %s, longest gap %v", s.Name, while, gap.Round(time.Millisecond))
		if gap > time.Second {
			t.Errorf("%s: a gap of %v in delivery %s", s.Name, gap, while)
		}
	}
}

// checkTicks requires ticks from..sent-1 but the failed ones, in order
// (from < 0: from whichever comes first), and returns the longest time
// between two arrivals.
func checkTicks(t *testing.T, s *wsClient, from, sent int, failed map[int]string) time.Duration {
	t.Helper()
	var prev time.Time
	var gap time.Duration
	for i := from; i < sent; i++ {
		if _, ok := failed[i]; ok && i >= 0 {
			continue
		}
		r, err := s.TryNext(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: tick %d: %v", s.Name, i, err)
		}
		if i < 0 {
			if i, err = strconv.Atoi(r.Frame.Data); err != nil || r.Frame.Event != "tick" {
				t.Fatalf("%s: want a tick, got %+v", s.Name, r.Frame)
			}
		}
		if r.Frame.Event != "tick" || r.Frame.Data != strconv.Itoa(i) {
			t.Fatalf("%s: want tick %d, got %+v", s.Name, i, r.Frame)
		}
		if !prev.IsZero() && r.At.Sub(prev) > gap {
			gap = r.At.Sub(prev)
		}
		prev = r.At
	}
	return gap
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs several parley processes")
	}
	parleyBinary(t) // built before the clock starts
	began := time.Now()
	nodes := startStatic(t, 3, "parley-test")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	t.Logf("3 nodes answer /up after %v", time.Since(began).Round(time.Millisecond))
	// A node of another cluster name, given the same peers; started now
	// so that membership has had its rounds when it is checked.
	otherPort := freeClusterPort(t)
	other := newProcNode(t, "other", "--cluster-address=127.0.0.1:"+strconv.Itoa(otherPort),
		"--cluster-peers="+n1.clusterAddr()+","+n2.clusterAddr()+","+n3.clusterAddr(), "--cluster-name=another-cluster")
	other.clusterPort = otherPort
	other.startUnready()
	otherUp := time.Now()
	waitMesh(t, 20*time.Second, nodes...)
	t.Logf("cluster formed (every node forwards to every other) %v after start", time.Since(began).Round(time.Millisecond))

	t.Run("publish", func(t *testing.T) {
		ch := uniq("pub")
		socks := publishToEveryNode(t, nodes, ch, 50)

		// One event to two channels; info counts every node's subscribers.
		ch2 := uniq("pub-two")
		for _, s := range socks {
			s.mustSubscribe(ch2, "")
		}
		r := n1.mustAPI(t, "POST", "/apps/"+app1.id+"/events", url.Values{}, map[string]any{
			"name": "two", "channels": []string{ch, ch2}, "data": "2", "info": "subscription_count"})
		want := map[string]any{"channels": map[string]any{ch: map[string]any{"subscription_count": float64(3)}, ch2: map[string]any{"subscription_count": float64(3)}}}
		if !reflect.DeepEqual(r.body, want) {
			t.Errorf("trigger with info: got %v, want %v", r.body, want)
		}
		for _, s := range socks {
			got := map[string]bool{}
			for i := 0; i < 2; i++ {
				if f := s.Next(); f.Event == "two" {
					got[f.Channel] = true
				}
			}
			if !got[ch] || !got[ch2] {
				t.Fatalf("%s: want \"two\" on %s and %s, got %v", s.Name, ch, ch2, got)
			}
		}

		// socket_id leaves out a socket of another node.
		s1, s2, s3 := socks[0], socks[1], socks[2]
		n1.trigger(t, ch, "not-for-s2", "x", "socket_id", s2.SocketID)
		m := n1.marker(t, ch)
		s2.expectMarker(m)
		s1.Expect("not-for-s2")
		s3.Expect("not-for-s2")

		// batch_events: the first leaves out s3, the second goes to all.
		n1.mustAPI(t, "POST", "/apps/"+app1.id+"/batch_events", nil, map[string]any{"batch": []map[string]any{
			{"name": "b1", "channel": ch, "data": "1", "socket_id": s3.SocketID},
			{"name": "b2", "channel": ch2, "data": "2"},
		}})
		// Two channels: their events may arrive in either order.
		for _, s := range socks {
			want := map[string]string{"b1": ch, "b2": ch2}
			if s == s3 {
				delete(want, "b1")
			}
			for n := len(want); n > 0; n-- {
				f := s.Next()
				if want[f.Event] != f.Channel {
					t.Fatalf("%s: want %v, got %+v", s.Name, want, f)
				}
				delete(want, f.Event)
			}
		}
		m = n1.marker(t, ch)
		for _, s := range socks {
			s.expectMarker(m)
		}
	})

	t.Run("client events", func(t *testing.T) {
		ch := "private-" + uniq("client")
		var socks []*wsClient
		for _, n := range nodes {
			s := dial(t, n, "private")
			s.mustSubscribe(ch, "")
			socks = append(socks, s)
		}
		s1, s2, s3 := socks[0], socks[1], socks[2]
		for i := 0; i < 5; i++ {
			s2.Send(map[string]any{"event": "client-typing", "channel": ch, "data": map[string]any{"n": i}})
		}
		for _, s := range []*wsClient{s3, s1} {
			for i := 0; i < 5; i++ {
				if f := s.Next(); f.Event != "client-typing" || f.Channel != ch || f.Data != `{"n":`+strconv.Itoa(i)+`}` {
					t.Fatalf("%s: client event %d: got %+v", s.Name, i, f)
				}
			}
		}
		// Not echoed: node 2's channel took the events before they were
		// forwarded (s3 has them), so markers published afterwards
		// through node 2, and through node 3, come first.
		m := n2.marker(t, ch)
		s2.expectMarker(m)
		m = n3.marker(t, ch)
		s2.expectMarker(m)
		for _, s := range []*wsClient{s1, s3} {
			s.expectMarker(m) // and each arrived once
		}
	})

	t.Run("client events on presence", func(t *testing.T) {
		ch := "presence-" + uniq("typing")
		s2 := dial(t, n2, "typist")
		s2.mustSubscribe(ch, "typist")
		waitUsers(t, ch, []string{"typist"}, n3)
		s3 := dial(t, n3, "reader")
		s3.mustSubscribe(ch, "reader")
		s2.Send(map[string]any{"event": "client-typing", "channel": ch, "data": "hi"})
		if f := s3.Next(); f.Event != "client-typing" || f.UserID != "typist" || f.Data != "hi" {
			t.Fatalf("want client-typing from typist, got %+v", f)
		}
	})

	t.Run("presence", func(t *testing.T) {
		ch := "presence-" + uniq("room")
		a1 := dial(t, n1, "userA-1")
		if ids := presenceIDs(t, a1.mustSubscribe(ch, "ua")); !reflect.DeepEqual(ids, []string{"ua"}) {
			t.Fatalf("a1 sees %v", ids)
		}
		waitUsers(t, ch, []string{"ua"}, n2, n3)
		b := dial(t, n2, "userB")
		if ids := presenceIDs(t, b.mustSubscribe(ch, "ub")); !reflect.DeepEqual(ids, []string{"ua", "ub"}) {
			t.Fatalf("b sees %v", ids)
		}
		memberEvent(t, a1, a1.Next(), "pusher_internal:member_added", "ub")
		waitUsers(t, ch, []string{"ua", "ub"}, nodes...)

		// A's second socket, on node 3: nobody hears of a new member.
		a3 := dial(t, n3, "userA-3")
		if ids := presenceIDs(t, a3.mustSubscribe(ch, "ua")); !reflect.DeepEqual(ids, []string{"ua", "ub"}) {
			t.Fatalf("a3 sees %v", ids)
		}
		mk, mkSock := presenceMarker(t, n3, ch)
		for _, s := range []*wsClient{a1, b, a3} {
			s.expectMemberMarker(mk)
		}
		mkSock.Conn.Close()

		// Every node gives the same answers.
		for _, n := range nodes {
			waitUsers(t, ch, []string{"ua", "ub"}, n)
			eventually(t, 5*time.Second, n.name+" channel info", func() string {
				r := channelInfo(t, n, ch, "user_count,subscription_count")
				if r.body["occupied"] != true || num(r.body, "user_count") != 2 || num(r.body, "subscription_count") != 3 {
					return fmt.Sprintf("got %v, want occupied, 2 users, 3 subscriptions", r.body)
				}
				return ""
			})
			r := n.mustAPI(t, "GET", "/apps/"+app1.id+"/channels", url.Values{"filter_by_prefix": {ch}, "info": {"user_count"}}, nil)
			want := map[string]any{"channels": map[string]any{ch: map[string]any{"user_count": float64(2)}}}
			if !reflect.DeepEqual(r.body, want) {
				t.Errorf("%s: channels: got %v, want %v", n.name, r.body, want)
			}
			if p := r.header.Get("X-Parley-Partial"); p != "" {
				t.Errorf("%s: partial answer: %s", n.name, p)
			}
		}

		// A's node-1 socket leaves: A is still on node 3, so no
		// member_removed. Once node 1 has let the socket go, user E joins
		// on node 1: its member_added follows A's departure everywhere.
		a1.Conn.Close()
		eventually(t, 5*time.Second, "node 1 lets a1 go", func() string {
			if r := channelInfo(t, n1, ch, "subscription_count"); num(r.body, "subscription_count") != 2 {
				return fmt.Sprintf("subscriptions %v", r.body)
			}
			return ""
		})
		e := dial(t, n1, "userE")
		if ids := presenceIDs(t, e.mustSubscribe(ch, "ue")); !reflect.DeepEqual(ids, []string{"ua", "ub", "ue"}) {
			t.Fatalf("e sees %v", ids)
		}
		memberEvent(t, b, b.Next(), "pusher_internal:member_added", "ue")
		memberEvent(t, a3, a3.Next(), "pusher_internal:member_added", "ue")
		waitUsers(t, ch, []string{"ua", "ub", "ue"}, nodes...)

		// A's last socket leaves: member_removed once on each other socket.
		a3.Conn.Close()
		memberEvent(t, b, b.Next(), "pusher_internal:member_removed", "ua")
		memberEvent(t, e, e.Next(), "pusher_internal:member_removed", "ua")
		eventually(t, 5*time.Second, "node 3 lets a3 go", func() string {
			if r := channelInfo(t, n3, ch, "subscription_count"); num(r.body, "subscription_count") != 2 {
				return fmt.Sprintf("subscriptions %v", r.body)
			}
			return ""
		})
		mk, _ = presenceMarker(t, n3, ch)
		b.expectMemberMarker(mk)
		e.expectMemberMarker(mk)
	})

	t.Run("publish right after subscribe", func(t *testing.T) {
		s := dial(t, n3, "fresh")
		for i := 0; i < 20; i++ {
			ch := uniq("fresh")
			if i%2 == 1 {
				ch = "private-" + ch
			}
			s.mustSubscribe(ch, "")
			n1.trigger(t, ch, "first", strconv.Itoa(i))
			if f := s.Next(); f.Event != "first" || f.Channel != ch || f.Data != strconv.Itoa(i) {
				t.Fatalf("round %d: got %+v", i, f)
			}
		}
	})

	t.Run("cache channels", func(t *testing.T) {
		ch := "cache-" + uniq("c")
		probeCh := uniq("probe")
		probe := dial(t, n3, "probe")
		probe.mustSubscribe(probeCh, "")
		n1.trigger(t, ch, "cached", "c1")
		// Node 1 forwards in order: once the probe is on node 3, so is
		// the cached event.
		n1.trigger(t, probeCh, "probe", "p")
		probe.Expect("probe")
		s := dial(t, n3, "cache-sub")
		s.mustSubscribe(ch, "")
		if f := s.Next(); f.Event != "cached" || f.Channel != ch || f.Data != "c1" {
			t.Fatalf("want the cached event, got %+v", f)
		}
		fresh := "cache-" + uniq("fresh")
		s.mustSubscribe(fresh, "")
		if f := s.Next(); f.Event != "pusher:cache_miss" || f.Channel != fresh {
			t.Fatalf("want cache_miss, got %+v", f)
		}
	})

	t.Run("users", func(t *testing.T) {
		uid := uniq("user")
		s := dial(t, n2, "signed-in")
		s.signin(`{"id":"` + uid + `"}`)
		// Server-to-user events, published through node 3.
		n3.trigger(t, "#server-to-user-"+uid, "to-user", "hello")
		if f := s.Next(); f.Event != "to-user" || f.Data != "hello" {
			t.Fatalf("want to-user, got %+v", f)
		}

		// Watchlist: W on node 1 watches B, who signs in on node 2.
		bid := uniq("watched")
		w := dial(t, n1, "watcher")
		w.signin(`{"id":"` + uniq("watcher") + `","watchlist":["` + bid + `"]}`)
		bs := dial(t, n2, "watched")
		bs.signin(`{"id":"` + bid + `"}`)
		want := `{"events":[{"name":"online","user_ids":["` + bid + `"]}]}`
		if f := w.Next(); f.Event != "pusher_internal:watchlist_events" || f.Data != want {
			t.Fatalf("want %s, got %+v", want, f)
		}
		bs.Conn.Close()
		want = `{"events":[{"name":"offline","user_ids":["` + bid + `"]}]}`
		if f := w.Next(); f.Event != "pusher_internal:watchlist_events" || f.Data != want {
			t.Fatalf("want %s, got %+v", want, f)
		}

		// terminate_connections through node 1 closes the user's sockets
		// on nodes 2 and 3.
		s3 := dial(t, n3, "signed-in")
		s3.signin(`{"id":"` + uid + `"}`)
		n1.trigger(t, "#server-to-user-"+uid, "to-user", "again")
		for _, x := range []*wsClient{s, s3} {
			if f := x.Next(); f.Event != "to-user" || f.Data != "again" {
				t.Fatalf("%s: want to-user, got %+v", x.Name, f)
			}
		}
		n1.mustAPI(t, "POST", "/apps/"+app1.id+"/users/"+uid+"/terminate_connections", nil, map[string]any{})
		for _, x := range []*wsClient{s, s3} {
			if code := x.ExpectClose(5 * time.Second); code != 4009 {
				t.Fatalf("%s: terminated socket closed with %d, want 4009", x.Name, code)
			}
		}
	})

	t.Run("max connections", func(t *testing.T) {
		// app-2 allows 4 sockets in the whole cluster.
		var held []*wsClient
		for _, n := range []*procNode{n1, n1, n2, n2} {
			held = append(held, dialApp(t, n, app2, "limited"))
		}
		time.Sleep(2200 * time.Millisecond) // nodes report their counts every second
		x := dialRaw(t, n3, app2, "fifth")
		f := x.Expect("pusher:error")
		if code := num(f.DataMap(t), "code"); code != 4100 {
			t.Fatalf("fifth socket: want 4100, got %+v", f)
		}
		if code := x.ExpectClose(5 * time.Second); code != 4100 {
			t.Fatalf("fifth socket closed with %d, want 4100", code)
		}
		// With one socket fewer, node 3 accepts again once it hears of it.
		held[0].Conn.Close()
		eventually(t, 5*time.Second, "node 3 accepts after a socket left", func() string {
			y := dialRaw(t, n3, app2, "again")
			defer y.Conn.Close()
			f := y.Next()
			if f.Event == "pusher:connection_established" {
				return ""
			}
			return fmt.Sprintf("%+v", f)
		})
	})

	t.Run("cluster name", func(t *testing.T) {
		// Reports go out every second: give them five rounds to go wrong.
		if d := 5*time.Second - time.Since(otherUp); d > 0 {
			time.Sleep(d)
		}
		ch := uniq("names")
		s2 := dial(t, n2, "member")
		s2.mustSubscribe(ch, "")
		n1.trigger(t, ch, "from-node1", "x")
		s2.Expect("from-node1") // node 1 has forwarded it
		// The other cluster's node, whose peers all belong to this
		// cluster, is alone of four: it never serves.
		res, err := http.Get(other.url + "/up")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "quorum") {
			t.Errorf("the other cluster's node, alone: /up %d %s; want 503 no quorum", res.StatusCode, body)
		}
		if strings.Contains(other.allLogs(), "cluster peer joined") {
			t.Errorf("the other cluster's node took a peer")
		}
		for _, n := range nodes {
			if strings.Contains(n.allLogs(), other.clusterAddr()) {
				t.Errorf("%s mentions the other cluster's node %s", n.name, other.clusterAddr())
			}
		}
		other.kill()
	})

	t.Run("kill -9 and rejoin", func(t *testing.T) {
		pch := "presence-" + uniq("fail")
		lch := uniq("loop")
		only2 := uniq("only-on-2")
		p := joinAcross(t, pch, nodes, "fa", "fb", "fc")
		pa, pc := p[0], p[2]
		// fa has a second socket on node 2: it stays a member when node 2
		// dies (members are dropped in id order, fa before fb, so a wrong
		// member_removed fa would come first).
		pa2 := dial(t, n2, "fa-2")
		pa2.mustSubscribe(pch, "fa")
		// A watcher on node 1 of a user signed in on node 2.
		wid := uniq("watched")
		w := dial(t, n1, "watcher")
		w.signin(`{"id":"` + uniq("watcher") + `","watchlist":["` + wid + `"]}`)
		dial(t, n2, "watched").signin(`{"id":"` + wid + `"}`)
		if f := w.Next(); f.Event != "pusher_internal:watchlist_events" || !strings.Contains(f.Data, "online") {
			t.Fatalf("watcher: want online, got %+v", f)
		}
		on2 := dial(t, n2, "only-on-2")
		on2.mustSubscribe(only2, "")
		listed := func() (bool, string) {
			r := n1.mustAPI(t, "GET", "/apps/"+app1.id+"/channels", nil, nil)
			chans, _ := r.body["channels"].(map[string]any)
			_, ok := chans[only2]
			return ok, r.header.Get("X-Parley-Partial")
		}
		eventually(t, 5*time.Second, "node 1 lists node 2's channel", func() string {
			if ok, _ := listed(); !ok {
				return "not listed"
			}
			return ""
		})
		l1 := dial(t, n1, "loop-1")
		l1.mustSubscribe(lch, "")
		l3 := dial(t, n3, "loop-3")
		l3.mustSubscribe(lch, "")

		// Publish every 20 ms through node 1 while node 2 dies and comes
		// back.
		loop := startLoop(n1, lch, 20*time.Millisecond, 1000)
		time.Sleep(time.Second)
		killed := time.Now()
		n2.signal(syscall.SIGKILL)
		n2.wait(5 * time.Second)
		memberEventsAfter(t, "kill -9", killed, 10*time.Second, "pusher_internal:member_removed", "fb", pa, pc)
		r, err := w.TryNext(10*time.Second - time.Since(killed))
		if err != nil || r.Frame.Event != "pusher_internal:watchlist_events" || !strings.Contains(r.Frame.Data, "offline") {
			t.Fatalf("watcher: want offline within 10 s of kill -9, got %+v %v", r.Frame, err)
		}
		t.Logf("kill -9: the watcher on node 1 got offline after %v", r.At.Sub(killed).Round(time.Millisecond))
		// Node 1's list goes on without node 2's channel, and says that it
		// misses a node for as long as node 2 is gone.
		eventually(t, 10*time.Second, "node 1 stops listing node 2's channel and says the list is partial", func() string {
			if ok, partial := listed(); ok || partial == "" {
				return fmt.Sprintf("listed %v, partial %q", ok, partial)
			}
			return ""
		})
		t.Logf("kill -9: node 1's channel list goes without node 2, marked partial, after %v", time.Since(killed).Round(time.Millisecond))
		// Nothing else reached them: fa stayed, nobody was added.
		m := n1.marker(t, pch)
		pa.expectMarker(m)
		pc.expectMarker(m)
		waitUsers(t, pch, []string{"fa", "fc"}, n1, n3)

		// Node 2 comes back at once on the same ports, as a supervisor
		// restarts it; the others keep running.
		restarted := time.Now()
		n2.start()
		up := time.Since(restarted)
		mesh := waitMesh(t, 20*time.Second, nodes...)
		t.Logf("restart: node 2 answers /up after %v, forwards both ways with nodes 1 and 3 after %v", up.Round(time.Millisecond), (up + mesh).Round(time.Millisecond))
		if mesh > 5*time.Second {
			t.Errorf("node 2 rejoined %v after it answered /up; membership refreshes every 2 s", mesh.Round(time.Millisecond))
		}
		l2 := dial(t, n2, "loop-2")
		l2.mustSubscribe(lch, "")
		waitUsers(t, pch, []string{"fa", "fc"}, n2)
		pb2 := dial(t, n2, "fb2")
		if ids := presenceIDs(t, pb2.mustSubscribe(pch, "fb2")); !reflect.DeepEqual(ids, []string{"fa", "fb2", "fc"}) {
			t.Fatalf("pb2 sees %v", ids)
		}
		memberEvent(t, pa, pa.Next(), "pusher_internal:member_added", "fb2")
		memberEvent(t, pc, pc.Next(), "pusher_internal:member_added", "fb2")
		t.Logf("restart: node 2 mirrors the presence of nodes 1 and 3 %v after restart", time.Since(restarted).Round(time.Millisecond))

		// Keep publishing 3 s more: the new node 2 stays in the cluster.
		time.Sleep(3 * time.Second)
		sent, failed := loop.finish(t)
		steadyTicks(t, "while node 2 died and came back", 0, sent, failed, l1, l3)
		steadyTicks(t, "after node 2 came back", -1, sent, failed, l2)
		m = n1.marker(t, pch)
		for _, s := range []*wsClient{pa, pc, pb2} {
			s.expectMarker(m)
		}
	})

	// A frozen node (a long GC pause, a stopped VM): its connections stay
	// open but it answers nothing. The others must drop it, and take it
	// back once it runs again.
	ok := t.Run("SIGSTOP and resume", func(t *testing.T) {
		pch := "presence-" + uniq("frozen")
		lch := uniq("loop")
		p := joinAcross(t, pch, nodes, "sa", "sb", "sc")
		sa, sb, sc := p[0], p[1], p[2]
		l1 := dial(t, n1, "loop-1")
		l1.mustSubscribe(lch, "")
		l3 := dial(t, n3, "loop-3")
		l3.mustSubscribe(lch, "")

		loop := startLoop(n1, lch, 20*time.Millisecond, 1000)
		time.Sleep(500 * time.Millisecond)
		frozen := time.Now()
		n2.signal(syscall.SIGSTOP)
		resumed := false
		defer func() {
			if !resumed {
				_ = n2.cmd.Process.Signal(syscall.SIGCONT)
			}
		}()
		memberEventsAfter(t, "SIGSTOP", frozen, 15*time.Second, "pusher_internal:member_removed", "sb", sa, sc)
		sent, failed := loop.finish(t)
		steadyTicks(t, "while node 2 was frozen", 0, sent, failed, l1, l3)

		n2.signal(syscall.SIGCONT)
		resumed = true
		cont := time.Now()
		// Back in the cluster: sb is a member again everywhere, once, and
		// publishes flow both ways.
		memberEventsAfter(t, "SIGCONT", cont, 15*time.Second, "pusher_internal:member_added", "sb", sa, sc)
		waitMesh(t, 15*time.Second, nodes...)
		waitUsers(t, pch, []string{"sa", "sb", "sc"}, nodes...)
		t.Logf("SIGCONT: node 2 is back in the cluster after %v", time.Since(cont).Round(time.Millisecond))
		// Stable: two seconds later nothing more happened to the members.
		time.Sleep(2 * time.Second)
		m := n1.marker(t, pch)
		for _, s := range []*wsClient{sa, sb, sc} {
			s.expectMarker(m)
		}
	})
	if !ok {
		// Leave the next check a working node 2.
		n2.kill()
		n2.start()
		waitMesh(t, 20*time.Second, nodes...)
	}

	t.Run("SIGTERM", func(t *testing.T) {
		pch := "presence-" + uniq("term")
		p := joinAcross(t, pch, nodes, "t1", "t2", "tc")
		x1, x2, c := p[0], p[1], p[2]

		stopped := time.Now()
		n3.signal(syscall.SIGTERM)
		left := []*wsClient{x1, x2}
		for i, d := range memberEventsAfter(t, "SIGTERM", stopped, 10*time.Second, "pusher_internal:member_removed", "tc", left...) {
			if d > 2*time.Second {
				t.Errorf("%s: member_removed %v after an orderly stop", left[i].Name, d)
			}
		}
		eventually(t, 5*time.Second, "node 1's channel list without node 3", func() string {
			r := n1.mustAPI(t, "GET", "/apps/"+app1.id+"/channels", nil, nil)
			if p := r.header.Get("X-Parley-Partial"); p != "" {
				return "partial: " + p
			}
			return ""
		})
		if code := c.ExpectClose(10 * time.Second); code != 4200 {
			t.Errorf("node 3's socket closed with %d, want 4200", code)
		}
		if code := n3.wait(15 * time.Second); code != 0 {
			t.Errorf("node 3 exited with %d after SIGTERM", code)
		}
	})
	t.Logf("TestCluster took %v", time.Since(began).Round(time.Millisecond))
}

// startEtcd runs a single-member etcd on free loopback ports and returns
// its client URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	client := "http://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	peer := "http://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	runEtcd(t, nil, client, peer, &http.Client{Timeout: time.Second})
	return client
}

// runEtcd runs a single-member etcd with these client and peer URLs, its
// command after wrap (such as ip netns exec NS; none when empty), until the
// test ends, and waits until hc finds it healthy. Without etcd installed the
// test is skipped, or fails under CI.
func runEtcd(t *testing.T, wrap []string, client, peer string, hc *http.Client) {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		bin = "/usr/bin/etcd"
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("etcd is not installed (Debian: apt-get install etcd-server)")
		}
		t.Skip("etcd is not installed (Debian: apt-get install etcd-server)")
	}
	args := append(append([]string(nil), wrap...), bin, "--data-dir", t.TempDir(), "--name", "default",
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default="+peer, "--listen-metrics-urls", "")
	cmd := exec.Command(args[0], args[1:]...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("--- etcd output ---\n%s", tail(out.String(), 40))
		}
	})
	eventually(t, 20*time.Second, "etcd health", func() string {
		select {
		case <-done:
			t.Fatalf("etcd exited:\n%s", tail(out.String(), 40))
		default:
		}
		res, err := hc.Get(client + "/health")
		if err != nil {
			return err.Error()
		}
		defer res.Body.Close()
		var h struct {
			Health string `json:"health"`
		}
		_ = json.NewDecoder(res.Body).Decode(&h)
		if h.Health != "true" {
			return "health " + h.Health
		}
		return ""
	})
}

func TestClusterEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd and several parley processes")
	}
	bin := parleyBinary(t)
	began := time.Now()
	etcd := startEtcd(t)
	name := uniq("etcd-test")
	nodes := make([]*procNode, 3)
	errs := make(chan error, len(nodes))
	for i := range nodes {
		p := freeClusterPort(t)
		n := newProcNode(t, "node"+strconv.Itoa(i+1), "--cluster-address=127.0.0.1:"+strconv.Itoa(p),
			"--cluster-etcd="+etcd, "--cluster-name="+name)
		n.clusterPort = p
		nodes[i] = n
		dir := t.TempDir()
		go func() { errs <- n.startErr(bin, dir) }()
		time.Sleep(300 * time.Millisecond) // staggered, as nodes of a rolling deploy
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	n1, n2 := nodes[0], nodes[1]
	waitMesh(t, 20*time.Second, nodes...)
	t.Logf("etcd: cluster formed %v after start", time.Since(began).Round(time.Millisecond))

	t.Run("publish", func(t *testing.T) {
		publishToEveryNode(t, nodes, uniq("etcd-pub"), 10)
	})

	t.Run("presence and kill -9", func(t *testing.T) {
		pch := "presence-" + uniq("etcd")
		p := joinAcross(t, pch, nodes, "ea", "eb", "ec")
		pa, pc := p[0], p[2]
		waitUsers(t, pch, []string{"ea", "eb", "ec"}, nodes...)

		// kill -9 node 2: the others drop its member.
		killed := time.Now()
		n2.signal(syscall.SIGKILL)
		memberEventsAfter(t, "etcd, kill -9", killed, 10*time.Second, "pusher_internal:member_removed", "eb", pa, pc)
		m := n1.marker(t, pch)
		pa.expectMarker(m)
		pc.expectMarker(m)
	})
	t.Logf("TestClusterEtcd took %v", time.Since(began).Round(time.Millisecond))
}
