package httpapi

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/parley-chat/parley/httpapi/access"
	"github.com/parley-chat/parley/wsconn"
)

// The front: WebSocket connects answered before net/http.
//
// net/http gives every connection a goroutine with a 4 KB read and a 4 KB
// write buffer, parses the request into a Request with its header map and
// context, and grows the goroutine's stack through its handler chain: about
// 10 KB of garbage and a third of a connect's CPU, for a request that is
// answered once and then leaves HTTP for good. The front reads a new
// connection's first request itself. When it is the plain WebSocket
// handshake every client sends for /app/{key} (wsconn.ParseHandshake says
// which), the front answers it and hands the socket to the node, as
// serveSocket does. Any other connection, and any connect in a form the
// front does not read, goes to net/http with the bytes already read put
// back, so that it is answered exactly as before.

// headSize is the most of a request head the front reads; a longer head
// goes to net/http (which allows up to MaxHeaderBytes).
const headSize = 4 << 10

// socketStart is how every request the front answers begins.
const socketStart = "GET " + wsPrefix

var headBufs = sync.Pool{New: func() any { b := make([]byte, headSize); return &b }}

// Front wraps ln for http.Server.Serve: the server gets every connection but
// the WebSocket connects the front answered itself. headerTimeout bounds how
// long a connection may take to send its first request's head (use the
// server's ReadHeaderTimeout). Not for TLS: net/http must see a *tls.Conn.
func (s *Server) Front(ln net.Listener, headerTimeout time.Duration) net.Listener {
	f := &front{Listener: ln, s: s, timeout: headerTimeout, conns: make(chan net.Conn), done: make(chan struct{}),
		heads: make(chan firstRequest)}
	for range 2 * runtime.GOMAXPROCS(0) {
		go f.reader()
	}
	go f.acceptLoop()
	return f
}

type front struct {
	net.Listener
	s       *Server
	timeout time.Duration
	conns   chan net.Conn     // connections for net/http
	heads   chan firstRequest // unbuffered: a connection whose head is there, for an idle reader
	done    chan struct{}     // closed when the listener is
	once    sync.Once
	err     error // why accepting stopped; set before done is closed
}

// Accept returns the next connection for net/http.
func (f *front) Accept() (net.Conn, error) {
	select {
	case c := <-f.conns:
		return c, nil
	case <-f.done:
		return nil, f.err
	}
}

func (f *front) Close() error {
	err := f.Listener.Close()
	f.stop(net.ErrClosed)
	return err
}

func (f *front) stop(err error) {
	f.once.Do(func() {
		f.err = err
		close(f.done)
	})
}

// acceptLoop accepts connections and starts reading each one's first
// request (accepted). Like net/http, it waits and retries after a temporary
// error (out of file descriptors) instead of stopping.
func (f *front) acceptLoop() {
	var delay time.Duration
	for {
		c, err := f.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // as net/http does
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				f.s.log.Debug("accept error; retrying", slog.Any("error", err), slog.Duration("in", delay))
				select {
				case <-time.After(delay):
					continue
				case <-f.done:
					return
				}
			}
			f.stop(err)
			return
		}
		delay = 0
		f.accepted(c)
	}
}

// A connection's first request, as the front reads it.
type firstRequest struct {
	c     net.Conn
	buf   *[]byte // from headBufs
	n     int     // bytes read into buf
	start time.Time
}

// accepted starts reading c's first request with one read that does not
// wait. In a connect storm the head is usually there already: the connect
// is then answered by an idle long-lived reader, else on the accept loop's
// goroutine, whose stack has grown once (a new goroutine's stack grows
// through the connect — the handshake, the node, the actor's spawn — and is
// copied on the way: 4-5 % of the server's CPU in a connect storm; handing
// connects to idle readers alone left most of them to new goroutines, the
// readers being busy or not yet back). A connection whose head is not all
// there yet waits on a goroutine of its own, so that no connection waits
// for another's head.
func (f *front) accepted(c net.Conn) {
	r := firstRequest{c: c, buf: headBufs.Get().(*[]byte), start: time.Now()}
	var err error
	if rc, ok := c.(syscall.Conn); ok {
		if raw, e := rc.SyscallConn(); e == nil {
			e = raw.Read(func(fd uintptr) bool {
				r.n, err = syscall.Read(int(fd), *r.buf)
				return true // no waiting here
			})
			if e != nil {
				err = e
			}
		}
	}
	if r.n < 0 {
		r.n = 0
	}
	if _, head := judgeHead(*r.buf, r.n); err != nil || !head {
		// The rest of the head is waited for there, and a connection for
		// net/http handed over: the accept loop never waits. A first read
		// that failed is made again there, as net/http would.
		go f.waitFirst(r)
		return
	}
	select {
	case f.heads <- r:
	default:
		f.first(r)
	}
}

// waitFirst waits for the rest of r's head, on a goroutine of its own, and
// hands a connect to an idle reader when one is: the wait takes little
// stack, the answer much.
func (f *front) waitFirst(r firstRequest) {
	n, head, timedOut := f.readHead(r.c, *r.buf, r.n)
	if head && !timedOut {
		r.n = n
		select {
		case f.heads <- r:
			return
		default:
		}
	}
	f.answer(r, n, head, timedOut)
}

// reader answers the first requests handed to it, one at a time, until the
// listener closes.
func (f *front) reader() {
	for {
		select {
		case r := <-f.heads:
			f.first(r)
		case <-f.done:
			return
		}
	}
}

// first reads the rest of r's first request head and answers it.
func (f *front) first(r firstRequest) {
	n, head, timedOut := f.readHead(r.c, *r.buf, r.n)
	f.answer(r, n, head, timedOut)
}

// answer answers r's head, buf[:n], if it is a plain WebSocket connect;
// otherwise the connection goes to net/http.
func (f *front) answer(r firstRequest, n int, head, timedOut bool) {
	c, buf := r.c, *r.buf
	if timedOut || head && f.s.serveFront(c, buf[:n], r.start) {
		if timedOut {
			c.Close() // as net/http closes at its ReadHeaderTimeout: no answer
		}
		headBufs.Put(r.buf)
		return
	}
	var rc net.Conn = c
	if n > 0 {
		rc = &replayConn{Conn: c, pending: bytes.Clone(buf[:n])}
	}
	headBufs.Put(r.buf)
	select {
	case f.conns <- rc:
	case <-f.done:
		c.Close()
	}
}

// judgeHead reports whether buf[:n] is judged: done, with head true, when it
// is a whole head that could be a connect and nothing after it; done with
// head false when a byte rules a connect out or more follows the head.
func judgeHead(buf []byte, n int) (done, head bool) {
	if k := min(n, len(socketStart)); string(buf[:k]) != socketStart[:k] {
		return true, false
	}
	if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
		return true, i+4 == n // more after the head: net/http answers as before
	}
	return false, false
}

// readHead reads, after the n bytes buf holds already, until buf holds a
// whole request head that could be a connect, and nothing after it. It
// stops early, with head false, at the first byte that rules a connect out,
// when buf is full, or at an error (the bytes read are then net/http's to
// answer), except that a head not complete in time is the front's to end,
// as net/http's ReadHeaderTimeout would.
func (f *front) readHead(c net.Conn, buf []byte, n int) (_ int, head, timedOut bool) {
	if done, head := judgeHead(buf, n); done || n == len(buf) {
		return n, head, false
	}
	_ = c.SetReadDeadline(time.Now().Add(f.timeout))
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if done, head := judgeHead(buf, n); done {
			return n, head, false
		}
		if err != nil {
			var ne net.Error
			return n, false, errors.As(err, &ne) && ne.Timeout()
		}
	}
	return n, false, false
}

// serveFront answers a connect whose head the front read, as serveSocket
// would, and reports whether it did; false leaves c, untouched, to net/http.
func (s *Server) serveFront(c net.Conn, head []byte, start time.Time) (served bool) {
	h, ok := wsconn.ParseHandshake(head)
	if !ok {
		return false
	}
	key, ok := pathKey(h.Path)
	if !ok {
		return false
	}
	r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: h.Path, RawQuery: h.RawQuery}, RemoteAddr: c.RemoteAddr().String()}
	if h.ForwardedFor != "" {
		r.Header = http.Header{"X-Forwarded-For": {h.ForwardedFor}}
	}
	line := access.Line{Route: wsRoute, Start: start, Quiet: true, Status: http.StatusSwitchingProtocols}
	defer s.frontDone(c, r, key, &line, &served)
	conn, err := wsconn.Accept(c, h.Key, s.connOpts)
	if err != nil {
		return true // closed; the 101 was the answer, as when Upgrade fails after the hijack
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	s.node.Accept(conn, key, queryValue(h.RawQuery, "protocol"), h.Origin, ip)
	return true
}

// frontDone recovers from a panic of a front connect (closing the
// connection: whether the 101 went out is not known) and writes the access
// line and metrics.
func (s *Server) frontDone(c net.Conn, r *http.Request, key string, line *access.Line, served *bool) {
	*served = true
	if err := recover(); err != nil {
		s.log.Error("handler panic", slog.Any("error", err), slog.String("path", r.URL.Path))
		c.Close()
		line.Status = http.StatusInternalServerError
	}
	s.recordConnect(r, key, *line)
}

// replayConn is a connection whose first bytes were read by the front: it
// reads them again before the rest.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// SyscallConn gives a socket upgraded through net/http the descriptor (its
// reads then bypass Read), once the bytes put back have been read.
func (c *replayConn) SyscallConn() (syscall.RawConn, error) {
	if len(c.pending) > 0 {
		return nil, errors.New("httpapi: bytes put back are unread")
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// SetWriteBuffer sets the socket's kernel send buffer, as on a TCPConn.
func (c *replayConn) SetWriteBuffer(n int) error {
	wb, ok := c.Conn.(interface{ SetWriteBuffer(int) error })
	if !ok {
		return errors.ErrUnsupported
	}
	return wb.SetWriteBuffer(n)
}
