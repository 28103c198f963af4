package main

// Partition tests: three nodes, each in a network namespace of its own
// (netlab_test.go), node 3's links to the others (and to etcd) cut while the
// test's sockets stay connected to every node; publishes go on through node
// 1 every 50 ms and through node 3 every 250 ms. Each run checks, after the
// heal, that the cluster is whole within 15 s, that presence and channel
// queries agree on every node, that every socket that stayed connected got
// every acknowledged event exactly once and in order, that every socket
// that missed one was closed with a reconnect code, and that webhooks told
// no lies. The figures are printed.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley-chat/parley/internal/testkit"
)

// healBound is how soon after a heal the cluster must be whole again.
const healBound = 15 * time.Second

type partitionCluster struct {
	t        *testing.T
	lab      *netLab
	nodes    []*procNode
	etcd     string // the etcd service address ("" with static peers)
	hooks    *labHooks
	services []string // what a cut also cuts node 3 from
}

// labHooks receives every node's webhooks, in the router namespace.
type labHooks struct {
	mu     sync.Mutex
	events []string // "name channel user", in arrival order
	url    string
}

func (h *labHooks) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

func newPartitionCluster(t *testing.T, withEtcd bool) *partitionCluster {
	t.Helper()
	bin := parleyBinary(t)
	lab := newNetLab(t, 3)
	p := &partitionCluster{t: t, lab: lab, hooks: &labHooks{}}

	hookAddr := lab.service()
	ln := lab.listen(hookAddr + ":80")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b struct {
			Events []map[string]any `json:"events"`
		}
		_ = json.Unmarshal(body, &b)
		p.hooks.mu.Lock()
		for _, e := range b.Events {
			p.hooks.events = append(p.hooks.events, fmt.Sprint(e["name"], " ", e["channel"], " ", e["user_id"]))
		}
		p.hooks.mu.Unlock()
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	p.hooks.url = "http://" + hookAddr + "/"

	membership := []string{"--cluster-peers=" + lab.addr(1) + ":7946," + lab.addr(2) + ":7946," + lab.addr(3) + ":7946"}
	if withEtcd {
		p.etcd = lab.service()
		startLabEtcd(t, lab, p.etcd)
		membership = []string{"--cluster-etcd=http://" + p.etcd + ":2379"}
		p.services = append(p.services, p.etcd)
	}
	apps := `[{"id": "app-1", "key": "key-1", "secret": "secret-1", "webhooks": [{"url": "` + p.hooks.url + `",
	  "event_types": ["channel_occupied", "channel_vacated", "member_added", "member_removed"]}]}]`
	appsFile := filepath.Join(t.TempDir(), "apps.json")
	if err := os.WriteFile(appsFile, []byte(apps), 0o600); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	for i := 1; i <= 3; i++ {
		n := newProcNode(t, "node"+strconv.Itoa(i), append([]string{"--cluster-address=" + lab.addr(i) + ":7946", "--cluster-name=partition"}, membership...)...)
		n.inNetns(lab.hosts[i-1], lab.addr(i), 8080, lab.dial)
		n.env = append(n.env, "PARLEY_APPS_FILE="+appsFile, "PARLEY_WEBHOOK_VACATE_DELAY=1s")
		p.nodes = append(p.nodes, n)
		dir := t.TempDir()
		go func() { errs <- n.startErr(bin, dir) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	p.waitWhole(20 * time.Second)
	return p
}

// startLabEtcd runs etcd in the router namespace on addr.
func startLabEtcd(t *testing.T, lab *netLab, addr string) {
	t.Helper()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: lab.dial}}
	runEtcd(t, []string{"ip", "netns", "exec", lab.rt}, "http://"+addr+":2379", "http://"+addr+":2380", hc)
}

// upState is a node's /up.
type upState struct {
	status  int
	serving bool
	members int
	missing int
	member  string
}

func (n *procNode) upState() upState {
	res, err := n.httpClient(2 * time.Second).Get(n.url + "/up")
	if err != nil {
		return upState{}
	}
	defer res.Body.Close()
	var b struct {
		Cluster struct {
			Member  string `json:"member"`
			Serving bool   `json:"serving"`
			Members int    `json:"members"`
			Missing int    `json:"missing"`
		} `json:"cluster"`
	}
	_ = json.NewDecoder(res.Body).Decode(&b)
	return upState{status: res.StatusCode, serving: b.Cluster.Serving, members: b.Cluster.Members, missing: b.Cluster.Missing, member: b.Cluster.Member}
}

// whole reports what keeps the cluster from being whole: every node serves,
// hears all three and misses nobody.
func (p *partitionCluster) whole() string {
	for _, n := range p.nodes {
		if s := n.upState(); s.status != 200 || s.members != 3 || s.missing != 0 {
			return fmt.Sprintf("%s: /up %d, hears %d, misses %d", n.name, s.status, s.members, s.missing)
		}
	}
	return ""
}

func (p *partitionCluster) waitWhole(d time.Duration) time.Duration {
	p.t.Helper()
	return eventually(p.t, d, "the cluster is whole", p.whole)
}

// sourceLoop publishes numbered events "source:i" through a node, every
// period, and records which were acknowledged (200).
type sourceLoop struct {
	n      *procNode
	source string
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	acked  []int
	failed int
}

func startSource(n *procNode, channel, source string, period time.Duration) *sourceLoop {
	l := &sourceLoop{n: n, source: source, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := 0; i < 100000; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			r, err := n.api(app1, "POST", "/apps/"+app1.id+"/events", nil,
				map[string]any{"name": "tick", "channel": channel, "data": source + ":" + strconv.Itoa(i)})
			l.mu.Lock()
			if err == nil && r.status == 200 {
				l.acked = append(l.acked, i)
			} else {
				l.failed++
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// finish stops the loop and publishes its end marker ("source:end"),
// retrying until one is acknowledged.
func (l *sourceLoop) finish(t *testing.T, channel string) (acked []int, failed int) {
	t.Helper()
	close(l.stop)
	<-l.done
	eventually(t, 10*time.Second, l.source+"'s end marker acknowledged", func() string {
		r, err := l.n.api(app1, "POST", "/apps/"+app1.id+"/events", nil,
			map[string]any{"name": "tick", "channel": channel, "data": l.source + ":end"})
		if err != nil || r.status != 200 {
			return fmt.Sprintf("%d %v %v", r.status, r.body, err)
		}
		return ""
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked, l.failed
}

// delivery is what a subscriber got.
type delivery struct {
	got      map[string][]int // source → indexes in arrival order
	closed   int              // close code (0: still open)
	closedAt time.Time
	ends     int
	lateness time.Duration // the longest time between two of node 1's events
	lastSrc1 time.Time
}

// collect reads s until the end markers of sources arrive or it closes.
func collect(t *testing.T, s *wsClient, sources int) delivery {
	t.Helper()
	d := delivery{got: map[string][]int{}}
	for d.ends < sources {
		r, err := s.TryNext(30 * time.Second)
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				d.closed = ce.Code
			} else if errors.Is(err, testkit.ErrTimeout) {
				t.Fatalf("%s: the end markers did not come within 30 s (ends %d of %d)", s.Name, d.ends, sources)
			} else {
				d.closed = websocket.CloseAbnormalClosure
			}
			d.closedAt = r.At
			return d
		}
		if r.Frame.Event != "tick" {
			continue
		}
		src, idx, _ := strings.Cut(r.Frame.Data, ":")
		if idx == "end" {
			d.ends++
			continue
		}
		i, _ := strconv.Atoi(idx)
		d.got[src] = append(d.got[src], i)
		if src == "n1" {
			if !d.lastSrc1.IsZero() && r.At.Sub(d.lastSrc1) > d.lateness {
				d.lateness = r.At.Sub(d.lastSrc1)
			}
			d.lastSrc1 = r.At
		}
	}
	return d
}

// check compares a subscriber's delivery with what was acknowledged: all of
// it, once, in order, unless the socket was closed with a code that makes
// its client reconnect (and, with the SDKs, catch up).
func check(t *testing.T, name string, d delivery, acked map[string][]int) (lost, dup int) {
	t.Helper()
	for src, want := range acked {
		got := d.got[src]
		seen := map[int]int{}
		for k, i := range got {
			seen[i]++
			if seen[i] == 2 {
				dup++
			}
			if k > 0 && got[k-1] >= i {
				t.Errorf("%s: %s's events out of order: %d after %d", name, src, i, got[k-1])
			}
		}
		for _, i := range want {
			if seen[i] == 0 {
				lost++
			}
		}
	}
	if dup > 0 {
		t.Errorf("%s: %d events delivered twice", name, dup)
	}
	if lost > 0 && d.closed == 0 {
		t.Errorf("%s: missed %d acknowledged events and was never disconnected", name, lost)
	}
	if d.closed != 0 && d.closed != websocket.CloseAbnormalClosure && (d.closed < 4100 || d.closed >= 4300) {
		t.Errorf("%s: closed with %d, not a code that makes a client reconnect", name, d.closed)
	}
	return lost, dup
}

// scenario runs one fault between setup and heal and checks the outcome.
// fault runs with the cut of node 3 in place and returns when it should
// heal; it may restart nodes (restarted lists them: their sockets die).
func (p *partitionCluster) scenario(name string, fault func() (restarted []int)) {
	t := p.t
	nodes := p.nodes
	ticks, pch := uniq("ticks"), "presence-"+uniq("part")
	subs := make([]*wsClient, 3)
	pres := make([]*wsClient, 3)
	users := []string{"u1", "u2", "u3"}
	for i, n := range nodes {
		subs[i] = dial(t, n, "sub")
		subs[i].mustSubscribe(ticks, "")
		pres[i] = dial(t, n, "pres")
		pres[i].mustSubscribe(pch, users[i])
		waitUsers(t, pch, users[:i+1], nodes...)
	}
	hooksBefore := len(p.hooks.all())
	src1 := startSource(nodes[0], ticks, "n1", 50*time.Millisecond)
	src3 := startSource(nodes[2], ticks, "n3", 250*time.Millisecond)
	time.Sleep(time.Second)

	cutAt := time.Now()
	p.lab.cut(3, p.services...)
	downAt := time.Duration(0)
	var downMu sync.Mutex
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() { // when node 3 stops serving
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if s := nodes[2].upState(); s.status == http.StatusServiceUnavailable {
				downMu.Lock()
				if downAt == 0 {
					downAt = time.Since(cutAt)
				}
				downMu.Unlock()
			}
		}
	}()
	restarted := fault()
	p.lab.heal(3)
	healedAt := time.Now()
	close(stopWatch)
	<-watchDone
	whole := p.waitWhole(healBound)

	// Publishes go on a little, then each source ends with a marker.
	time.Sleep(time.Second)
	acked1, failed1 := src1.finish(t, ticks)
	acked3, failed3 := src3.finish(t, ticks)
	acked := map[string][]int{"n1": acked1, "n3": acked3}

	var lostOpen, dup, closed int
	var late time.Duration
	for i, s := range subs {
		if slices.Contains(restarted, i+1) {
			continue // died with its node
		}
		d := collect(t, s, 2)
		l, du := check(t, s.Name, d, acked)
		dup += du
		if d.closed != 0 {
			closed++
			t.Logf("%s %s: %s closed with %d, having missed %d events", p.kind(), name, s.Name, d.closed, l)
		} else {
			lostOpen += l
			late = max(late, d.lateness)
		}
	}

	// The presence sockets that were closed come back, as their clients
	// would: presence agrees on every node.
	rejoined := map[string]bool{}
	for i, s := range pres {
		if closedNow(s) || slices.Contains(restarted, i+1) {
			pres[i] = dial(t, nodes[i], "pres-again")
			pres[i].mustSubscribe(pch, users[i])
			rejoined[users[i]] = true
		}
	}
	waitUsers(t, pch, users, nodes...)
	// Channel queries agree on every node, and say nothing is missing.
	var lists []string
	for _, n := range nodes {
		r := n.mustAPI(t, "GET", "/apps/"+app1.id+"/channels", url.Values{"filter_by_prefix": {pch}}, nil)
		if h := r.header.Get("X-Parley-Partial"); h != "" {
			t.Errorf("%s: channel list after the heal is partial: %s", n.name, h)
		}
		b, _ := json.Marshal(r.body["channels"])
		lists = append(lists, string(b))
	}
	for _, l := range lists[1:] {
		if l != lists[0] {
			t.Errorf("channel lists differ between nodes: %v", lists)
		}
	}

	// Webhooks: what a receiver believes in the end is the truth (every
	// user present; a user reported gone was reported back), a user that
	// stayed connected was never reported gone without being reported back,
	// and no channel was vacated (each kept a socket on the majority side).
	belief := func(hooks []string) []string {
		present := map[string]bool{}
		for _, h := range hooks {
			f := strings.Fields(h)
			if len(f) == 3 && f[1] == pch {
				switch f[0] {
				case "member_added":
					present[f[2]] = true
				case "member_removed":
					delete(present, f[2])
				}
			}
		}
		var out []string
		for u := range present {
			out = append(out, u)
		}
		slices.Sort(out)
		return out
	}
	eventually(t, 10*time.Second, "webhooks tell every user present", func() string {
		if b := belief(p.hooks.all()); !slices.Equal(b, users) {
			return fmt.Sprintf("a receiver believes %v are present: %q", b, p.hooks.all()[hooksBefore:])
		}
		return ""
	})
	hooks := p.hooks.all()[hooksBefore:]
	for _, u := range users {
		if rejoined[u] {
			continue
		}
		if i := slices.Index(hooks, "member_removed "+pch+" "+u); i >= 0 && !slices.Contains(hooks[i:], "member_added "+pch+" "+u) {
			t.Errorf("webhook member_removed %s without a later member_added, though it stayed connected: %q", u, hooks)
		}
	}
	for _, h := range hooks {
		if strings.HasPrefix(h, "channel_vacated "+ticks) || strings.HasPrefix(h, "channel_vacated "+pch) {
			t.Errorf("webhook %q: the channel was never empty", h)
		}
	}

	downMu.Lock()
	down := "never"
	if downAt > 0 {
		down = "after " + downAt.Round(100*time.Millisecond).String()
	}
	downMu.Unlock()
	t.Logf("%s %s: node 3 stopped serving %s; the cluster was whole %v after the heal (cut %v); node 1 acknowledged %d publishes (%d refused), node 3 %d (%d refused); the sockets that stayed connected missed %d and got %d twice, the longest wait between node 1's events %v; %d sockets closed with a reconnect code",
		p.kind(), name, down, whole.Round(100*time.Millisecond), healedAt.Sub(cutAt).Round(100*time.Millisecond),
		len(acked1), failed1, len(acked3), failed3, lostOpen, dup, late.Round(10*time.Millisecond), closed)
}

func (p *partitionCluster) kind() string {
	if p.etcd != "" {
		return "etcd"
	}
	return "static"
}

// closedNow reports whether s's reader saw its end.
func closedNow(s *wsClient) bool {
	for {
		select {
		case r, ok := <-s.Reads:
			if !ok || r.Err != nil {
				return true
			}
		default:
			return false
		}
	}
}

func partitionTests(t *testing.T, withEtcd bool) {
	if testing.Short() {
		t.Skip("runs network namespaces and several parley processes for minutes")
	}
	t.Run("cut 10 s", func(t *testing.T) {
		p := newPartitionCluster(t, withEtcd)
		p.scenario("cut 10 s", func() []int { time.Sleep(10 * time.Second); return nil })
	})
	t.Run("cut 60 s", func(t *testing.T) {
		p := newPartitionCluster(t, withEtcd)
		p.scenario("cut 60 s", func() []int { time.Sleep(60 * time.Second); return nil })
	})
	t.Run("flapping", func(t *testing.T) {
		p := newPartitionCluster(t, withEtcd)
		p.scenario("flapping 2 s down, 2 s up, 5 times", func() []int {
			for i := 0; i < 5; i++ {
				time.Sleep(2 * time.Second)
				p.lab.heal(3)
				time.Sleep(2 * time.Second)
				if i < 4 {
					p.lab.cut(3, p.services...)
				}
			}
			// The scenario's own heal is a no-op now; nothing may have
			// gone down.
			for _, n := range p.nodes {
				if s := n.upState(); s.status != 200 {
					t.Errorf("%s stopped serving while the link flapped: %+v", n.name, s)
				}
			}
			return nil
		})
	})
	t.Run("kill and restart during a cut", func(t *testing.T) {
		p := newPartitionCluster(t, withEtcd)
		p.scenario("node 2 killed and restarted during a 20 s cut of node 3", func() []int {
			time.Sleep(5 * time.Second)
			p.nodes[1].signal(syscall.SIGKILL)
			p.nodes[1].wait(5 * time.Second)
			if err := p.nodes[1].startErr(parleyBinary(t), t.TempDir()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(15 * time.Second)
			return []int{2}
		})
		// One transitive cluster: every node hears the other two under the
		// ids they have now.
		ids := map[string]bool{}
		for _, n := range p.nodes {
			ids[n.upState().member] = true
		}
		if len(ids) != 3 {
			t.Fatalf("member ids %v", ids)
		}
	})
}

// TestPartition: partitions with static peers.
func TestPartition(t *testing.T) {
	t.Parallel()
	partitionTests(t, false)
}

// TestPartitionEtcd: partitions with etcd membership; the cut also cuts
// node 3 from etcd.
func TestPartitionEtcd(t *testing.T) {
	t.Parallel()
	partitionTests(t, true)
}
