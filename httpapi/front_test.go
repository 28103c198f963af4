package httpapi

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testkit"
)

// frontServer is startServer with a count of the connections net/http got
// (every one but those the front answered).
func frontServer(t *testing.T) (*testServer, *atomic.Int64, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	s := startServerWith(t, nil, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
	var toHTTP atomic.Int64
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			toHTTP.Add(1)
		}
	}
	return s, &toHTTP, logs
}

// rawHead sends head on a new connection and returns the connection and a
// reader of what comes back.
func rawHead(t *testing.T, s *testServer, chunks ...string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, ch := range chunks {
		if _, err := io.WriteString(c, ch); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

const frontHead = "GET /app/" + testkit.Key + "?client=java-client&protocol=5&version=2.4.4 HTTP/1.1\r\n" +
	"Connection: Upgrade\r\nHost: 127.0.0.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n"

// expectEstablished reads the 101 and the connection_established frame.
func expectEstablished(t *testing.T, br *bufio.Reader) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("answer %d %v", resp.StatusCode, resp.Header)
	}
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, hdr[1]&0x7f)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	if hdr[0] != 0x81 || !strings.Contains(string(payload), "pusher:connection_established") {
		t.Fatalf("first frame %x %q", hdr, payload)
	}
}

// A plain connect is answered by the front, also when its head comes in
// pieces; net/http never sees it.
func TestFrontAnswersConnects(t *testing.T) {
	s, toHTTP, logs := frontServer(t)
	_, br := rawHead(t, s, frontHead)
	expectEstablished(t, br)
	_, br = rawHead(t, s, frontHead[:3], frontHead[3:40], frontHead[40:len(frontHead)-1], frontHead[len(frontHead)-1:])
	expectEstablished(t, br)
	w := s.dial() // gorilla's own handshake, and the protocol on top of it
	w.Subscribe("news", "", "")
	if n := toHTTP.Load(); n != 0 {
		t.Fatalf("net/http got %d connections", n)
	}
	var lines []map[string]any
	waitFor(t, func() bool { lines = logs.lines(t, "request"); return len(lines) == 3 })
	for _, l := range lines {
		if l["status"] != 101.0 || l["route"] != "/app/:key" || l["app"] != testkit.AppID || l["ip"] != "127.0.0.1" {
			t.Errorf("access line %v", l)
		}
	}
}

// Everything else goes to net/http with the bytes the front read, and is
// answered as before: requests on a kept-alive connection, bodies, refused
// handshakes, heads too long for the front, data sent before the 101.
func TestFrontHandsOverTheRest(t *testing.T) {
	s, toHTTP, _ := frontServer(t)
	want := int64(0)
	handed := func(what string) {
		t.Helper()
		want++
		waitFor(t, func() bool { return toHTTP.Load() == want })
		if n := toHTTP.Load(); n != want {
			t.Fatalf("%s: net/http got %d connections, want %d", what, n, want)
		}
	}

	// Two requests on one connection, the first one split.
	c, br := rawHead(t, s, "GE", "T /up HTTP/1.1\r\nHost: x\r\n\r\n")
	for i := 0; i < 2; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "OK") {
			t.Fatalf("GET /up: %d %q", resp.StatusCode, body)
		}
		if i == 0 {
			_, _ = io.WriteString(c, "GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
		}
	}
	handed("kept-alive GET /up")

	// A signed publish: a POST with a body.
	resp, err := http.Post(s.url+"/apps/"+testkit.AppID+"/events", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned publish: %d", resp.StatusCode)
	}
	handed("POST")

	// A refused handshake gets gorilla's answer.
	_, br = rawHead(t, s, strings.Replace(frontHead, "Version: 13", "Version: 8", 1))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Sec-Websocket-Version") != "13" {
		t.Fatalf("version 8: %d %v", resp.StatusCode, resp.Header)
	}
	handed("version 8")

	// A head longer than the front reads is still a connect, through net/http.
	long := strings.Replace(frontHead, "Upgrade: websocket\r\n", "Upgrade: websocket\r\nX-Pad: "+strings.Repeat("p", headSize)+"\r\n", 1)
	_, br = rawHead(t, s, long)
	expectEstablished(t, br)
	handed("a long head")

	// An escaped key is read by net/http, as before.
	_, br = rawHead(t, s, strings.Replace(frontHead, "/app/"+testkit.Key, "/app/key%2D1", 1))
	expectEstablished(t, br)
	handed("an escaped key")

	// A frame sent before the 101 closes the connection unanswered, as before.
	_, br = rawHead(t, s, frontHead+"\x81\x80abcd")
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("early data: answered with %q", b)
	}
	handed("early data")
}

// A connection that sends no head, or half a head, in time is closed at the
// front's timeout (net/http's ReadHeaderTimeout, here much longer, would
// hold it on).
func TestFrontHeadTimeout(t *testing.T) {
	s := startServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.api_.Handler(), ReadHeaderTimeout: time.Minute}
	go func() { _ = srv.Serve(s.api_.Front(ln, 300*time.Millisecond)) }()
	t.Cleanup(func() { srv.Close() })
	for _, sent := range []string{"", frontHead[:20]} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, sent)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || time.Since(start) > 5*time.Second {
			t.Fatalf("sent %q: %v after %v (read %q)", sent, err, time.Since(start), b)
		}
	}
}

// Closing the front stops net/http's Serve and closes the listener.
func TestFrontClose(t *testing.T) {
	s := startServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := s.api_.Front(ln, time.Second)
	srv := &http.Server{Handler: s.api_.Handler()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(f) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/up")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != http.ErrServerClosed {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the listener still accepts")
	}
}

// A panic during a front connect is recovered: logged, the connection
// closed, a 500 access line, and the server goes on.
func TestFrontPanicRecovered(t *testing.T) {
	s, _, logs := frontServer(t)
	node := s.api_.node
	s.api_.node = nil // Accept on a nil node panics
	_, br := rawHead(t, s, frontHead)
	if _, err := br.ReadByte(); err == nil {
		// The 101 may have gone out with nothing after it; then the
		// connection must end.
		if _, err := io.ReadAll(br); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return len(logs.lines(t, "handler panic")) == 1 })
	waitFor(t, func() bool { return len(logs.lines(t, "request")) > 0 }) // written after the panic line
	l := logs.lines(t, "request")
	if len(l) != 1 || l[0]["status"] != 500.0 || l[0]["route"] != "/app/:key" || l[0]["level"] != "WARN" {
		t.Fatalf("access lines %v", l)
	}
	s.api_.node = node
	_, br = rawHead(t, s, frontHead)
	expectEstablished(t, br)
}

// A connection handed to net/http still gives its descriptor to a socket
// upgraded there (so the socket is read by the poller, with its send
// buffer set), once the bytes the front read have been read again.
func TestReplayConnGivesTheDescriptor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := &replayConn{Conn: server, pending: []byte("GET")}
	var sc syscall.Conn = c
	if _, err := sc.SyscallConn(); err == nil {
		t.Fatal("descriptor given with bytes unread")
	}
	var b [8]byte
	if n, err := c.Read(b[:]); err != nil || string(b[:n]) != "GET" {
		t.Fatalf("read %q, %v", b[:n], err)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(uintptr) {}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetWriteBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
}

// flakyListener fails its first Accepts with a temporary error, as a
// listener out of file descriptors does.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

type temporaryError struct{}

func (temporaryError) Error() string   { return "accept: too many open files" }
func (temporaryError) Timeout() bool   { return false }
func (temporaryError) Temporary() bool { return true }

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, temporaryError{}
	}
	return l.Listener.Accept()
}

// After a temporary accept error the front waits and accepts again, as
// net/http does, instead of stopping the server.
func TestFrontRetriesTemporaryErrors(t *testing.T) {
	s := startServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln}
	fl.fails.Store(3)
	srv := &http.Server{Handler: s.api_.Handler()}
	go func() { _ = srv.Serve(s.api_.Front(fl, time.Second)) }()
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{Timeout: 10 * time.Second} // a stopped front never answers
	resp, err := client.Get("http://" + ln.Addr().String() + "/up")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || fl.fails.Load() >= 0 {
		t.Fatalf("status %d, accepts still to fail %d", resp.StatusCode, fl.fails.Load())
	}
}
