package wsconn

import (
	"bufio"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

func TestHelloIsRFC6455(t *testing.T) {
	// RFC 6455, section 1.3.
	got := string(appendHello(nil, "dGhlIHNhbXBsZSBub25jZQ=="))
	want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	if got != want {
		t.Fatalf("101 response\n got %q\nwant %q", got, want)
	}
	if len(got) != helloSize {
		t.Fatalf("helloSize %d, response is %d bytes", helloSize, len(got))
	}
}

func TestHandshakeChecks(t *testing.T) {
	for _, tc := range []struct {
		values []string
		token  string
		want   bool
	}{
		{[]string{"Upgrade"}, "upgrade", true},
		{[]string{"keep-alive, Upgrade"}, "upgrade", true},
		{[]string{"keep-alive", " upgrade\t"}, "upgrade", true},
		{[]string{" ,Upgrade"}, "upgrade", false}, // gorilla gives up at an empty element
		{[]string{"upgraded"}, "upgrade", false},
		{nil, "upgrade", false},
		{[]string{""}, "upgrade", false},
	} {
		if got := hasToken(tc.values, tc.token); got != tc.want {
			t.Errorf("hasToken(%q, %q) = %v", tc.values, tc.token, got)
		}
	}
	for key, want := range map[string]bool{
		"dGhlIHNhbXBsZSBub25jZQ==":     true,
		"dGhlIHNhbXBsZSBub25jZQ":       false, // no padding
		"dGhlIHNhbXBsZSBub25jZQ=x":     false,
		"":                             false,
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAA": false, // 21 bytes
	} {
		if got := validKey(key); got != want {
			t.Errorf("validKey(%q) = %v", key, got)
		}
	}
}

// gorillaAccepts reports whether gorilla's Upgrader passes the request's
// handshake checks: with a ResponseWriter that cannot be hijacked, passing
// them all ends in its 500 "does not implement http.Hijacker".
func gorillaAccepts(r *http.Request) bool {
	rec := httptest.NewRecorder()
	u := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	_, _ = u.Upgrade(rec, r, nil)
	return rec.Code == http.StatusInternalServerError
}

// FuzzHandshake: the hand-checked fast path never accepts a handshake that
// gorilla (which answers everything else) would refuse.
func FuzzHandshake(f *testing.F) {
	f.Add("GET", "Upgrade", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ==")
	f.Add("GET", "keep-alive, Upgrade", "WebSocket", "13", "AAAAAAAAAAAAAAAAAAAAAA==")
	f.Add("POST", "Upgrade", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ==")
	f.Add("GET", "Upgrade", "websocket", "8", "dGhlIHNhbXBsZSBub25jZQ==")
	f.Add("GET", "Upgrade", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ")
	f.Fuzz(func(t *testing.T, method, connection, upgrade, version, key string) {
		r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/app/k", nil)
		if err != nil {
			t.Skip()
		}
		r.Method = method
		r.Header.Set("Connection", connection)
		r.Header.Set("Upgrade", upgrade)
		r.Header.Set("Sec-Websocket-Version", version)
		r.Header.Set("Sec-Websocket-Key", key)
		ours := method == http.MethodGet && hasToken(r.Header["Connection"], "upgrade") &&
			hasToken(r.Header["Upgrade"], "websocket") && hasToken(r.Header["Sec-Websocket-Version"], "13") &&
			validKey(r.Header.Get("Sec-Websocket-Key"))
		if ours && !gorillaAccepts(r) {
			t.Fatalf("fast path accepts a handshake gorilla refuses: %s Connection=%q Upgrade=%q Version=%q Key=%q",
				method, connection, upgrade, version, key)
		}
	})
}

// Handshake heads as real clients send them.
var clientHeads = map[string]string{
	"pusher-js (Node, ws)": "GET /app/key-1?protocol=7&client=js&version=8.4.0&flash=false HTTP/1.1\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: Upgrade\r\n" +
		"Upgrade: websocket\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nHost: 127.0.0.1:6001\r\n\r\n",
	"Chromium": "GET /app/key-1?protocol=7&client=js&version=8.4.0&flash=false HTTP/1.1\r\nHost: localhost:8080\r\n" +
		"Connection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n" +
		"Upgrade: websocket\r\nOrigin: http://localhost:8080\r\nSec-WebSocket-Version: 13\r\n" +
		"Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n" +
		"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
	"Pusher Java/Android (Java-WebSocket)": "GET /app/key-1?client=java-client&protocol=5&version=2.4.4 HTTP/1.1\r\n" +
		"Connection: Upgrade\r\nHost: 127.0.0.1:6001\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n",
	"gorilla/websocket behind a proxy": "GET /app/key-1?protocol=7 HTTP/1.1\r\nHost: [::1]:6001\r\nUser-Agent: Go-http-client/1.1\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Upgrade: websocket\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n",
}

func TestParseHandshakeReadsClients(t *testing.T) {
	for name, head := range clientHeads {
		h, ok := ParseHandshake([]byte(head))
		if !ok {
			t.Errorf("%s: not read", name)
			continue
		}
		if h.Path != "/app/key-1" || !strings.Contains(head, "?"+h.RawQuery+" HTTP/1.1") || !validKey(h.Key) {
			t.Errorf("%s: read %+v", name, h)
		}
	}
	h, _ := ParseHandshake([]byte(clientHeads["Chromium"]))
	if h.Origin != "http://localhost:8080" || h.Key != "AAAAAAAAAAAAAAAAAAAAAA==" {
		t.Errorf("Chromium: %+v", h)
	}
	h, _ = ParseHandshake([]byte(clientHeads["gorilla/websocket behind a proxy"]))
	if h.ForwardedFor != "203.0.113.7" || h.Origin != "" {
		t.Errorf("proxied: %+v", h)
	}
}

// What ParseHandshake leaves to net/http: anything but the plain form.
func TestParseHandshakeLeavesTheRest(t *testing.T) {
	plain := clientHeads["Pusher Java/Android (Java-WebSocket)"]
	for name, head := range map[string]string{
		"POST":                 strings.Replace(plain, "GET", "POST", 1),
		"HTTP/1.0":             strings.Replace(plain, "HTTP/1.1", "HTTP/1.0", 1),
		"escaped path":         strings.Replace(plain, "/app/key-1", "/app/key%2D1", 1),
		"absolute target":      strings.Replace(plain, "GET /app", "GET http://h/app", 1),
		"space in target":      strings.Replace(plain, "protocol=5", "protocol= 5", 1),
		"fragment":             strings.Replace(plain, "protocol=5", "protocol=5#x", 1),
		"no Host":              strings.Replace(plain, "Host: 127.0.0.1:6001\r\n", "", 1),
		"two Hosts":            strings.Replace(plain, "Host: 127.0.0.1:6001\r\n", "Host: a\r\nHost: b\r\n", 1),
		"odd Host":             strings.Replace(plain, "Host: 127.0.0.1:6001", "Host: a b", 1),
		"bare LF":              strings.ReplaceAll(plain, "\r\n", "\n"),
		"folded line":          strings.Replace(plain, "Upgrade: websocket\r\n", "Upgrade:\r\n websocket\r\n", 1),
		"space before colon":   strings.Replace(plain, "Upgrade: websocket", "Upgrade : websocket", 1),
		"control in value":     strings.Replace(plain, "Upgrade: websocket", "Upgrade: websocket\x01", 1),
		"body":                 strings.Replace(plain, "Upgrade: websocket\r\n", "Upgrade: websocket\r\nContent-Length: 0\r\n", 1),
		"chunked":              strings.Replace(plain, "Upgrade: websocket\r\n", "Upgrade: websocket\r\nTransfer-Encoding: chunked\r\n", 1),
		"no upgrade":           strings.Replace(plain, "Connection: Upgrade", "Connection: keep-alive", 1),
		"not websocket":        strings.Replace(plain, "Upgrade: websocket", "Upgrade: h2c", 1),
		"version 8":            strings.Replace(plain, "Version: 13", "Version: 8", 1),
		"short key":            strings.Replace(plain, "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ", 1),
		"data after head":      plain + "\x81",
		"unfinished head":      strings.TrimSuffix(plain, "\r\n"),
		"leading blank line":   "\r\n" + plain,
		"no colon":             strings.Replace(plain, "Upgrade: websocket\r\n", "Upgrade: websocket\r\nX\r\n", 1),
		"empty name":           strings.Replace(plain, "Upgrade: websocket\r\n", "Upgrade: websocket\r\n: x\r\n", 1),
		"empty Host":           strings.Replace(plain, "Host: 127.0.0.1:6001", "Host: ", 1),
		"Expect: 100-continue": strings.Replace(plain, "Upgrade: websocket\r\n", "Upgrade: websocket\r\nExpect: 100-continue\r\n", 1),
	} {
		if h, ok := ParseHandshake([]byte(head)); ok {
			t.Errorf("%s: read as a plain handshake: %+v", name, h)
		}
	}
}

// netHTTP serves request heads to a real http.Server, one connection each,
// and reports what its handler saw.
type netHTTP struct {
	conns chan net.Conn
	seen  chan *seenRequest
}

type seenRequest struct {
	method, path, rawQuery, key, origin, xff string
	ours, gorilla                            bool // the handshake checks Upgrade makes, and gorilla's
}

func startNetHTTP(tb testing.TB) *netHTTP {
	n := &netHTTP{conns: make(chan net.Conn), seen: make(chan *seenRequest, 1)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.seen <- &seenRequest{
			method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery,
			key: r.Header.Get("Sec-Websocket-Key"), origin: r.Header.Get("Origin"), xff: r.Header.Get("X-Forwarded-For"),
			ours: r.Method == http.MethodGet && hasToken(r.Header["Connection"], "upgrade") &&
				hasToken(r.Header["Upgrade"], "websocket") && hasToken(r.Header["Sec-Websocket-Version"], "13") &&
				validKey(r.Header.Get("Sec-Websocket-Key")),
			gorilla: gorillaAccepts(r),
		}
		w.WriteHeader(http.StatusNoContent)
	}), MaxHeaderBytes: 64 << 10, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(&chanListener{conns: n.conns, done: make(chan struct{})}) }()
	tb.Cleanup(func() { srv.Close() })
	return n
}

// read sends head on a new connection; nil: net/http answered it itself.
func (n *netHTTP) read(tb testing.TB, head string) *seenRequest {
	client, server := net.Pipe()
	defer client.Close()
	n.conns <- server
	go func() { _, _ = io.WriteString(client, head) }()
	resp, err := http.ReadResponse(bufio.NewReader(client), nil)
	if err != nil {
		tb.Fatalf("no answer from net/http: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return nil
	}
	return <-n.seen
}

type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

// FuzzParseHandshake: whatever ParseHandshake reads, net/http's server reads
// the same way (method, path, query, key, origin, forwarded-for), and both
// the hand check and gorilla accept its handshake.
func FuzzParseHandshake(f *testing.F) {
	for _, head := range clientHeads {
		f.Add(head)
	}
	f.Add("GET /app/k?a=%41&b=+;c HTTP/1.1\r\nHost: h\r\nConnection: a, upgrade\r\nConnection: b\r\nUpgrade: WebSocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: x\r\nOrigin: \t o \t\r\n\r\n")
	n := startNetHTTP(f)
	f.Fuzz(func(t *testing.T, head string) {
		h, ok := ParseHandshake([]byte(head))
		if !ok {
			return
		}
		got := n.read(t, head)
		if got == nil {
			t.Fatalf("read %q, which net/http refuses", head)
		}
		want := seenRequest{method: "GET", path: h.Path, rawQuery: h.RawQuery, key: h.Key, origin: h.Origin, xff: h.ForwardedFor, ours: true, gorilla: true}
		if *got != want {
			t.Fatalf("%q:\nnet/http read %+v\n      we read %+v", head, *got, want)
		}
	})
}
