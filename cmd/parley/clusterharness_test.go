package main

// The harness of the cluster tests: it builds the parley binary once, runs
// nodes as separate processes on 127.0.0.1, and talks to them as Pusher
// clients do (raw WebSocket frames, signed HTTP API requests).

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/pusher"
)

// The apps every cluster node serves: app-1 without limits, app-2 with a
// cluster-wide connection limit of 4.
type testApp struct{ id, key, secret string }

var (
	app1 = testApp{"app-1", "key-1", "secret-1"}
	app2 = testApp{"app-2", "key-2", "secret-2"}
)

const appsJSON = `[
  {"id": "app-1", "key": "key-1", "secret": "secret-1"},
  {"id": "app-2", "key": "key-2", "secret": "secret-2", "max_connections": 4}
]`

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// raceEnabled reports whether this test binary runs under the race
// detector; the nodes are then built with it too, and a race they report
// fails the test.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// parleyBinary builds this package once per test run.
func parleyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "parley-cluster-test-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "parley")
		args := []string{"build"}
		if raceEnabled() {
			args = append(args, "-race")
		}
		args = append(args, "-o", buildBin, ".")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// freeClusterPort returns a free port for a node's cluster endpoint.
func freeClusterPort(t *testing.T) int { return testkit.FreePort(t) }

// syncBuffer collects a process's output.
type syncBuffer = testkit.Buffer

// procNode is one parley process.
type procNode struct {
	t           *testing.T
	name        string
	httpPort    int
	clusterPort int
	host        string // where it listens and is reached: 127.0.0.1, or its address in a network namespace
	netns       string // the network namespace it runs in ("" = the test's)
	// netDial makes the test's connections to it (nil: net.Dialer): in a
	// network namespace the test reaches it from a router namespace.
	netDial   func(ctx context.Context, network, addr string) (net.Conn, error)
	args      []string // cluster flags
	env       []string
	url       string      // http://127.0.0.1:port (https:// with tlsClient)
	tlsClient *tls.Config // set by useTLS: the node serves HTTPS and wss://
	tlsRT     *http.Transport
	netRT     *http.Transport // with netDial

	mu      sync.Mutex
	cmd     *exec.Cmd
	out     *syncBuffer // this run's stdout and stderr
	logs    []string    // earlier runs' output
	done    chan struct{}
	waitErr error
}

func (n *procNode) clusterAddr() string { return "127.0.0.1:" + strconv.Itoa(n.clusterPort) }

// newProcNode prepares a node; start runs it.
func newProcNode(t *testing.T, name string, clusterArgs ...string) *procNode {
	t.Helper()
	appsFile := filepath.Join(t.TempDir(), "apps.json")
	if err := os.WriteFile(appsFile, []byte(appsJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PARLEY_") || strings.HasPrefix(k, "REVERB_") || k == "DATABASE_URL" {
			continue // the developer's own settings stay out
		}
		env = append(env, kv)
	}
	// A race makes a node exit 66 by default; its report is what counts.
	env = append(env, "PARLEY_APPS_FILE="+appsFile, "PARLEY_CHAT=false", "GORACE=exitcode=0")
	n := &procNode{t: t, name: name, httpPort: testkit.FreePort(t), host: "127.0.0.1", env: env, args: clusterArgs}
	n.url = "http://127.0.0.1:" + strconv.Itoa(n.httpPort)
	t.Cleanup(func() {
		n.kill()
		ours, deps := raceReports(n.allLogs())
		for _, d := range deps {
			t.Logf("%s: a data race inside a dependency, Parley's code on neither stack: %s", n.name, d)
		}
		if len(ours) > 0 {
			t.Errorf("%s: the race detector reported %d data race(s):\n%s", n.name, len(ours), strings.Join(ours, "\n"))
		}
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", n.name, tail(withoutRequests(n.allLogs()), 150))
		}
	})
	return n
}

// raceReports splits the race detector's reports in a node's output into
// ours (the innermost frame outside the Go runtime of one of the racing
// accesses is Parley's code) and the dependencies' own (protoactor-go
// reads its member and block lists without the locks their writers take,
// also when Parley's membership calls into it; its remote sets gRPC's
// global logger while the etcd client logs). Each report is summed up by
// the first frames of its accesses.
func raceReports(out string) (ours, deps []string) {
	blocks := strings.Split(out, "WARNING: DATA RACE")
	for _, b := range blocks[1:] {
		if i := strings.Index(b, "=================="); i >= 0 {
			b = b[:i]
		}
		var frames []string
		parley := false
		// An access is a header ("Read at ...") and its stack, up to a
		// blank line; "Goroutine ... created at" stacks are not accesses.
		for _, sec := range strings.Split(b, "\n\n") {
			sec = strings.TrimLeft(sec, "\n")
			lines := strings.Split(sec, "\n")
			h := strings.TrimSpace(lines[0])
			if !strings.HasPrefix(h, "Write at") && !strings.HasPrefix(h, "Read at") &&
				!strings.HasPrefix(h, "Previous write at") && !strings.HasPrefix(h, "Previous read at") {
				continue
			}
			if len(lines) > 1 {
				frames = append(frames, strings.TrimSpace(lines[1]))
			}
			// Function lines and file lines alternate; the first function
			// outside the runtime (and the generic containers Go
			// instantiates there) is where the access is.
			for _, l := range lines[1:] {
				l = strings.TrimSpace(l)
				if strings.HasPrefix(l, "/") || strings.HasPrefix(l, "runtime.") || strings.HasPrefix(l, "internal/") || strings.HasPrefix(l, "sync/atomic.") {
					continue
				}
				parley = parley || strings.HasPrefix(l, "github.com/parley-chat/parley/")
				break
			}
		}
		summary := strings.Join(frames, " vs ")
		if parley || len(frames) == 0 {
			ours = append(ours, summary)
		} else {
			deps = append(deps, summary)
		}
	}
	return ours, deps
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = append([]string{fmt.Sprintf("[%d lines left out]", len(l)-lines)}, l[len(l)-lines:]...)
	}
	return strings.Join(l, "\n")
}

func (n *procNode) allLogs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := strings.Join(n.logs, "\n--- restart ---\n")
	if n.out != nil {
		if s != "" {
			s += "\n--- restart ---\n"
		}
		s += n.out.String()
	}
	return s
}

// start runs the process with a fresh data directory and waits for /up.
func (n *procNode) start() {
	n.t.Helper()
	if err := n.startErr(parleyBinary(n.t), n.t.TempDir()); err != nil {
		n.t.Fatal(err)
	}
}

// startUnready runs the process and waits until it is live (/livez), not
// until it serves: a cluster node that cannot reach a quorum never does.
func (n *procNode) startUnready() {
	n.t.Helper()
	if err := n.launch(parleyBinary(n.t), n.t.TempDir()); err != nil {
		n.t.Fatal(err)
	}
	if err := n.waitPath("/livez", 20*time.Second); err != nil {
		n.t.Fatal(err)
	}
}

// startErr is start for goroutines other than the test's.
func (n *procNode) startErr(bin, dataDir string) error {
	if err := n.launch(bin, dataDir); err != nil {
		return err
	}
	return n.waitUp(20 * time.Second)
}

// launch runs the process with a fresh data directory.
func (n *procNode) launch(bin, dataDir string) error {
	n.mu.Lock()
	if n.out != nil {
		n.logs = append(n.logs, n.out.String())
	}
	args := append([]string{"serve", "--chat=false", "--host=" + n.host, "--port=" + strconv.Itoa(n.httpPort)}, n.args...)
	cmd := exec.Command(bin, args...)
	if n.netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", n.netns, bin}, args...)...)
	}
	cmd.Env = append(append([]string(nil), n.env...), "PARLEY_DATA_DIR="+dataDir)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	n.cmd, n.out, n.done = cmd, out, make(chan struct{})
	n.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %v", n.name, err)
	}
	done := n.done
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.waitErr = err
		n.mu.Unlock()
		close(done)
	}()
	return nil
}

// inNetns runs the node in a network namespace, listening on host, and
// makes the test reach it through dial.
func (n *procNode) inNetns(ns, host string, port int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	n.netns, n.host, n.httpPort, n.netDial = ns, host, port, dial
	n.netRT = &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 4}
	n.t.Cleanup(n.netRT.CloseIdleConnections)
	n.url = "http://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// useTLS makes the harness talk HTTPS and wss:// to the node, trusting
// what client trusts (the node needs --tls-cert and --tls-key in its args).
func (n *procNode) useTLS(client *tls.Config) {
	n.tlsClient = client
	n.tlsRT = &http.Transport{TLSClientConfig: client}
	n.t.Cleanup(n.tlsRT.CloseIdleConnections)
	n.url = "https://127.0.0.1:" + strconv.Itoa(n.httpPort)
}

// httpClient is a client for the node's HTTP API (timeout 0: none).
func (n *procNode) httpClient(timeout time.Duration) *http.Client {
	if n.netDial != nil {
		return &http.Client{Timeout: timeout, Transport: n.netRT}
	}
	if n.tlsClient == nil {
		return &http.Client{Timeout: timeout}
	}
	return &http.Client{Timeout: timeout, Transport: n.tlsRT}
}

func (n *procNode) waitUp(d time.Duration) error { return n.waitPath("/up", d) }

// waitPath waits until path answers 200.
func (n *procNode) waitPath(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	client := n.httpClient(time.Second)
	for {
		select {
		case <-n.done:
			n.mu.Lock()
			err := n.waitErr
			n.mu.Unlock()
			return fmt.Errorf("%s exited during start-up (%v):\n%s", n.name, err, tail(n.out.String(), 50))
		default:
		}
		res, err := client.Get(n.url + path)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not 200 within %v (last error %v)", n.name, path, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signal sends sig to a running process.
func (n *procNode) signal(sig syscall.Signal) {
	n.t.Helper()
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		n.t.Fatalf("%s: signal %v: %v", n.name, sig, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (n *procNode) wait(d time.Duration) int {
	n.t.Helper()
	select {
	case <-n.done:
	case <-time.After(d):
		n.t.Fatalf("%s did not exit within %v", n.name, d)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.ProcessState.ExitCode()
}

// kill ends the process with SIGKILL, if it runs.
func (n *procNode) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// startStatic runs count nodes that know each other by address (the
// automanaged membership) and waits until each forwards to every other.
func startStatic(t *testing.T, count int, name string) []*procNode {
	t.Helper()
	return startStaticWith(t, count, name, nil)
}

// startStaticWith is startStatic with prepare called on each node before
// it starts (to change its environment).
func startStaticWith(t *testing.T, count int, name string, prepare func(*procNode)) []*procNode {
	t.Helper()
	ports := make([]int, count)
	for i := range ports {
		ports[i] = freeClusterPort(t)
	}
	nodes := make([]*procNode, count)
	for i := range nodes {
		var peers []string
		for j, p := range ports {
			if j != i {
				peers = append(peers, "127.0.0.1:"+strconv.Itoa(p))
			}
		}
		n := newProcNode(t, "node"+strconv.Itoa(i+1), "--cluster-address=127.0.0.1:"+strconv.Itoa(ports[i]),
			"--cluster-peers="+strings.Join(peers, ","), "--cluster-name="+name)
		n.clusterPort = ports[i]
		if prepare != nil {
			prepare(n)
		}
		nodes[i] = n
	}
	// Together, as an operator's nodes come up.
	bin := parleyBinary(t)
	errs := make(chan error, count)
	for _, n := range nodes {
		dir := t.TempDir()
		go func() { errs <- n.startErr(bin, dir) }()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// --- WebSocket clients ---

type frame = testkit.Frame

// wsClient is a test's socket on one node, for one app. Its reads pass over
// markers (see isMarker).
type wsClient struct {
	*testkit.Client
	node *procNode
	app  testApp
}

// dialRaw connects to node for app; frames are read in the background.
func dialRaw(t *testing.T, n *procNode, app testApp, name string) *wsClient {
	t.Helper()
	scheme := "ws"
	if n.tlsClient != nil {
		scheme = "wss"
	}
	u := scheme + "://" + net.JoinHostPort(n.host, strconv.Itoa(n.httpPort)) + "/app/" + app.key + "?protocol=7&client=js&version=8.4.0"
	d := &websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: n.tlsClient, NetDialContext: n.netDial}
	c := testkit.Dial(t, u, testkit.DialOptions{Dialer: d})
	c.Name, c.Skip = name+"@"+n.name, isMarker
	return &wsClient{Client: c, node: n, app: app}
}

// dial connects and reads connection_established.
func dial(t *testing.T, n *procNode, name string) *wsClient { return dialApp(t, n, app1, name) }

func dialApp(t *testing.T, n *procNode, app testApp, name string) *wsClient {
	t.Helper()
	w := dialRaw(t, n, app, name)
	w.Established()
	return w
}

// Absence is asserted with markers: after the deed that must deliver
// nothing, a marker is sent by a path ordered after anything the deed could
// have caused, and it must be the socket's next frame. Markers are HTTP API
// events named markerEvent, and presence members whose id starts with
// markerUser; every read skips markers other than the one it waits for.
const (
	markerEvent = "test-marker"
	markerUser  = "mk-"
)

var markerSeq atomic.Int64

func newMarker() string { return "marker-" + strconv.FormatInt(markerSeq.Add(1), 10) }

func isMarker(f frame) bool {
	switch f.Event {
	case markerEvent:
		return true
	case "pusher_internal:member_added", "pusher_internal:member_removed":
		var d struct {
			UserID string `json:"user_id"`
		}
		_ = json.Unmarshal([]byte(f.Data), &d)
		return strings.HasPrefix(d.UserID, markerUser)
	}
	return false
}

// expectMarker asserts that the marker carrying data is w's next frame
// (other markers aside).
func (w *wsClient) expectMarker(data string) {
	w.T.Helper()
	w.ExpectNext(data, func(f frame) bool { return f.Event == markerEvent && f.Data == data })
}

// expectMemberMarker asserts that member_added of marker user uid is next.
func (w *wsClient) expectMemberMarker(uid string) {
	w.T.Helper()
	w.ExpectNext("member_added "+uid, func(f frame) bool {
		return f.Event == "pusher_internal:member_added" && strings.Contains(f.Data, `"`+uid+`"`)
	})
}

// subscribe sends pusher:subscribe with the auth the channel needs;
// presence channels join as userID.
func (w *wsClient) subscribe(channel, userID string) {
	w.T.Helper()
	w.SubscribeSigned(w.app.key, w.app.secret, channel, `{"user_id":"`+userID+`","user_info":{"name":"`+userID+`"}}`)
}

// mustSubscribe subscribes and returns subscription_succeeded.
func (w *wsClient) mustSubscribe(channel, userID string) frame {
	w.T.Helper()
	w.subscribe(channel, userID)
	return w.ExpectSubscribed(channel)
}

// presenceIDs are the member ids of a presence subscription_succeeded.
func presenceIDs(t *testing.T, f frame) []string {
	t.Helper()
	var d struct {
		Presence struct {
			IDs   []string       `json:"ids"`
			Hash  map[string]any `json:"hash"`
			Count int            `json:"count"`
		} `json:"presence"`
	}
	if err := json.Unmarshal([]byte(f.Data), &d); err != nil {
		t.Fatalf("subscription_succeeded data %q: %v", f.Data, err)
	}
	if d.Presence.Count != len(d.Presence.IDs) || len(d.Presence.Hash) != len(d.Presence.IDs) {
		t.Fatalf("inconsistent presence data %q", f.Data)
	}
	ids := append([]string(nil), d.Presence.IDs...)
	sort.Strings(ids)
	return ids
}

func (w *wsClient) signin(userData string) {
	w.T.Helper()
	w.Send(map[string]any{"event": "pusher:signin", "data": map[string]string{
		"user_data": userData, "auth": pusher.UserAuth(w.app.key, w.app.secret, w.SocketID, userData),
	}})
	w.Expect("pusher:signin_success")
}

// --- HTTP API ---

type apiResult struct {
	status int
	body   map[string]any
	header http.Header
}

// api calls node's signed HTTP API for app.
func (n *procNode) api(app testApp, method, path string, params url.Values, body any) (apiResult, error) {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	q := testkit.Signed(app.key, app.secret, method, path, params, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, n.url+path+"?"+q.Encode(), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	res, err := n.httpClient(0).Do(req)
	if err != nil {
		return apiResult{}, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := apiResult{status: res.StatusCode, header: res.Header}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		r.body = map[string]any{"_raw": string(raw)}
	}
	return r, nil
}

// mustAPI calls the API and requires 200.
func (n *procNode) mustAPI(t *testing.T, method, path string, params url.Values, body any) apiResult {
	t.Helper()
	r, err := n.api(app1, method, path, params, body)
	if err != nil {
		t.Fatalf("%s %s %s: %v", n.name, method, path, err)
	}
	if r.status != 200 {
		t.Fatalf("%s %s %s: %d %v", n.name, method, path, r.status, r.body)
	}
	return r
}

// trigger publishes through node's HTTP API; extra adds fields (socket_id).
func (n *procNode) trigger(t *testing.T, channel, event, data string, extra ...string) {
	t.Helper()
	body := map[string]any{"name": event, "channel": channel, "data": data}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i]] = extra[i+1]
	}
	n.mustAPI(t, "POST", "/apps/"+app1.id+"/events", nil, body)
}

// marker publishes a marker on channel through node and returns its data.
func (n *procNode) marker(t *testing.T, channel string) string {
	t.Helper()
	m := newMarker()
	n.trigger(t, channel, markerEvent, m)
	return m
}

// eventually polls check until it returns "" or d passes; it returns how
// long it took and fails with check's last complaint.
func eventually(t *testing.T, d time.Duration, what string, check func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		problem := check()
		if problem == "" {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v: %s", what, d, problem)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var probeSeq atomic.Int64

// waitMesh waits until a publish through each node reaches a socket on
// every other node: every node forwards to every other.
func waitMesh(t *testing.T, d time.Duration, nodes ...*procNode) time.Duration {
	t.Helper()
	start := time.Now()
	channel := "mesh-probe-" + strconv.FormatInt(probeSeq.Add(1), 10)
	socks := make([]*wsClient, len(nodes))
	for i, n := range nodes {
		socks[i] = dial(t, n, "probe")
		socks[i].mustSubscribe(channel, "")
	}
	for i, src := range nodes {
		for j, dst := range socks {
			if i == j {
				continue
			}
			for {
				if time.Since(start) > d {
					t.Fatalf("%s does not forward to %s within %v", src.name, nodes[j].name, d)
				}
				probe := "probe-" + strconv.FormatInt(probeSeq.Add(1), 10)
				src.trigger(t, channel, "probe", probe)
				if dst.waitProbe(probe, 300*time.Millisecond) {
					break
				}
			}
		}
	}
	for _, s := range socks {
		s.Conn.Close()
	}
	return time.Since(start)
}

// waitProbe reads frames until the probe arrives or d passes.
func (w *wsClient) waitProbe(probe string, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case r, ok := <-w.Reads:
			if !ok || r.Err != nil {
				w.T.Fatalf("%s: probe socket failed: %v", w.Name, r.Err)
			}
			if r.Frame.Event == "probe" && r.Frame.Data == probe {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

// withoutRequests drops the access lines (HTTP requests and upgrades) from a
// node's log: the tests publish every 20 ms, and the lines that tell what
// the cluster did would not be in the tail.
func withoutRequests(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.Contains(l, "msg=request ") {
			b.WriteString(l)
		}
	}
	return b.String()
}
