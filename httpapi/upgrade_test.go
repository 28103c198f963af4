package httpapi

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/metrics"
)

// Connects are answered before gin (ServeHTTP); those whose path gin cleans
// first ("//app/key") still go through gin. Both must refuse and accept
// alike, with the codes the node gives.
func TestConnectRefusalsOnBothPaths(t *testing.T) {
	s := startServer(t, nil)
	below := strconv.Itoa(actors.MinProtocol - 1)
	for _, prefix := range []string{"/app/", "//app/"} {
		t.Run(prefix, func(t *testing.T) {
			for _, tc := range []struct {
				query string
				key   string
				code  int // 0: accepted
			}{
				{"?protocol=7", "no-such-key", 4001},
				{"?protocol=" + below, testkit.Key, 4007},
				{"?client=js&version=8.4.0", testkit.Key, 4007}, // no protocol
				{"?client=java-client&protocol=5&version=2.4.4", testkit.Key, 0},
				{"?protocol=%37", testkit.Key, 0},             // escaped: "7"
				{"?protocol=7;x=1", testkit.Key, 4007},        // a semicolon voids the pair
				{"?protocol=4&protocol=3", testkit.Key, 0},    // the first value counts
				{"?x=1&protocol=3&y=2", testkit.Key, 4007},    // found among others
				{"?protocolx=7&protocol=", testkit.Key, 4007}, // names match whole
			} {
				w := s.dialRaw(prefix+tc.key+tc.query, nil)
				w.T = t
				if tc.code == 0 {
					w.Expect("pusher:connection_established")
					w.Conn.Close()
					continue
				}
				w.expectError(tc.code)
				if got := w.ExpectClose(5 * time.Second); got != tc.code {
					t.Fatalf("%s%s%s: close code %d, want %d", prefix, tc.key, tc.query, got, tc.code)
				}
			}
		})
	}
}

// What is not a connect gets the answers it got when gin routed it.
func TestConnectRouteAnswersAsBefore(t *testing.T) {
	s := startServer(t, nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		status       int
		location     string
	}{
		{"GET", "/app/" + testkit.Key + "?protocol=7", http.StatusBadRequest, ""}, // not a WebSocket handshake
		{"GET", "//app/" + testkit.Key + "?protocol=7", http.StatusBadRequest, ""},
		{"GET", "/app/" + testkit.Key + "/", http.StatusMovedPermanently, "/app/" + testkit.Key},
		{"GET", "/app/", http.StatusMovedPermanently, "/app"},
		{"GET", "/app/..", http.StatusNotFound, ""},
		{"GET", "/app/a%2Fb", http.StatusNotFound, ""},
		{"HEAD", "/app/" + testkit.Key, http.StatusNotFound, ""},
		{"POST", "/app/" + testkit.Key, http.StatusNotFound, ""},
	} {
		req, err := http.NewRequest(tc.method, s.url+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
		}
		if tc.status == http.StatusBadRequest && (string(body) != "Bad Request\n" || resp.Header.Get("Sec-Websocket-Version") != "13") {
			t.Errorf("%s %s: body %q, Sec-Websocket-Version %q: not gorilla's refusal", tc.method, tc.path, body, resp.Header.Get("Sec-Websocket-Version"))
		}
	}
}

// lockedBuffer is a log destination written by the server's goroutines.
type lockedBuffer struct{ testkit.Buffer }

// lines are the JSON log lines so far with msg.
func (b *lockedBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// A connect answered before gin has the access line and the metrics the
// middleware gave it: a debug line for an upgrade, an info line for a
// refused handshake.
func TestConnectAccessLineAndMetrics(t *testing.T) {
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startServerWith(t, nil, log, metrics.New("test"))

	w := s.dial()
	w.Conn.Close()
	resp, err := http.Get(s.url + "/app/" + testkit.Key + "?protocol=7&auth_signature=secret")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var lines []map[string]any
	waitFor(t, func() bool { lines = logs.lines(t, "request"); return len(lines) == 2 })
	want := []map[string]any{
		{"level": "DEBUG", "status": 101.0},
		{"level": "INFO", "status": 400.0},
	}
	for i, l := range lines {
		for k, v := range map[string]any{"method": "GET", "route": "/app/:key", "path": "/app/" + testkit.Key, "ip": "127.0.0.1", "app": testkit.AppID} {
			want[i][k] = v
		}
		for k, v := range want[i] {
			if l[k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, l[k], v, l)
			}
		}
		if _, ok := l["duration"]; !ok {
			t.Errorf("line %d has no duration: %v", i, l)
		}
		if strings.Contains(l["path"].(string), "secret") {
			t.Errorf("the query string was logged: %v", l)
		}
	}

	resp, err = http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{
		`parley_http_requests_total{app="app-1",method="GET",route="/app/:key",status="101"} 1`,
		`parley_http_requests_total{app="app-1",method="GET",route="/app/:key",status="400"} 1`,
		`parley_http_request_duration_seconds_count{method="GET",route="/app/:key"} 2`,
	} {
		if !strings.Contains(string(body), m+"\n") {
			t.Errorf("metrics lack %s", m)
		}
	}
}

// panicHijacker panics when the upgrade takes the connection.
type panicHijacker struct{ *httptest.ResponseRecorder }

func (panicHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) { panic("hijack exploded") }

// A panic during a connect is recovered as gin's recovery did: logged, a
// 500 with gin's body, and an access line with that status.
func TestConnectPanicRecovered(t *testing.T) {
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startServerWith(t, nil, log, nil)
	r := httptest.NewRequest(http.MethodGet, "/app/"+testkit.Key+"?protocol=7", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	rec := panicHijacker{httptest.NewRecorder()}
	s.api_.ServeHTTP(rec, r)
	if rec.Code != http.StatusInternalServerError || rec.Body.String() != `{"error":"internal error"}` {
		t.Fatalf("answer %d %q", rec.Code, rec.Body)
	}
	if p := logs.lines(t, "handler panic"); len(p) != 1 || p[0]["error"] != "hijack exploded" {
		t.Fatalf("panic lines %v", p)
	}
	l := logs.lines(t, "request")
	if len(l) != 1 || l[0]["status"] != 500.0 || l[0]["route"] != "/app/:key" || l[0]["level"] != "WARN" {
		t.Fatalf("access lines %v", l)
	}
}

func TestQueryValue(t *testing.T) {
	for _, raw := range []string{
		"", "protocol=7", "protocol", "protocol=", "a=1&protocol=7&protocol=8", "&&protocol=7&",
		"protocolx=1", "xprotocol=1", "protocol=7=8", "protocol=%37", "protocol=a+b", "pro%74ocol=6",
		"protocol=7;x", "x;y=1&protocol=5", "protocol=%zz&protocol=6", strings.Repeat("a&", 70) + "protocol=5",
	} {
		v, _ := url.ParseQuery(raw)
		if want, got := v.Get("protocol"), queryValue(raw, "protocol"); got != want {
			t.Errorf("queryValue(%q) = %q, url.ParseQuery says %q", raw, got, want)
		}
	}
}
