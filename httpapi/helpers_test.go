package httpapi

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/gorilla/websocket"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/metrics"
	"github.com/parley-chat/parley/pusher"
)

const (
	testAppID  = "app-1"
	testKey    = "key-1"
	testSecret = "secret-1"
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
	cfg, err := config.Load(nil, func(k string) (string, bool) {
		v, ok := map[string]string{
			"PARLEY_APP_ID": testAppID, "PARLEY_APP_KEY": testKey, "PARLEY_APP_SECRET": testSecret,
			"PARLEY_DATA_DIR": t.TempDir(),
		}[k]
		return v, ok
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
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

type wsClient struct {
	t        *testing.T
	c        *websocket.Conn
	socketID string
	frames   chan readResult // filled by one reader goroutine
}

type readResult struct {
	f   frame
	err error
}

type frame struct {
	Event   string `json:"event"`
	Channel string `json:"channel"`
	Data    string `json:"data"`
	UserID  string `json:"user_id"`
}

func (f frame) dataMap(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(f.Data), &m); err != nil {
		t.Fatalf("data of %s is not a JSON object string: %q", f.Event, f.Data)
	}
	return m
}

// dialRaw connects; frames are read in the background from then on.
func (s *testServer) dialRaw(path string, hdr http.Header) *wsClient {
	s.t.Helper()
	u := "ws" + strings.TrimPrefix(s.url, "http") + path
	c, _, err := websocket.DefaultDialer.Dial(u, hdr)
	if err != nil {
		s.t.Fatalf("dial %s: %v", u, err)
	}
	s.t.Cleanup(func() { c.Close() })
	w := &wsClient{t: s.t, c: c, frames: make(chan readResult, 4096)}
	go func() {
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				w.frames <- readResult{err: err}
				close(w.frames)
				return
			}
			var f frame
			if jerr := json.Unmarshal(b, &f); jerr != nil {
				err = fmt.Errorf("server sent non-JSON or non-string data %q: %v", b, jerr)
			}
			w.frames <- readResult{f: f, err: err}
		}
	}()
	return w
}

// dial connects to the test app and reads connection_established.
func (s *testServer) dial() *wsClient {
	s.t.Helper()
	w := s.dialRaw("/app/"+testKey+"?protocol=7&client=js&version=8.4.0", nil)
	f := w.read()
	if f.Event != "pusher:connection_established" {
		s.t.Fatalf("first frame %+v", f)
	}
	m := f.dataMap(s.t)
	w.socketID, _ = m["socket_id"].(string)
	if w.socketID == "" {
		s.t.Fatalf("no socket_id in %q", f.Data)
	}
	return w
}

var errTimeout = errors.New("timeout")

// readTimeout returns the next frame that is not a marker (see
// expectMarker): a marker meant for one socket's absence check may reach
// others in the same channel, and they have no use for it.
func (w *wsClient) readTimeout(d time.Duration) (frame, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case r, ok := <-w.frames:
			if !ok {
				return frame{}, io.EOF
			}
			if r.err == nil && isMarker(r.f) {
				continue
			}
			return r.f, r.err
		case <-timer.C:
			return frame{}, errTimeout
		}
	}
}

func (w *wsClient) read() frame {
	w.t.Helper()
	f, err := w.readTimeout(3 * time.Second)
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return f
}

// expect reads the next frame and checks its event name.
func (w *wsClient) expect(event string) frame {
	w.t.Helper()
	f := w.read()
	if f.Event != event {
		w.t.Fatalf("want %s, got %+v", event, f)
	}
	return f
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
	w.t.Helper()
	timer := time.NewTimer(3 * time.Second)
	defer timer.Stop()
	for {
		select {
		case r, ok := <-w.frames:
			switch {
			case !ok:
				w.t.Fatalf("socket %s ended before marker %s", w.socketID, data)
			case r.err != nil:
				w.t.Fatalf("socket %s: %v before marker %s", w.socketID, r.err, data)
			case isMarker(r.f) && r.f.Data == data:
				return
			case !isMarker(r.f):
				w.t.Fatalf("socket %s: want nothing before marker %s, got %+v", w.socketID, data, r.f)
			}
		case <-timer.C:
			w.t.Fatalf("socket %s: marker %s did not arrive", w.socketID, data)
		}
	}
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

// expectClose skips frames until the socket closes and returns the close code.
func (w *wsClient) expectClose() int {
	w.t.Helper()
	for {
		_, err := w.readTimeout(5 * time.Second)
		if err == nil {
			continue
		}
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		w.t.Fatalf("want close frame, got %v", err)
	}
}

func (w *wsClient) send(v any) {
	w.t.Helper()
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	default:
		b, _ = json.Marshal(v)
	}
	if err := w.c.WriteMessage(websocket.TextMessage, b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

func (w *wsClient) subscribe(channel, auth, channelData string) {
	w.t.Helper()
	d := map[string]string{"channel": channel}
	if auth != "" {
		d["auth"] = auth
	}
	if channelData != "" {
		d["channel_data"] = channelData
	}
	w.send(map[string]any{"event": "pusher:subscribe", "data": d})
}

func (w *wsClient) mustSubscribe(channel string) frame {
	w.t.Helper()
	var auth, cd string
	switch {
	case strings.HasPrefix(channel, "presence-"):
		cd = `{"user_id":"u-` + w.socketID + `","user_info":{"name":"n"}}`
		auth = pusher.ChannelAuth(testKey, testSecret, w.socketID, channel, cd)
	case strings.HasPrefix(channel, "private-"):
		auth = pusher.ChannelAuth(testKey, testSecret, w.socketID, channel, "")
	}
	w.subscribe(channel, auth, cd)
	f := w.expect("pusher_internal:subscription_succeeded")
	if f.Channel != channel {
		w.t.Fatalf("succeeded for %q, want %q", f.Channel, channel)
	}
	return f
}

func (w *wsClient) expectError(code int) frame {
	w.t.Helper()
	f := w.expect("pusher:error")
	m := f.dataMap(w.t)
	if got, _ := m["code"].(float64); int(got) != code {
		w.t.Fatalf("want error code %d, got %q", code, f.Data)
	}
	if msg, _ := m["message"].(string); msg == "" {
		w.t.Fatalf("error without a message: %q", f.Data)
	}
	return f
}

// signedURL builds a Pusher-signed API URL as the server SDKs do.
func signedURL(base, method, path string, params url.Values, body []byte, secret string) string {
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("auth_key", testKey)
	q.Set("auth_timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	q.Set("auth_version", "1.0")
	if len(body) > 0 {
		sum := md5.Sum(body)
		q.Set("body_md5", hex.EncodeToString(sum[:]))
	}
	q.Set("auth_signature", pusher.RequestSignature(secret, method, path, q))
	return base + path + "?" + q.Encode()
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
	return s.rawAPI(method, signedURL(s.url, method, path, params, b, testSecret), b)
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
	st, body := s.api("POST", "/apps/"+testAppID+"/events", nil, map[string]any{"name": event, "channel": channel, "data": data})
	if st != 200 {
		s.t.Fatalf("trigger: %d %v", st, body)
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
