package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/storetest"
)

// inProcess is `parley serve` run in the test's process, its output kept.
type inProcess struct {
	*procNode
	out    *syncBuffer // stdout and stderr
	cancel context.CancelFunc
	exited chan int
}

// serveInProcess runs serve with args (and --host/--port) until the test
// ends. The developer's own PARLEY_*/REVERB_*/DATABASE_URL settings are
// blanked first; env adds settings for this run.
func serveInProcess(t *testing.T, env map[string]string, args ...string) *inProcess {
	t.Helper()
	setServeEnv(t, env)
	port := testkit.FreePort(t)
	n := &procNode{t: t, name: "in-process", httpPort: port, url: "http://127.0.0.1:" + strconv.Itoa(port)}
	p := &inProcess{procNode: n, out: &syncBuffer{}, exited: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	all := append([]string{"--host=127.0.0.1", "--port=" + strconv.Itoa(port)}, args...)
	go func() { p.exited <- serve(ctx, all, p.out, p.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			t.Errorf("serve did not stop")
		}
		if t.Failed() {
			t.Logf("--- server output ---\n%s", tail(p.out.String(), 200))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case code := <-p.exited:
			t.Fatalf("serve exited with %d:\n%s", code, p.out.String())
		default:
		}
		res, err := http.Get(n.url + "/livez")
		if err == nil {
			res.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not up: %v\n%s", err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// setServeEnv blanks the developer's own PARLEY_*/REVERB_*/DATABASE_URL
// settings for this test, then sets env.
func setServeEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PARLEY_") || strings.HasPrefix(k, "REVERB_") || k == "DATABASE_URL" {
			t.Setenv(k, "")
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// scrape reads a Prometheus text page into series → value ("name{labels}",
// labels as the client library orders them: sorted by name).
func scrape(t *testing.T, u string, hdr ...string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, res.StatusCode, b)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want Prometheus text", ct)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// metricsWant checks series values; missing series count as 0.
func metricsWant(got map[string]float64, want map[string]float64) string {
	var bad []string
	for k, v := range want {
		if got[k] != v {
			bad = append(bad, fmt.Sprintf("%s = %v, want %v", k, got[k], v))
		}
	}
	return strings.Join(bad, "; ")
}

// rawClient is a WebSocket client that counts the bytes the server wrote
// to it, frame headers included.
type rawClient struct {
	t      *testing.T
	c      *websocket.Conn
	frames int
	wire   int
}

func dialCounting(t *testing.T, n *procNode, path string) (*rawClient, error) {
	c, _, err := websocket.DefaultDialer.Dial("ws://127.0.0.1:"+strconv.Itoa(n.httpPort)+path, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c}, nil
}

func wireSize(payload int) int {
	switch {
	case payload < 126:
		return 2 + payload
	case payload <= 0xFFFF:
		return 4 + payload
	}
	return 10 + payload
}

// read returns the next message's event and data.
func (r *rawClient) read() (event, data string) {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := r.c.ReadMessage()
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	r.frames++
	r.wire += wireSize(len(b))
	var f struct {
		Event string `json:"event"`
		Data  string `json:"data"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		r.t.Fatalf("frame %q: %v", b, err)
	}
	return f.Event, f.Data
}

func (r *rawClient) expect(event string) string {
	r.t.Helper()
	e, d := r.read()
	if e != event {
		r.t.Fatalf("got %s %s, want %s", e, d, event)
	}
	return d
}

// send writes a message and returns its size.
func (r *rawClient) send(v any) int {
	r.t.Helper()
	b, _ := json.Marshal(v)
	if err := r.c.WriteMessage(websocket.TextMessage, b); err != nil {
		r.t.Fatal(err)
	}
	return len(b)
}

func (r *rawClient) subscribe(channel string) int {
	r.t.Helper()
	n := r.send(map[string]any{"event": "pusher:subscribe", "data": map[string]string{"channel": channel}})
	r.expect("pusher_internal:subscription_succeeded")
	return n
}

// closeCode reads until the server's close frame and returns its code.
func (r *rawClient) closeCode() int {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := r.c.ReadMessage(); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code
			}
			r.t.Fatalf("want a close frame, got %v", err)
		}
	}
}

// chatCall makes a chat REST request and returns the status and body.
func chatCall(t *testing.T, base, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// logLines parses JSON log lines (other output is skipped).
func logLines(out string) []map[string]any {
	var lines []map[string]any
	for _, l := range strings.Split(out, "\n") {
		var m map[string]any
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

// findLine returns the first line having every field of want (values
// compared as text; a want value ending in "*" is a prefix).
func findLine(lines []map[string]any, want map[string]string) map[string]any {
next:
	for _, l := range lines {
		for k, v := range want {
			got := fmt.Sprint(l[k])
			if p, ok := strings.CutSuffix(v, "*"); ok {
				if !strings.HasPrefix(got, p) {
					continue next
				}
			} else if got != v {
				continue next
			}
		}
		return l
	}
	return nil
}

// TestMetricsAndLogsAfterScriptedRun drives a server with real sockets,
// the signed HTTP API and the chat REST API, on both databases, then checks
// that /metrics moved by exactly what the run did and that the log has an
// access line per request, an "auth failure" line per refused login or
// request, a line per refused socket, and no secret.
func TestMetricsAndLogsAfterScriptedRun(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dataDir := t.TempDir()
			dbURL := ""
			if db == "postgres" {
				dbURL = storetest.PostgresURL(t)
			}
			testMetricsAndLogs(t, dataDir, dbURL)
		})
	}
}

func testMetricsAndLogs(t *testing.T, dataDir, dbURL string) {
	// The chat's users and matter, written before the server starts.
	ctx := context.Background()
	st, err := persistence.Open(ctx, dbURL, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const password = "correct-horse-battery"
	hash, _ := chat.HashPassword(password)
	ann, err := st.CreateUser(ctx, "Ann", "ann@example.com", hash)
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := st.CreateUser(ctx, "Bob", "bob@example.com", hash)
	matter, _ := st.CreateMatter(ctx, "Case 1")
	_ = st.AddMember(ctx, matter.ID, ann.ID)
	_ = st.AddMember(ctx, matter.ID, bob.ID)
	st.Close()

	appsFile := filepath.Join(t.TempDir(), "apps.json")
	if err := os.WriteFile(appsFile, []byte(appsJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--apps-file", appsFile, "--data-dir", dataDir, "--api-rate-limit", "0", "--max-connections-per-ip", "4"}
	if dbURL != "" {
		args = append(args, "--database-url", dbURL)
	}
	srv := serveInProcess(t, map[string]string{
		"PARLEY_LOG_FORMAT":         "json",
		"PARLEY_MAX_PENDING_BYTES":  "65536", // the slow consumer below is dropped soon
		"PARLEY_SOCKET_SEND_BUFFER": "4096",
	}, args...)
	metricsURL := srv.url + "/metrics"
	const (
		app    = `app="app-1"`
		events = `route="/apps/:app_id/events"`
	)

	// 1. Three sockets, three subscriptions on two channels, one event to
	// the two sockets in "news".
	var clients []*rawClient
	recvBytes := 0
	for i, ch := range []string{"news", "news", "other"} {
		c, err := dialCounting(t, srv.procNode, "/app/key-1?protocol=7&client=js&version=8.4.0")
		if err != nil {
			t.Fatal(err)
		}
		c.expect("pusher:connection_established")
		recvBytes += c.subscribe(ch)
		clients = append(clients, c)
		_ = i
	}
	srv.trigger(t, "news", "e1", `{"n":1}`)
	clients[0].expect("e1")
	clients[1].expect("e1")
	sentFrames, sentBytes := 0, 0
	for _, c := range clients {
		sentFrames += c.frames
		sentBytes += c.wire
	}
	eventually(t, 10*time.Second, "metrics after the socket run", func() string {
		return metricsWant(scrape(t, metricsURL), map[string]float64{
			"parley_connections{" + app + "}":                                                     3,
			"parley_connections_opened_total{" + app + "}":                                        3,
			"parley_subscriptions{" + app + "}":                                                   3,
			"parley_channels{" + app + "}":                                                        2,
			"parley_ws_messages_received_total{" + app + "}":                                      3,
			"parley_ws_received_bytes_total{" + app + "}":                                         float64(recvBytes),
			"parley_ws_messages_sent_total{" + app + "}":                                          float64(sentFrames), // 3 established, 3 succeeded, 2 events
			"parley_ws_sent_bytes_total{" + app + "}":                                             float64(sentBytes),
			"parley_delivery_latency_seconds_count{" + app + "}":                                  2,
			`parley_http_requests_total{` + app + `,method="POST",` + events + `,status="200"}`:   1,
			`parley_http_requests_total{` + app + `,method="GET",route="/app/:key",status="101"}`: 3,
			`parley_connections{app="app-2"}`:                                                     0,
		})
	})
	if sentFrames != 8 {
		t.Fatalf("the clients read %d frames, want 8", sentFrames)
	}

	// 2. The chat: a login, a failed login, a send, a request with a bad
	// token; and a Pusher API request with a bad signature.
	code, body := chatCall(t, srv.url, "POST", "/api/auth/login", "", map[string]string{"email": "ann@example.com", "password": password})
	if code != 200 {
		t.Fatalf("login: %d %v", code, body)
	}
	token, _ := body["token"].(string)
	code, _ = chatCall(t, srv.url, "POST", "/api/auth/login", "", map[string]string{"email": "bob@example.com", "password": "wrong-password-xyz"})
	if code != 422 {
		t.Fatalf("bad login: %d", code)
	}
	code, body = chatCall(t, srv.url, "POST", "/api/messages/send", token, map[string]any{"message": "hello", "client_matter_id": matter.ID})
	if code != 201 {
		t.Fatalf("send: %d %v", code, body)
	}
	const badToken = "999|not-a-real-token-secret"
	if code, _ = chatCall(t, srv.url, "GET", "/api/user", badToken, nil); code != 401 {
		t.Fatalf("bad token: %d", code)
	}
	const badSig = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	badBody := `{"name":"x","channel":"news","data":"{}"}`
	sum := md5.Sum([]byte(badBody))
	q := url.Values{"auth_key": {"key-1"}, "auth_timestamp": {strconv.FormatInt(time.Now().Unix(), 10)}, "auth_version": {"1.0"},
		"body_md5": {hex.EncodeToString(sum[:])}, "auth_signature": {badSig}}
	res, err := http.Post(srv.url+"/apps/app-1/events?"+q.Encode(), "application/json", strings.NewReader(badBody))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("bad signature: %d", res.StatusCode)
	}
	eventually(t, 10*time.Second, "metrics after the chat run", func() string {
		return metricsWant(scrape(t, metricsURL), map[string]float64{
			"parley_chat_messages_sent_total{" + app + "}":                                                  1,
			`parley_db_query_duration_seconds_count{op="SendMessages"}`:                                     1,
			`parley_http_requests_total{` + app + `,method="POST",route="/api/auth/login",status="200"}`:    1,
			`parley_http_requests_total{` + app + `,method="POST",route="/api/auth/login",status="422"}`:    1,
			`parley_http_requests_total{` + app + `,method="POST",route="/api/messages/send",status="201"}`: 1,
			`parley_http_requests_total{` + app + `,method="GET",route="/api/user",status="401"}`:           1,
			`parley_http_requests_total{` + app + `,method="POST",` + events + `,status="401"}`:             1,
			`parley_http_requests_total{` + app + `,method="POST",` + events + `,status="200"}`:             1,
		})
	})
	if got := scrape(t, metricsURL)[`parley_db_query_duration_seconds_count{op="UserByEmail"}`]; got < 2 {
		t.Fatalf("UserByEmail timed %v times, want the 2 logins", got)
	}

	// 3. Refused sockets and a normal close.
	unknown, err := dialCounting(t, srv.procNode, "/app/no-such-key?protocol=7")
	if err != nil {
		t.Fatal(err)
	}
	if c := unknown.closeCode(); c != 4001 {
		t.Fatalf("unknown key closed with %d", c)
	}
	noProto, err := dialCounting(t, srv.procNode, "/app/key-1")
	if err != nil {
		t.Fatal(err)
	}
	if c := noProto.closeCode(); c != 4007 {
		t.Fatalf("no protocol closed with %d", c)
	}
	leaving := clients[2]
	_ = leaving.c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
	if c := leaving.closeCode(); c != 1000 {
		t.Fatalf("close answered with %d", c)
	}
	// Two more sockets make 4 from this address, the cap; a fifth is refused.
	// (The node forgets a closed socket just after answering its close.)
	eventually(t, 10*time.Second, "the closed socket forgotten", func() string {
		return metricsWant(scrape(t, metricsURL), map[string]float64{"parley_connections{" + app + "}": 2})
	})
	var extra []*rawClient
	for i := 0; i < 2; i++ {
		c, err := dialCounting(t, srv.procNode, "/app/key-1?protocol=7")
		if err != nil {
			t.Fatal(err)
		}
		c.expect("pusher:connection_established")
		extra = append(extra, c)
	}
	overCap, err := dialCounting(t, srv.procNode, "/app/key-1?protocol=7")
	if err != nil {
		t.Fatal(err)
	}
	if c := overCap.closeCode(); c != 4100 {
		t.Fatalf("a fifth socket from one address closed with %d, want 4100", c)
	}
	for _, c := range extra {
		_ = c.c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
		if code := c.closeCode(); code != 1000 {
			t.Fatalf("close answered with %d", code)
		}
	}
	eventually(t, 10*time.Second, "metrics after refusals and a close", func() string {
		return metricsWant(scrape(t, metricsURL), map[string]float64{
			`parley_connections_closed_total{app="",code="4001"}`:      1,
			`parley_connections_closed_total{` + app + `,code="4007"}`: 1,
			`parley_connections_closed_total{` + app + `,code="1000"}`: 3,
			`parley_connections_closed_total{` + app + `,code="4100"}`: 1,
			"parley_connections{" + app + "}":                          2,
			"parley_connections_opened_total{" + app + "}":             5, // refused sockets were never opened
			"parley_subscriptions{" + app + "}":                        2,
			"parley_channels{" + app + "}":                             1,
			"parley_slow_consumer_drops_total{" + app + "}":            0,
			`parley_connections_closed_total{` + app + `,code="4101"}`: 0,
		})
	})

	// 4. A slow consumer: subscribed, never reads; it is dropped with 4101.
	slow, err := dialCounting(t, srv.procNode, "/app/key-1?protocol=7")
	if err != nil {
		t.Fatal(err)
	}
	slow.expect("pusher:connection_established")
	slow.subscribe("slow")
	big := `"` + strings.Repeat("x", 9000) + `"`
	dropped := false
	for i := 0; i < 400 && !dropped; i++ {
		srv.trigger(t, "slow", "big", big)
		if i%10 == 9 {
			dropped = scrape(t, metricsURL)["parley_slow_consumer_drops_total{"+app+"}"] == 1
		}
	}
	eventually(t, 10*time.Second, "metrics after a slow consumer", func() string {
		return metricsWant(scrape(t, metricsURL), map[string]float64{
			"parley_slow_consumer_drops_total{" + app + "}":            1,
			`parley_connections_closed_total{` + app + `,code="4101"}`: 1,
			"parley_connections{" + app + "}":                          2,
		})
	})

	// The log.
	lines := logLines(srv.out.String())
	for _, want := range []map[string]string{
		{"msg": "request", "method": "POST", "route": "/apps/:app_id/events", "status": "200", "app": "app-1", "path": "/apps/app-1/events"},
		{"msg": "request", "method": "POST", "route": "/api/messages/send", "status": "201", "app": "app-1", "user_id": strconv.FormatInt(ann.ID, 10)},
		{"msg": "request", "method": "GET", "route": "/api/user", "status": "401", "reason": "unknown or revoked token"},
		{"msg": "auth failure", "route": "/api/auth/login", "status": "422", "reason": "login failed: wrong password", "email": "bob@example.com"},
		{"msg": "auth failure", "route": "/api/user", "status": "401", "reason": "unknown or revoked token"},
		{"msg": "auth failure", "route": "/apps/:app_id/events", "status": "401", "app": "app-1", "reason": "invalid auth_signature*"},
		{"msg": "socket refused", "code": "4001", "app": "", "key": "no-such-key", "reason": "App key no-such-key does not exist"},
		{"msg": "socket refused", "code": "4007", "app": "app-1", "reason": "No protocol version supplied*"},
		{"msg": "socket refused", "code": "4100", "app": "app-1", "ip": "127.0.0.1", "reason": "Over capacity: at most 4 connections per client address"},
	} {
		l := findLine(lines, want)
		if l == nil {
			t.Errorf("no log line with %v", want)
			continue
		}
		if want["msg"] != "socket refused" {
			if _, ok := l["duration"]; !ok {
				t.Errorf("access line without a duration: %v", l)
			}
		}
	}
	if l := findLine(lines, map[string]string{"msg": "request", "route": "/api/auth/login", "status": "200"}); l == nil || l["user_id"] != nil {
		// The login's user is not authenticated by a token: no user_id,
		// and the line exists.
		t.Errorf("login access line: %v", l)
	}
	out := srv.out.String()
	_, tokenSecret, _ := strings.Cut(token, "|")
	for _, secret := range []string{"secret-1", "secret-2", password, "wrong-password-xyz", tokenSecret, badToken, "not-a-real-token-secret", badSig, "auth_signature=", "auth_timestamp="} {
		if secret != "" && strings.Contains(out, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
	if n := len(regexp.MustCompile(`"msg":"auth failure"`).FindAllString(out, -1)); n != 3 {
		t.Errorf("%d auth failure lines, want 3 (bad login, bad token, bad signature)", n)
	}
}

// TestMetricsOnOwnAddressWithToken: --metrics-addr moves /metrics off the
// main port, and PARLEY_METRICS_TOKEN makes it ask for a bearer token.
func TestMetricsOnOwnAddressWithToken(t *testing.T) {
	metricsPort := testkit.FreePort(t)
	srv := serveInProcess(t, map[string]string{"PARLEY_METRICS_TOKEN": "scrape-token-1", "PARLEY_APPS_FILE": writeApps(t)},
		"--chat=false", "--data-dir", t.TempDir(), "--metrics-addr", "127.0.0.1:"+strconv.Itoa(metricsPort))
	res, err := http.Get(srv.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("/metrics on the main port with --metrics-addr: %d, want 404", res.StatusCode)
	}
	own := "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"
	res, err = http.Get(own)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("/metrics without the token: %d, want 401", res.StatusCode)
	}
	res, err = http.Get(own + "?token=scrape-token-1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("/metrics with the token in the query: %d, want 401 (only the header counts)", res.StatusCode)
	}
	got := scrape(t, own, "Authorization", "Bearer scrape-token-1")
	if got[`parley_connections{app="app-1"}`] != 0 || len(got) < 10 {
		t.Fatalf("scrape: %d series", len(got))
	}
	found := false
	for k, v := range got {
		if strings.HasPrefix(k, "parley_build_info{") && v == 1 {
			found = true
		}
	}
	if !found {
		t.Fatal("no parley_build_info")
	}
	// The token never reaches the log.
	if strings.Contains(srv.out.String(), "scrape-token-1") {
		t.Fatal("the metrics token is in the log")
	}
}

// TestTextLogFormat: the default format is key=value text, with the same
// access lines.
func TestTextLogFormat(t *testing.T) {
	srv := serveInProcess(t, map[string]string{"PARLEY_APPS_FILE": writeApps(t)}, "--chat=false", "--data-dir", t.TempDir())
	res, err := http.Get(srv.url + "/apps/app-1/channels?auth_key=key-1&auth_signature=abcdef")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	eventually(t, 5*time.Second, "text access line", func() string {
		out := srv.out.String()
		if !strings.Contains(out, `level=INFO msg=request method=GET route=/apps/:app_id/channels path=/apps/app-1/channels status=401`) ||
			!strings.Contains(out, `level=WARN msg="auth failure"`) {
			return "no access and auth failure lines in:\n" + out
		}
		if strings.Contains(out, "abcdef") {
			return "the signature is in the log"
		}
		return ""
	})
}

func writeApps(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "apps.json")
	if err := os.WriteFile(p, []byte(appsJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A restart says it uses the saved credentials and does not print the
// secret again; the log's client_events agrees with the credentials file
// (which holds no options).
func TestRestartUsesSavedCredentialsWithoutTheSecret(t *testing.T) {
	dataDir := t.TempDir()
	first := serveInProcess(t, nil, "--chat=false", "--data-dir", dataDir)
	b, err := os.ReadFile(filepath.Join(dataDir, "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	var saved map[string]any
	if err := json.Unmarshal(b, &saved); err != nil || len(saved) != 3 {
		t.Fatalf("credentials.json: %s", b)
	}
	secret, _ := saved["secret"].(string)
	if !strings.Contains(first.out.String(), "PARLEY_APP_SECRET="+secret) {
		t.Fatalf("the first start does not show the generated secret:\n%s", first.out.String())
	}
	first.cancel()
	<-first.exited
	first.exited <- 0 // for its cleanup

	second := serveInProcess(t, nil, "--chat=false", "--data-dir", dataDir)
	out := second.out.String()
	if strings.Contains(out, secret) {
		t.Fatalf("a restart printed the secret again:\n%s", out)
	}
	if !strings.Contains(out, "using saved credentials from "+filepath.Join(dataDir, "credentials.json")) ||
		!strings.Contains(out, "client_events=true") {
		t.Fatalf("restart output:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, &out, io.Discard); code != 0 {
		t.Fatal(code)
	}
	if !regexp.MustCompile(`^parley \S+.* go1\.\d+`).MatchString(out.String()) || strings.HasPrefix(out.String(), "parley dev\n") {
		t.Fatalf("version output %q", out.String())
	}
	old := version
	version = "v9.8.7"
	defer func() { version = old }()
	out.Reset()
	run([]string{"version"}, &out, io.Discard)
	if !strings.HasPrefix(out.String(), "parley v9.8.7 go1.") {
		t.Fatalf("with -ldflags -X main.version: %q", out.String())
	}
}
