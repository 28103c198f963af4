package wsconn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/parley-chat/parley/pusher"
)

// testServer upgrades every request on a real 127.0.0.1 socket and hands the
// server side of each socket to the test.
func testServer(t *testing.T, opts Options) (addr string, conns <-chan *Conn) {
	t.Helper()
	ch := make(chan *Conn, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, opts)
		if err != nil {
			t.Error(err)
			return
		}
		ch <- c
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), ch
}

func accept(t *testing.T, conns <-chan *Conn) *Conn {
	t.Helper()
	select {
	case c := <-conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no socket accepted")
		return nil
	}
}

// sink collects what a served socket delivers.
type sink struct {
	mu    sync.Mutex
	msgs  []string // guarded by mu
	auto  bool     // guarded by mu; acknowledge each message at once
	conn  *Conn
	ended chan struct{}
}

func serve(c *Conn, autoDone bool) *sink {
	s := &sink{conn: c, auto: autoDone, ended: make(chan struct{})}
	c.Serve(func(m []byte) {
		s.mu.Lock()
		s.msgs = append(s.msgs, string(m))
		auto := s.auto
		s.mu.Unlock()
		if auto {
			c.Done(len(m))
		}
	}, func() {}, func() { close(s.ended) })
	return s
}

func (s *sink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

func (s *sink) waitEnded(t *testing.T) {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("socket not ended")
	}
}

// waitFor polls cond for at most 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// rawClient is a WebSocket client on a plain TCP socket, so tests can send
// exactly the frames they mean (invalid UTF-8, binary, unfinished fragments)
// and choose when to read.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// rawPair opens a server Conn with opts and a raw client connected to it.
func rawPair(t *testing.T, opts Options) (*rawClient, *Conn) {
	t.Helper()
	addr, conns := testServer(t, opts)
	cl := dialRaw(t, addr)
	return cl, accept(t, conns)
}

func dialRaw(t *testing.T, addr string) *rawClient { return dialRawWith(t, addr, &net.Dialer{}) }

// sendHandshake writes a client's handshake request on nc.
func sendHandshake(nc net.Conn, addr string) {
	fmt.Fprintf(nc, "GET /app/key?protocol=7 HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
}

// dialRawWith connects with d and completes the handshake.
func dialRawWith(t *testing.T, addr string, d *net.Dialer) *rawClient {
	t.Helper()
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	sendHandshake(nc, addr)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return &rawClient{t: t, nc: nc, br: br}
}

func (c *rawClient) send(frames ...[]byte) {
	c.t.Helper()
	for _, f := range frames {
		if _, err := c.nc.Write(f); err != nil {
			c.t.Fatal(err)
		}
	}
}

// next reads one server frame, waiting at most 5 s.
func (c *rawClient) next() (op byte, payload []byte, err error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

// expectClose reads frames until the server's close frame and returns its
// status and reason; text frames before it are counted.
func (c *rawClient) expectClose() (code int, reason string, texts int) {
	c.t.Helper()
	for {
		op, p, err := c.next()
		if err != nil {
			c.t.Fatalf("no close frame: %v", err)
		}
		switch op {
		case opText:
			texts++
		case opClose:
			if len(p) < 2 {
				c.t.Fatalf("close frame without status: %x", p)
			}
			return int(binary.BigEndian.Uint16(p)), string(p[2:]), texts
		}
	}
}

func TestInvalidUTF8Closes1007(t *testing.T) {
	cases := map[string][][]byte{
		"one frame": {clientFrame(true, opText, []byte("{\"event\":\"caf\xc3\"}"))},
		"fragmented": {
			clientFrame(false, opText, []byte("{\"event\":\"caf\xc3")),
			clientFrame(true, opPing, nil), // control frames may come between fragments
			clientFrame(true, 0, []byte(`"}`)),
		},
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			cl, c := rawPair(t, Options{})
			s := serve(c, true)
			cl.send(clientFrame(true, opText, []byte(`{"event":"ok","data":"é"}`)))
			cl.send(bad...)
			code, reason, _ := cl.expectClose()
			if code != StatusInvalidPayload || !utf8.ValidString(reason) {
				t.Fatalf("close %d %q, want %d", code, reason, StatusInvalidPayload)
			}
			s.waitEnded(t)
			if got := s.messages(); len(got) != 1 || got[0] != `{"event":"ok","data":"é"}` {
				t.Fatalf("delivered %q", got)
			}
		})
	}
}

func TestBinaryCloses1003(t *testing.T) {
	cl, c := rawPair(t, Options{})
	s := serve(c, true)
	cl.send(clientFrame(true, opBinary, []byte(`{"event":"pusher:ping","data":{}}`)))
	code, reason, _ := cl.expectClose()
	if code != StatusUnsupportedData || !strings.Contains(reason, "binary") {
		t.Fatalf("close %d %q, want %d about binary", code, reason, StatusUnsupportedData)
	}
	s.waitEnded(t)
	if got := s.messages(); len(got) != 0 {
		t.Fatalf("delivered %q", got)
	}
}

// The reason a peer sees is valid UTF-8 even when the server's reason is
// longer than a close frame holds.
func TestCloseReasonOnTheWire(t *testing.T) {
	cl, c := rawPair(t, Options{})
	s := serve(c, true)
	c.CloseAfter(NewPrepared(pusher.EncodeEvent("pusher:error", "", "{}", "")), 4009, "Origin not allowed: "+strings.Repeat("ö", 80))
	code, reason, texts := cl.expectClose()
	if code != 4009 || texts != 1 || !utf8.ValidString(reason) || len(reason) > maxCloseReason || len(reason) < maxCloseReason-1 {
		t.Fatalf("close %d, %d bytes valid=%v after %d frames", code, len(reason), utf8.ValidString(reason), texts)
	}
	cl.send(clientFrame(true, opClose, []byte{0x03, 0xe8}))
	s.waitEnded(t)
}

func TestFragmentTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	start := clientFrame(false, opText, []byte(`{"event":"client-x","data":"`+strings.Repeat("x", 1000)))

	t.Run("client silent", func(t *testing.T) {
		cl, c := rawPair(t, Options{FragmentTimeout: timeout})
		s := serve(c, true)
		cl.send(start)
		code, _, _ := cl.expectClose()
		if code != StatusPolicyViolation {
			t.Fatalf("close %d, want %d", code, StatusPolicyViolation)
		}
		s.waitEnded(t)
		assertFragmentFreed(t, c)
	})

	t.Run("client pings", func(t *testing.T) {
		cl, c := rawPair(t, Options{FragmentTimeout: timeout})
		s := serve(c, true)
		cl.send(start)
		pongs, closed := 0, false
		for i := 0; !closed; i++ {
			if i == 500 {
				t.Fatal("socket still open after 500 pings")
			}
			if _, err := cl.nc.Write(clientFrame(true, opPing, []byte("k"))); err != nil {
				break // reset after the close: the close frame is already here
			}
			op, p, err := cl.next()
			switch {
			case err != nil:
				t.Fatal(err)
			case op == opPong:
				pongs++
				time.Sleep(10 * time.Millisecond) // pace the keep-alive pings
			case op != opClose || int(binary.BigEndian.Uint16(p)) != StatusPolicyViolation:
				t.Fatalf("frame op %d %q, want close %d", op, p, StatusPolicyViolation)
			default:
				closed = true
			}
		}
		if !closed {
			if code, _, _ := cl.expectClose(); code != StatusPolicyViolation {
				t.Fatalf("close %d, want %d", code, StatusPolicyViolation)
			}
		}
		if pongs == 0 {
			t.Fatal("no ping was answered before the close")
		}
		s.waitEnded(t)
		assertFragmentFreed(t, c)
	})

	t.Run("finished in time", func(t *testing.T) {
		cl, c := rawPair(t, Options{FragmentTimeout: time.Minute})
		s := serve(c, true)
		cl.send(start, clientFrame(true, 0, []byte(`"}`)))
		waitFor(t, "the fragmented message", func() bool { return len(s.messages()) == 1 })
		c.rmu.Lock()
		armed := !c.frag.deadline.IsZero() || c.frag.timer.Stop()
		c.rmu.Unlock()
		if armed {
			t.Fatal("deadline still armed after the message was complete")
		}
		// The socket still answers: the marker (a pong) is the next frame.
		cl.send(clientFrame(true, opPing, []byte("marker")))
		if op, p, err := cl.next(); err != nil || op != opPong || string(p) != "marker" {
			t.Fatalf("op %d %q %v, want the pong", op, p, err)
		}
	})
}

func assertFragmentFreed(t *testing.T, c *Conn) {
	t.Helper()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.fr.frag != nil || c.fr.inFrag || c.fr.pend != nil {
		t.Fatalf("partial message kept: %d bytes", len(c.fr.frag))
	}
}

// A consumer that does not acknowledge its messages stops receiving at about
// MaxInboundBacklog; once it catches up the rest arrive in order.
func TestInboundBacklog(t *testing.T) {
	for _, mode := range []string{"poller", "blocking reader"} {
		t.Run(mode, func(t *testing.T) {
			const limit, count, size = 8 << 10, 40, 1000
			cl, c := rawPair(t, Options{MaxInboundBacklog: limit})
			if mode == "blocking reader" {
				c.rc = nil // as on a platform without epoll
			}
			s := serve(c, false)
			msg := func(i int) string {
				head := fmt.Sprintf(`{"event":"client-x","data":"%03d`, i)
				return head + strings.Repeat("x", size-len(head)-2) + `"}`
			}
			var batch []byte
			for i := range count {
				batch = append(batch, clientFrame(true, opText, []byte(msg(i)))...)
			}
			cl.send(batch)
			paused := func() bool { return c.rd.Load()&rdPaused != 0 }
			waitFor(t, "the reader to pause", paused)
			held := len(s.messages())
			// At most one read's worth (16 KiB) beyond the limit is parsed before
			// the reader looks at the backlog.
			if held == count || held*size > limit+16<<10+size {
				t.Fatalf("%d of %d messages delivered while over a %d-byte backlog", held, count, limit)
			}
			cl.send(clientFrame(true, opText, []byte(`{"event":"marker"}`)))
			if got := len(s.messages()); got != held || !paused() {
				t.Fatalf("delivered %d while paused, was %d", got, held)
			}

			s.mu.Lock()
			s.auto = true
			backlog := 0
			for _, m := range s.msgs {
				backlog += len(m)
			}
			s.mu.Unlock()
			c.Done(backlog)
			waitFor(t, "every message", func() bool { return len(s.messages()) == count+1 })
			got := s.messages()
			for i := range count {
				if got[i] != msg(i) {
					t.Fatalf("message %d is %.40q", i, got[i])
				}
			}
			if got[count] != `{"event":"marker"}` {
				t.Fatalf("last message %q", got[count])
			}
			if n := c.backlog.Load(); n != 0 {
				t.Fatalf("backlog %d after every message was acknowledged", n)
			}
		})
	}
}

// TestIdleSocketHoldsNoWriterBuffers: once the writer has written
// everything, the socket keeps no queue, spare queue or writev vector (they
// go back to a pool), and the next frame takes them again.
func TestIdleSocketHoldsNoWriterBuffers(t *testing.T) {
	cl, c := rawPair(t, Options{})
	serve(c, true)
	idle := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return !c.writing && c.queue == nil && c.spare == nil && c.bufs == nil
	}
	for i := range 2 {
		if !c.Send(NewPrepared(pusher.EncodeEvent("e", "c", "{}", ""))) {
			t.Fatal("send refused")
		}
		if _, _, err := cl.next(); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		waitFor(t, "the writer to finish and give its buffers back", idle)
	}
}

// TestConnFitsItsSizeClass guards the memory of an idle socket: a Conn is
// allocated in the 288-byte size class; settings shared by every socket
// live in one settings value, state that only some sockets need behind
// pointers, and the flags are packed.
func TestConnFitsItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(Conn{}); size > 288 {
		t.Fatalf("Conn is %d bytes, want at most 288", size)
	}
	a, b := settingsFor(Options{}), settingsFor(Options{})
	if a != b {
		t.Fatal("sockets opened with the same Options do not share their settings")
	}
}
