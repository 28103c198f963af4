package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/metrics"
)

type testServer struct {
	t    *testing.T
	url  string // http://127.0.0.1:port
	cfg  *config.Config
	node *actors.Node
	srv  *httptest.Server
	api_ *Server
}

// startServer runs the real routes on 127.0.0.1:0. mutate may change the config.
func startServer(t *testing.T, mutate func(*config.Config)) *testServer {
	t.Helper()
	return startServerWith(t, mutate, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

// startServerWith is startServer with a log and, if met is not nil, metrics
// (served at /metrics).
func startServerWith(t *testing.T, mutate func(*config.Config), log *slog.Logger, met *metrics.Metrics) *testServer {
	t.Helper()
	cfg := testkit.Config(t, "", mutate)
	node := actors.NewNode(cfg, log)
	api := New(cfg, node, log)
	if met != nil {
		api.SetMetrics(met, true, "")
	}
	// As parley serve runs it: connects are answered by the front.
	srv := httptest.NewUnstartedServer(api.Handler())
	srv.Listener = api.Front(srv.Listener, 10*time.Second)
	srv.Start()
	ts := &testServer{t: t, url: srv.URL, cfg: cfg, node: node, srv: srv, api_: api}
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		node.Stop()
	})
	return ts
}

type frame = testkit.Frame

// wsClient is a test's socket. Its reads pass over markers (see
// expectMarker): a marker meant for one socket's absence check may reach
// others in the same channel, and they have no use for it.
type wsClient struct{ *testkit.Client }

// dialRaw connects; frames are read in the background from then on.
func (s *testServer) dialRaw(path string, hdr http.Header) *wsClient {
	s.t.Helper()
	w := testkit.Dial(s.t, "ws"+strings.TrimPrefix(s.url, "http")+path, testkit.DialOptions{Header: hdr})
	w.Skip, w.Timeout = isMarker, 3*time.Second
	return &wsClient{w}
}

// dial connects to the test app and reads connection_established.
func (s *testServer) dial() *wsClient {
	s.t.Helper()
	w := s.dialRaw("/app/"+testkit.Key+"?protocol=7&client=js&version=8.4.0", nil)
	w.Established()
	return w
}

// Absence is asserted with markers, never by waiting: after the deed that
// must deliver nothing, the test sends a marker by a path the server orders
// after any delivery the deed could have caused (the same channel's actor),
// and the marker must be the socket's next frame. Waiting a fixed time would
// pass whenever the forbidden frame is merely slow.
const markerEvent = "test-marker" // "client-test-marker" when a peer sends it

var markerSeq atomic.Int64

// newMarker returns data that identifies one marker.
func newMarker() string { return "marker-" + strconv.FormatInt(markerSeq.Add(1), 10) }

func isMarker(f frame) bool {
	return f.Event == markerEvent || f.Event == "client-"+markerEvent
}

// expectMarker asserts that the marker carrying data is w's next frame:
// nothing may come before it but other checks' markers.
func (w *wsClient) expectMarker(data string) {
	w.T.Helper()
	w.ExpectNext(data, func(f frame) bool { return isMarker(f) && f.Data == data })
}

// expectNothingBeforeMarker asserts that nothing published to channels
// until now reached w: for each channel in turn it triggers a marker through
// the HTTP API, which the channel's actor delivers after everything it was
// given before, and requires it to be w's next frame. w must be subscribed
// to every channel.
func (s *testServer) expectNothingBeforeMarker(w *wsClient, channels ...string) {
	s.t.Helper()
	for _, ch := range channels {
		m := newMarker()
		s.trigger(ch, markerEvent, m)
		w.expectMarker(m)
	}
}

// subscriber dials and subscribes to channels (see mustSubscribe).
func (s *testServer) subscriber(channels ...string) *wsClient {
	s.t.Helper()
	w := s.dial()
	for _, ch := range channels {
		w.mustSubscribe(ch)
	}
	return w
}

// mustSubscribe subscribes, a presence channel's as user "u-" + the socket
// id, and reads subscription_succeeded.
func (w *wsClient) mustSubscribe(channel string) frame {
	w.T.Helper()
	w.SubscribeSigned(testkit.Key, testkit.Secret, channel, `{"user_id":"u-`+w.SocketID+`","user_info":{"name":"n"}}`)
	return w.ExpectSubscribed(channel)
}

func (w *wsClient) expectError(code int) frame {
	w.T.Helper()
	f := w.Expect("pusher:error")
	m := f.DataMap(w.T)
	if got, _ := m["code"].(float64); int(got) != code {
		w.T.Fatalf("want error code %d, got %q", code, f.Data)
	}
	if msg, _ := m["message"].(string); msg == "" {
		w.T.Fatalf("error without a message: %q", f.Data)
	}
	return f
}

// signedURL builds a Pusher-signed API URL as the server SDKs do.
func signedURL(base, method, path string, params url.Values, body []byte, secret string) string {
	return base + path + "?" + testkit.Signed(testkit.Key, secret, method, path, params, body).Encode()
}

// api calls the signed HTTP API and returns status and decoded JSON body.
func (s *testServer) api(method, path string, params url.Values, body any) (int, map[string]any) {
	s.t.Helper()
	var b []byte
	if body != nil {
		if raw, ok := body.(string); ok {
			b = []byte(raw)
		} else {
			b, _ = json.Marshal(body)
		}
	}
	return s.rawAPI(method, signedURL(s.url, method, path, params, b, testkit.Secret), b)
}

func (s *testServer) rawAPI(method, u string, b []byte) (int, map[string]any) {
	s.t.Helper()
	req, _ := http.NewRequest(method, u, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &m)
	if m == nil {
		m = map[string]any{"_raw": string(raw)}
	}
	return res.StatusCode, m
}

func (s *testServer) trigger(channel, event, data string) {
	s.t.Helper()
	st, body := s.api("POST", "/apps/"+testkit.AppID+"/events", nil, map[string]any{"name": event, "channel": channel, "data": data})
	if st != 200 {
		s.t.Fatalf("trigger: %d %v", st, body)
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
