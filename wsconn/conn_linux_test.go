//go:build linux

package wsconn

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/pusher"
	"golang.org/x/sys/unix"
)

// sockState is what the kernel holds for the server side of a socket.
type sockState struct {
	sndbuf  int    // SO_SNDBUF as the kernel reports it (twice what was set)
	outq    int    // SIOCOUTQ: bytes written and not yet acknowledged by the client
	timeout int    // TCP_USER_TIMEOUT, ms
	fd      int    // descriptor number
	ino     uint64 // the socket's inode, to recognise its descriptor
}

func serverSocket(t *testing.T, c *Conn) sockState {
	t.Helper()
	var s sockState
	var errs []error
	err := c.rc.Control(func(fd uintptr) {
		var err error
		s.fd = int(fd)
		s.sndbuf, err = unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
		errs = append(errs, err)
		s.outq, err = unix.IoctlGetInt(s.fd, unix.SIOCOUTQ)
		errs = append(errs, err)
		s.timeout, err = unix.GetsockoptInt(s.fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		errs = append(errs, err)
		var st unix.Stat_t
		errs = append(errs, unix.Fstat(s.fd, &st))
		s.ino = st.Ino
	})
	if err = errors.Join(append(errs, err)...); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitReleased waits until the server's descriptor no longer names its socket.
func waitReleased(t *testing.T, s sockState) {
	t.Helper()
	want := fmt.Sprintf("socket:[%d]", s.ino)
	waitFor(t, "the socket's descriptor to close", func() bool {
		link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", s.fd))
		return err != nil || link != want
	})
}

// readUntilError drains the client socket and returns how its stream ended.
func readUntilError(t *testing.T, cl *rawClient) error {
	t.Helper()
	buf := make([]byte, 64<<10)
	_ = cl.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := cl.br.Read(buf); err != nil {
			return err
		}
	}
}

// A client that never reads pins at most the capped send buffer in the
// kernel; the server drops it with 4101, resets the connection and frees its
// descriptor.
func TestSlowConsumerKernelBufferCapped(t *testing.T) {
	addr, conns := testServer(t, Options{MaxPendingBytes: 16 << 20})
	// A small client receive buffer: what the test measures is the server's.
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<10) })
		return errors.Join(err, serr)
	}}
	cl := dialRawWith(t, addr, d)
	c := accept(t, conns)
	s := serve(c, true)
	sock := serverSocket(t, c)
	// The kernel reports twice the value set; without the cap it autotunes
	// to megabytes as soon as the connection is up.
	if sock.sndbuf != 2*defaultSendBuffer {
		t.Fatalf("SO_SNDBUF %d, want %d", sock.sndbuf, 2*defaultSendBuffer)
	}
	if sock.timeout != int(defaultWriteTimeout.Milliseconds()) {
		t.Fatalf("TCP_USER_TIMEOUT %d ms", sock.timeout)
	}

	// 2 MiB, far more than the client's 128 KiB receive buffer and the
	// server's send buffer can hold: the writer ends up blocked on a full
	// kernel queue.
	frame := NewPrepared(pusher.EncodeEvent("e", "c", strings.Repeat("x", 16<<10), ""))
	sent := 0
	for ; sent < 128; sent++ {
		if !c.Send(frame) {
			t.Fatal("dropped early")
		}
	}
	waitFor(t, "the kernel send queue to fill", func() bool { return serverSocket(t, c).outq >= defaultSendBuffer/2 })
	maxOutq := 0
	for range 20 {
		maxOutq = max(maxOutq, serverSocket(t, c).outq)
	}
	// The kernel may overshoot its buffer by the one segment being queued
	// (64 KiB on loopback).
	if limit := 2*defaultSendBuffer + 64<<10; maxOutq > limit {
		t.Fatalf("kernel holds %d unacknowledged bytes; want at most %d", maxOutq, limit)
	}
	// Past MaxPendingBytes the socket is dropped as a slow consumer.
	for c.Send(frame) {
		if sent++; sent == 10000 {
			t.Fatalf("not dropped after %d frames", sent)
		}
	}
	t.Logf("kernel queue %d bytes (SO_SNDBUF %d); dropped after %d frames of %d bytes", maxOutq, sock.sndbuf, sent, frame.Size())

	// The client reads at last: what was queued, then the 4101 close.
	code, _, texts := cl.expectClose()
	if code != StatusPolicyViolation || texts == 0 || texts >= sent {
		t.Fatalf("close %d after %d of %d frames", code, texts, sent)
	}
	// It never answers the close: after the grace period the server resets
	// the connection rather than closing it in order.
	s.waitEnded(t)
	waitReleased(t, sock)
	if err := readUntilError(t, cl); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client stream ended with %v, want a reset", err)
	}
}

// A write that times out on a client that never reads ends the socket with a
// reset: the data still queued in the kernel is discarded, not delivered.
func TestWriteTimeoutResetsConnection(t *testing.T) {
	const timeout = 300 * time.Millisecond
	cl, c := rawPair(t, Options{WriteTimeout: timeout, MaxPendingBytes: 64 << 20})
	s := serve(c, true)
	sock := serverSocket(t, c)
	if sock.timeout != int(timeout.Milliseconds()) {
		t.Fatalf("TCP_USER_TIMEOUT %d ms, want %d", sock.timeout, timeout.Milliseconds())
	}
	frame := NewPrepared(pusher.EncodeEvent("e", "c", strings.Repeat("x", 16<<10), ""))
	for i := 0; i < 1000 && c.Send(frame); i++ {
	}
	s.waitEnded(t)
	waitReleased(t, sock)
	if err := readUntilError(t, cl); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client stream ended with %v, want a reset", err)
	}
}

// clientUnread is how many bytes the client's kernel holds unread.
func clientUnread(t *testing.T, cl *rawClient) int {
	t.Helper()
	rc, err := cl.nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatal(ierr)
	}
	return n
}

// A frame sent to a socket with nothing queued is written by Send itself:
// it has reached the client's kernel when Send returns, and no writer runs.
func TestSendWritesAtOnceWhenIdle(t *testing.T) {
	cl, c := rawPair(t, Options{})
	serve(c, true)
	// The first frame carries nothing special here (no hello is held back).
	for i := range 100 {
		f := NewPrepared(fmt.Appendf(nil, `{"event":"e","data":"%d"}`, i))
		if !c.SendNow(f) {
			t.Fatal("send refused")
		}
		if got := clientUnread(t, cl); got < f.Size() {
			t.Fatalf("frame %d: %d bytes at the client when Send returned, want %d", i, got, f.Size())
		}
		c.mu.Lock()
		writing := c.writing
		c.mu.Unlock()
		if writing {
			t.Fatalf("frame %d: a writer was started", i)
		}
		op, p, err := cl.next()
		if err != nil || op != opText || !strings.Contains(string(p), fmt.Sprintf(`"%d"`, i)) {
			t.Fatalf("frame %d: op %d %q %v", i, op, p, err)
		}
	}
}

// When the kernel takes only part of a frame, the writer sends the rest:
// the client gets every frame whole and in order.
func TestPartlyWrittenFramesArriveWhole(t *testing.T) {
	addr, conns := testServer(t, Options{SendBuffer: 4096, MaxPendingBytes: 64 << 20})
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	cl := dialRawWith(t, addr, d)
	c := accept(t, conns)
	m := &partialMeter{}
	c.SetMeter(m)
	serve(c, true)
	// Frames of sizes that do not divide the kernel's buffers, each sent once
	// the writer is idle, to a client that reads slowly: Send often finds
	// room for part of a frame only.
	const frames = 3000
	read := make(chan error, 1)
	go func() {
		for i := range frames {
			time.Sleep(20 * time.Microsecond)
			op, p, err := cl.next()
			if want := testFrame(i); err != nil || op != opText || string(p) != want {
				read <- fmt.Errorf("frame %d: op %d, %d bytes %.40q…, err %v", i, op, len(p), p, err)
				return
			}
		}
		read <- nil
	}()
	for i := range frames {
		waitFor(t, "the writer to stop", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return !c.writing
		})
		if !c.SendNow(NewPrepared([]byte(testFrame(i)))) {
			t.Fatalf("send %d refused", i)
		}
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if m.partial.Load() == 0 {
		t.Fatal("no Send wrote part of a frame: the test did not reach its case")
	}
	t.Logf("%d sends left part of their frame to the writer", m.partial.Load())
}

// partialMeter counts the writes that sent bytes but no whole frame.
type partialMeter struct{ partial atomic.Int64 }

func (m *partialMeter) Received(int) {}
func (m *partialMeter) Sent(frames, bytes int) {
	if frames == 0 && bytes > 0 {
		m.partial.Add(1)
	}
}
func (m *partialMeter) Delivered(time.Duration) {}
func (m *partialMeter) Closed(int)              {}

func testFrame(i int) string {
	return fmt.Sprintf(`{"event":"e","data":"%d:%s"}`, i, strings.Repeat("x", 100+i%997))
}

// A slow consumer's queue is dropped for the close frame, except the rest of
// a frame already partly on the wire: the close frame must follow it.
func TestDropKeepsPartlyWrittenFrame(t *testing.T) {
	addr, conns := testServer(t, Options{})
	dialRaw(t, addr)
	c := accept(t, conns)
	rest := &Prepared{wire: []byte("rest of a frame"), payload: -1}
	c.mu.Lock()
	c.writing = true // hold the writer off: the test inspects the queue
	c.queue = append(c.queue, rest, NewPrepared([]byte("queued")))
	c.pending = rest.Size() + 8
	c.closeLocked(4101, "slow", true)
	q := append([]*Prepared(nil), c.queue...)
	c.writing = false
	c.mu.Unlock()
	if len(q) != 2 || q[0] != rest || q[1].wire[0]&0x0f != opClose {
		t.Fatalf("queue after the drop: %d frames, first is the rest: %v", len(q), len(q) > 0 && q[0] == rest)
	}
}

// With HelloWithFirstFrame, the first frame sent to an idle socket goes out
// with the 101 response in one write by Send itself: both have reached the
// client's kernel when Send returns, and no writer runs.
func TestHelloAndFirstFrameWrittenAtOnce(t *testing.T) {
	addr, conns := testServer(t, Options{HelloWithFirstFrame: true})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	sendHandshake(nc, addr) // no 101 yet: it waits for the first frame
	c := accept(t, conns)
	serve(c, true)
	cl := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	f := NewPrepared([]byte(`{"event":"pusher:connection_established","data":"{}"}`))
	if !c.SendNow(f) {
		t.Fatal("send refused")
	}
	if got := clientUnread(t, cl); got != helloSize+f.Size() {
		t.Fatalf("%d bytes at the client when Send returned, want %d", got, helloSize+f.Size())
	}
	c.mu.Lock()
	writing, hello := c.writing, c.hello
	c.mu.Unlock()
	if writing || hello != nil {
		t.Fatalf("writer started %v, 101 still held %v", writing, hello != nil)
	}
	resp, err := http.ReadResponse(cl.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	if op, p, err := cl.next(); err != nil || op != opText || !strings.Contains(string(p), "connection_established") {
		t.Fatalf("first frame: op %d %q %v", op, p, err)
	}
}

// onLongLived reports whether the running goroutine is the poller or one of
// its readers.
func onLongLived() bool {
	b := make([]byte, 8<<10)
	stack := string(b[:runtime.Stack(b, false)])
	return strings.Contains(stack, "(*poller).reader") || strings.Contains(stack, "(*poller).run")
}

// A readable socket is read by one of the poller's long-lived readers when
// one is idle, else by the poller itself, never by a new goroutine per event
// (it would grow its stack through the parser and the handler each time).
func TestReadsOnLongLivedReaders(t *testing.T) {
	cl, c := rawPair(t, Options{})
	on := make(chan bool, 1)
	c.Serve(func(m []byte) { on <- onLongLived(); c.Done(len(m)) }, func() {}, func() {})
	const messages = 20
	for i := range messages {
		cl.send(clientFrame(true, opText, fmt.Appendf(nil, "m%d", i)))
		select {
		case r := <-on:
			if !r {
				t.Fatalf("message %d read on a goroutine of its own", i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not read", i)
		}
	}
}

// TestEdgeTriggeredReadsLoseNothing: a message that arrives while the
// socket's reader is busy with the one before (its handler is slow), or
// while the reader is paused over a small backlog that the consumer
// acknowledges late, is read all the same, on several sockets at once. An
// edge-triggered socket is reported once: a reader that let go of it just as
// more arrived would leave that message unread until the client sent another,
// so the client here waits for each pair of messages before the next.
func TestEdgeTriggeredReadsLoseNothing(t *testing.T) {
	const sockets, pairs = 4, 300
	addr, conns := testServer(t, Options{MaxInboundBacklog: 256})
	msg := func(k, i int) string { return fmt.Sprintf(`{"event":"client-x","data":"%d-%d"}`, k, i) }
	results := make(chan string, sockets)
	for k := range sockets {
		cl := dialRaw(t, addr)
		c := accept(t, conns)
		got := make(chan string, 2*pairs)
		c.Serve(func(m []byte) {
			time.Sleep(20 * time.Microsecond) // the reader is busy when the next one arrives
			got <- string(m)
			go c.Done(len(m)) // acknowledged late: the reader pauses over 256 bytes
		}, func() {}, nil)
		go func() {
			for i := 0; i < 2*pairs; i += 2 {
				cl.send(clientFrame(true, opText, []byte(msg(k, i))))
				time.Sleep(time.Duration(i%30) * time.Microsecond)
				cl.send(clientFrame(true, opText, []byte(msg(k, i+1))))
				for j := range 2 {
					select {
					case m := <-got:
						if m != msg(k, i+j) {
							results <- fmt.Sprintf("socket %d: message %d is %q", k, i+j, m)
							return
						}
					case <-time.After(5 * time.Second):
						results <- fmt.Sprintf("socket %d: message %d not read within 5 s", k, i+j)
						return
					}
				}
			}
			results <- ""
		}()
	}
	for range sockets {
		if r := <-results; r != "" {
			t.Error(r)
		}
	}
}

// TestDataThenCloseEnds: a client that sends a message and closes at once
// gets both read, the message and then the end of the socket, though the
// two may be reported together (one edge) and the read of the message was
// short, as if nothing were left.
func TestDataThenCloseEnds(t *testing.T) {
	addr, conns := testServer(t, Options{})
	for i := range 50 {
		cl := dialRaw(t, addr)
		c := accept(t, conns)
		s := serve(c, true)
		cl.send(clientFrame(true, opText, []byte(`{"event":"client-x"}`)))
		cl.nc.(*net.TCPConn).CloseWrite()
		s.waitEnded(t)
		if got := s.messages(); len(got) != 1 {
			t.Fatalf("socket %d: %d messages before the end", i, len(got))
		}
	}
}
