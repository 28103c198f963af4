package wsconn

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley-chat/parley/internal/defaults"
)

// Options tune one socket.
type Options struct {
	// ReadLimit is the largest inbound message in bytes; a bigger one closes
	// the socket with 1009. Zero means 64 KiB.
	ReadLimit int64
	// MaxPendingBytes bounds the outbound queue; past it the socket is closed
	// with OverflowStatus. Zero means 4 MiB.
	MaxPendingBytes int
	// OverflowStatus and OverflowReason close a socket whose outbound queue
	// overflowed (a slow consumer). Zero means 1008 (policy violation) and
	// "Too many unsent messages".
	OverflowStatus int
	OverflowReason string
	// WriteTimeout bounds one write to the network; on Linux it is also the
	// socket's TCP_USER_TIMEOUT, so the kernel drops a peer that leaves sent
	// data unacknowledged (or its window shut) that long. Zero means 10s.
	WriteTimeout time.Duration
	// FragmentTimeout bounds how long a fragmented message may stay
	// unfinished (control frames in between do not extend it); past it the
	// socket is closed with 1008 and the partial message freed. Zero means 10s.
	FragmentTimeout time.Duration
	// SendBuffer is the socket's kernel send buffer (SO_SNDBUF) in bytes. The
	// kernel doubles the value for its bookkeeping, so a client that stops
	// reading pins at most about 2×SendBuffer of kernel memory, on top of
	// MaxPendingBytes in the process. Zero means 128 KiB; negative leaves
	// the kernel's autotuning (up to net.ipv4.tcp_wmem's maximum, 4 MiB by
	// default).
	SendBuffer int
	// MaxInboundBacklog bounds the bytes of messages handed to onMessage that
	// the consumer has not acknowledged with Done; past it the socket is not
	// read until Done brings the backlog down to half. Zero means 1 MiB.
	MaxInboundBacklog int
	// Debug, when set, logs every frame in and out.
	Debug *slog.Logger
	// HelloWithFirstFrame holds the 101 response back until the first frame
	// is queued and writes both in one system call. Set it only when a frame
	// is queued at once after Upgrade (the Pusher protocol's
	// connection_established or an error): the client waits for the 101.
	HelloWithFirstFrame bool
}

// closeGrace is how long we wait for the client's close reply after ours.
const closeGrace = 2 * time.Second

// gorilla only performs the handshake: Parley reads frames with its own
// parser, driven by readiness (see poll_linux.go), and writes with its own
// writer, so no goroutine or buffer is held per idle socket.
var upgrader = websocket.Upgrader{
	WriteBufferPool: &sync.Pool{},
	// Origins are checked per app after the upgrade, so that a refused client
	// gets a pusher:error it can show instead of a bare HTTP 403.
	CheckOrigin: func(*http.Request) bool { return true },
}

// connection states, guarded by Conn.mu.
const (
	stateOpen    = iota
	stateClosing // a close frame is queued; nothing more is accepted
	stateClosed  // the socket is gone
)

// Conn is one client socket. Any goroutine may Send. Outbound frames wait in
// a bounded queue drained by a writer goroutine that exists only while there
// is something to write, and that coalesces everything queued into one writev.
type Conn struct {
	nc    net.Conn        // set at construction
	rc    syscall.RawConn // set at construction; nil if the conn has no fd
	cfg   *settings       // set at construction; shared
	meter Meter           // set once by SetMeter before Serve; nil = not counted
	h     Handler         // set by Serve, called by the reader

	pollID uint64 // set by the poller

	// The reader (one at a time) holds rmu while parsing, so the fragment
	// timer can discard an unfinished message without racing it.
	rmu  sync.Mutex
	fr   frameReader // guarded by rmu
	frag *fragment   // guarded by rmu; made at the first fragmented message

	// Inbound backpressure: bytes handed to the Handler and not yet Done.
	// The reader sets rdPaused when it stops over the limit; whichever of
	// the reader and Done clears it resumes reading.
	backlog atomic.Int64

	mu      sync.Mutex
	queue   []*Prepared // guarded by mu
	pending int         // bytes in queue; guarded by mu

	// hello is the 101 response, written with the first frames; guarded by mu.
	hello *[helloSize]byte

	// Owned by the one running writeLoop; handed over under mu when it exits.
	spare []*Prepared
	bufs  net.Buffers

	// debugID names the socket in debug logs (SetID); nil unless debugging.
	debugID *string

	closeCode   int32         // the close status that ends the socket (first sent or received); guarded by mu
	rd          atomic.Uint32 // rdReading, rdAgain, rdPaused
	state       uint8         // guarded by mu
	blocking    bool          // set by Serve: read by readBlocking, not the poller
	readStopped bool          // guarded by rmu; nothing more is parsed
	writing     bool          // a writeLoop goroutine runs; guarded by mu
	endAfterOut bool          // end the socket once the queue is written; guarded by mu
	peerClosed  bool          // the client sent a close frame; guarded by mu
	abort       bool          // we dropped the client: reset rather than close; guarded by mu
	ended       bool          // guarded by mu
}

// fragment is the deadline of an unfinished fragmented message.
type fragment struct {
	deadline time.Time   // zero unless a fragmented message is open
	timer    *time.Timer // fires fragmentExpired
}

// Handler receives what a socket delivers (see Serve). Its methods run on
// the reader's goroutine and must not block.
type Handler interface {
	// Message is each complete message; the Handler owns the slice.
	Message(p []byte)
	// Activity is each WebSocket ping or pong.
	Activity()
	// End is called once, when the socket is gone.
	End()
}

// settings are Options with their defaults filled in, shared by the sockets
// opened with the same Options.
type settings struct {
	debug        *slog.Logger // nil when not debugging
	maxPending   int
	overflow     int    // the close status of a slow consumer
	overflowWhy  string // and its reason
	writeTimeout time.Duration
	fragTimeout  time.Duration
	maxBacklog   int64
	readLimit    int64
	sendBuffer   int
}

var (
	settingsMu    sync.Mutex
	settingsCache = map[Options]*settings{}
)

// settingsFor returns the settings of opts, made once per distinct Options
// (a server has one or two; past 64, e.g. in tests, they are not kept).
func settingsFor(opts Options) *settings {
	settingsMu.Lock()
	defer settingsMu.Unlock()
	if st, ok := settingsCache[opts]; ok {
		return st
	}
	st := &settings{
		debug: opts.Debug, maxPending: opts.MaxPendingBytes, writeTimeout: opts.WriteTimeout,
		fragTimeout: opts.FragmentTimeout, maxBacklog: int64(opts.MaxInboundBacklog), readLimit: opts.ReadLimit,
		sendBuffer: opts.SendBuffer, overflow: opts.OverflowStatus, overflowWhy: opts.OverflowReason,
	}
	if st.overflow == 0 {
		st.overflow, st.overflowWhy = StatusPolicyViolation, "Too many unsent messages"
	}
	defaults.Set(&st.readLimit, defaultReadLimit)
	defaults.Set(&st.maxPending, defaultMaxPending)
	defaults.Set(&st.writeTimeout, defaultWriteTimeout)
	defaults.Set(&st.fragTimeout, defaultFragmentTimeout)
	if st.sendBuffer == 0 {
		st.sendBuffer = defaultSendBuffer
	}
	defaults.Set(&st.maxBacklog, defaultMaxBacklog)
	if len(settingsCache) < 64 {
		settingsCache[opts] = st
	}
	return st
}

// Upgrade turns an HTTP request into a socket. The handshake is checked by
// hand; with Options.HelloWithFirstFrame the 101 response goes out with the
// socket's first frame, in one write. A request that is not a plain, valid WebSocket handshake is left to
// gorilla, which answers it with the precise HTTP error. On failure the
// HTTP request has been answered.
func Upgrade(w http.ResponseWriter, r *http.Request, opts Options) (*Conn, error) {
	key := r.Header.Get("Sec-Websocket-Key")
	if r.Method != http.MethodGet || !hasToken(r.Header["Connection"], "upgrade") ||
		!hasToken(r.Header["Upgrade"], "websocket") || !hasToken(r.Header["Sec-Websocket-Version"], "13") ||
		!validKey(key) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return nil, err
		}
		return newConn(ws.NetConn(), opts), nil
	}
	h, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return nil, errors.New("wsconn: response does not implement http.Hijacker")
	}
	nc, brw, err := h.Hijack()
	if err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return nil, err
	}
	if brw.Reader.Buffered() > 0 {
		nc.Close()
		return nil, errors.New("wsconn: client sent data before the handshake was complete")
	}
	return Accept(nc, key, opts)
}

// Accept makes the socket of nc, whose handshake request the caller read
// and checked (ParseHandshake) and of which nothing more was read: it
// answers the handshake for key, with Options.HelloWithFirstFrame in the
// same write as the socket's first frame. On failure nc is closed.
func Accept(nc net.Conn, key string, opts Options) (*Conn, error) {
	_ = nc.SetDeadline(time.Time{}) // clear what the HTTP server set
	hello := new([helloSize]byte)
	appendHello(hello[:0], key)
	if !opts.HelloWithFirstFrame {
		_ = nc.SetWriteDeadline(time.Now().Add(defaultWriteTimeout))
		if _, err := nc.Write(hello[:]); err != nil {
			nc.Close()
			return nil, err
		}
		_ = nc.SetWriteDeadline(time.Time{})
		hello = nil
	}
	c := newConn(nc, opts)
	c.hello = hello
	return c, nil
}

// Defaults of Options.
const (
	defaultReadLimit       = 64 << 10
	defaultMaxPending      = 4 << 20
	defaultWriteTimeout    = 10 * time.Second
	defaultFragmentTimeout = 10 * time.Second
	defaultSendBuffer      = 128 << 10
	defaultMaxBacklog      = 1 << 20
)

func newConn(nc net.Conn, opts Options) *Conn {
	st := settingsFor(opts)
	c := &Conn{nc: nc, cfg: st}
	c.fr.limit = st.readLimit
	if sc, ok := nc.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	if st.sendBuffer > 0 {
		// Fixing SO_SNDBUF also turns off the kernel's autotuning for it.
		if wb, ok := nc.(interface{ SetWriteBuffer(int) error }); ok {
			_ = wb.SetWriteBuffer(st.sendBuffer)
		}
	}
	if c.rc != nil {
		setUserTimeout(c.rc, st.writeTimeout)
	}
	return c
}

// SetID names the socket in debug logs (kept only when debugging).
func (c *Conn) SetID(id string) {
	if c.cfg.debug != nil {
		c.debugID = &id
	}
}

// sid is the socket's id for debug logs.
func (c *Conn) sid() string {
	if c.debugID == nil {
		return ""
	}
	return *c.debugID
}

// Serve starts reading: onMessage gets each complete message, onActivity each
// WebSocket ping or pong, and onEnd is called once when the socket is gone.
// Callbacks must not block. Serve returns at once.
//
// The consumer must call Done(len(message)) once it has handled each message
// given to onMessage: past MaxInboundBacklog unacknowledged bytes the socket
// is no longer read.
func (c *Conn) Serve(onMessage func([]byte), onActivity func(), onEnd func()) {
	c.ServeHandler(funcHandler{onMessage, onActivity, onEnd})
}

// ServeHandler is Serve with the callbacks as the methods of h: one value
// for the socket's lifetime instead of three closures.
func (c *Conn) ServeHandler(h Handler) {
	c.h = h
	if c.rc != nil && pollerAdd(c) == nil {
		return
	}
	c.blocking = true
	go c.readBlocking()
}

// funcHandler is Serve's callbacks as a Handler; onEnd may be nil.
type funcHandler struct {
	onMessage  func([]byte)
	onActivity func()
	onEnd      func()
}

func (f funcHandler) Message(p []byte) { f.onMessage(p) }
func (f funcHandler) Activity()        { f.onActivity() }
func (f funcHandler) End() {
	if f.onEnd != nil {
		f.onEnd()
	}
}

// Done acknowledges n bytes of messages handed to onMessage (call it with
// len(message) after handling each one). Any goroutine may call it. When it
// brings the backlog to half of MaxInboundBacklog, a paused socket is read
// again.
func (c *Conn) Done(n int) {
	if c.backlog.Add(-int64(n)) <= c.cfg.maxBacklog/2 && c.rd.Load()&rdPaused != 0 && c.unpause() {
		if c.blocking {
			go c.readBlocking()
		} else {
			c.resume()
		}
	}
}

// The reader's state in Conn.rd, bits set and cleared atomically.
const (
	rdReading = 1 << iota // a reader owns the socket (the poller's sockets)
	rdAgain               // the poller saw the socket readable since the reader last read it
	rdPaused              // the reader stopped over the backlog; its owner is Done
)

// unpause clears rdPaused and reports whether this call did.
func (c *Conn) unpause() bool {
	for {
		s := c.rd.Load()
		if s&rdPaused == 0 {
			return false
		}
		if c.rd.CompareAndSwap(s, s&^rdPaused) {
			return true
		}
	}
}

// overBacklog reports whether the reader must stop because the consumer is
// behind. When it returns true, reading resumes from Done.
func (c *Conn) overBacklog() bool {
	if c.backlog.Load() <= c.cfg.maxBacklog {
		return false
	}
	c.rd.Or(rdPaused)
	// Done may have caught up between the Load and the Or, without seeing
	// rdPaused: then resume here, unless Done got there first.
	if c.backlog.Load() > c.cfg.maxBacklog/2 {
		return true
	}
	return !c.unpause()
}

// readBlocking is the portable reader: one goroutine per socket while it is
// not paused by backpressure.
func (c *Conn) readBlocking() {
	buf := make([]byte, 4096)
	for {
		n, err := c.nc.Read(buf)
		if n > 0 && !c.consume(buf[:n]) {
			return
		}
		if err != nil {
			c.end()
			return
		}
		if c.overBacklog() {
			return // Done starts a new reader
		}
	}
}

// consume parses bytes read from the socket. It returns false when reading
// must stop.
func (c *Conn) consume(b []byte) bool {
	c.rmu.Lock()
	if c.readStopped {
		c.rmu.Unlock()
		return false
	}
	err := c.fr.feed(b, c)
	if err != nil {
		c.readStopped = true
	}
	c.rmu.Unlock()
	if err != nil {
		if c.cfg.debug != nil {
			c.cfg.debug.Debug("bad frame", "socket", c.sid(), "error", err)
		}
		c.closeAndEnd(closeCode(err), err.Error())
		return false
	}
	c.mu.Lock()
	stop := c.peerClosed || c.ended
	c.mu.Unlock()
	return !stop
}

// frameEvents, called by the frameReader on the reader's goroutine with rmu
// held.

func (c *Conn) message(p []byte) {
	if c.frag != nil && !c.frag.deadline.IsZero() { // a fragmented message is complete
		c.frag.deadline = time.Time{}
		c.frag.timer.Stop()
	}
	if c.cfg.debug != nil {
		c.cfg.debug.Debug("in", "socket", c.sid(), "frame", string(p))
	}
	c.backlog.Add(int64(len(p)))
	if c.meter != nil {
		c.meter.Received(len(p))
	}
	c.h.Message(append([]byte(nil), p...))
}

// fragment arms the deadline of a fragmented message: a timer, so that it
// fires even if the client sends nothing more.
func (c *Conn) fragment() {
	if c.frag == nil {
		c.frag = &fragment{deadline: time.Now().Add(c.cfg.fragTimeout)}
		c.frag.timer = time.AfterFunc(c.cfg.fragTimeout, c.fragmentExpired)
		return
	}
	c.frag.deadline = time.Now().Add(c.cfg.fragTimeout)
	c.frag.timer.Reset(c.cfg.fragTimeout)
}

func (c *Conn) fragmentExpired() {
	c.rmu.Lock()
	if c.readStopped || c.frag.deadline.IsZero() || time.Now().Before(c.frag.deadline) {
		// finished, or a later message whose own deadline is pending
		c.rmu.Unlock()
		return
	}
	c.readStopped = true
	c.frag.deadline = time.Time{}
	c.fr.frag, c.fr.pend, c.fr.inFrag = nil, nil, false // free the partial message now
	c.rmu.Unlock()
	c.closeAndEnd(StatusPolicyViolation, "Fragmented message not finished within "+c.cfg.fragTimeout.String())
}

func (c *Conn) ping(p []byte) {
	c.control(newFrame(opPong, p))
	c.h.Activity()
}

func (c *Conn) pong() { c.h.Activity() }

func (c *Conn) peerClose(code int) {
	if code == statusNoStatus || code == statusAbnormal || code == statusTLSHandshake {
		code = StatusNormalClosure // not sendable on the wire
	}
	c.mu.Lock()
	c.peerClosed = true
	if c.closeCode == 0 {
		c.closeCode = int32(code)
	}
	if c.state == stateOpen {
		// Answer the client's close, then end.
		c.enqueueLocked(closeFrame(code, ""))
		c.state = stateClosing
		c.endAfterOut = true
		c.startWriterLocked()
		c.mu.Unlock()
		return
	}
	// We had sent ours: the handshake is complete once it is written.
	written := !c.writing
	c.endAfterOut = true
	c.mu.Unlock()
	if written {
		c.end()
	}
}

// Send queues a frame. It returns false when the socket no longer accepts
// frames; when the queue would exceed its bound the socket is closed with
// Options.OverflowStatus instead of growing.
func (c *Conn) Send(p *Prepared) bool { return c.send(p, false) }

// SendNow is Send, except that when nothing is queued for the socket the
// frame is written at once on the caller's goroutine instead of by a writer
// goroutine woken for it. That saves the wake-up when frames are few; when
// they come faster than sockets drain, Send lets the writer put every frame
// that queued meanwhile into one write.
func (c *Conn) SendNow(p *Prepared) bool { return c.send(p, true) }

func (c *Conn) send(p *Prepared, now bool) bool {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return false
	}
	if c.pending+len(p.wire) > c.cfg.maxPending {
		c.abort = true
		c.closeLocked(c.cfg.overflow, c.cfg.overflowWhy, true)
		c.mu.Unlock()
		return false
	}
	if now && !c.writing && len(c.queue) == 0 && c.rc != nil && c.cfg.debug == nil &&
		(c.hello == nil || helloSize+len(p.wire) <= firstWriteSize) {
		rest, done := c.writeAtOnce(p)
		if done {
			c.mu.Unlock()
			return true
		}
		if rest != nil {
			p = rest
		}
	}
	c.enqueueLocked(p)
	c.pending += len(p.wire)
	c.startWriterLocked()
	c.mu.Unlock()
	return true
}

// firstWriteSize bounds the 101 response and first frame that writeAtOnce
// writes together (connection_established is about 120 bytes).
const firstWriteSize = 512

var firstWrites = sync.Pool{New: func() any { return new([firstWriteSize]byte) }}

// writeAtOnce makes one non-blocking write(2) of p, behind the 101 response
// if that is still held back. done: p went out whole. Otherwise rest is what
// the writer must send first (the unsent end of the 101 and of p, marked as
// no frame of its own), or nil when the kernel took nothing. Caller holds
// mu, with no writer running and nothing queued.
func (c *Conn) writeAtOnce(p *Prepared) (rest *Prepared, done bool) {
	b, hello := p.wire, 0
	var buf *[firstWriteSize]byte
	if c.hello != nil {
		buf = firstWrites.Get().(*[firstWriteSize]byte)
		b = append(append(buf[:0], c.hello[:]...), p.wire...)
		hello = helloSize
	}
	n := c.writeNow(b)
	if n > 0 {
		c.hello = nil
		if n < len(b) {
			rest = &Prepared{wire: b[n:], payload: -1, born: p.born}
			if buf != nil {
				rest.wire = bytes.Clone(rest.wire) // buf goes back to the pool
			}
		}
	}
	if buf != nil {
		firstWrites.Put(buf)
	}
	if n > 0 && c.meter != nil {
		if n == len(b) {
			c.measure1(p, len(p.wire))
		} else {
			c.meter.Sent(0, max(n-hello, 0)) // the frame's bytes; the 101 is not one
		}
	}
	return rest, n > 0 && n == len(b)
}

// writeNow makes one non-blocking write of b to the socket and returns how
// many bytes the kernel took: 0 when it took none or the write failed (the
// writer then tries again with its deadline and handles the error). Caller
// holds mu, with no writer running.
func (c *Conn) writeNow(b []byte) int {
	w := rawWriters.Get().(*rawWriter)
	w.b = b
	err := c.rc.Write(w.fn)
	n := w.n
	*w = rawWriter{fn: w.fn}
	rawWriters.Put(w)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// rawWriter is one write(2) attempt, pooled so that writeNow allocates
// nothing: fn is its write method, bound once.
type rawWriter struct {
	b  []byte
	n  int
	fn func(fd uintptr) bool
}

var rawWriters = sync.Pool{New: func() any {
	w := &rawWriter{}
	w.fn = w.write
	return w
}}

// write is called by RawConn.Write with the socket's descriptor. It always
// reports done: on EAGAIN the frame is queued for the writer instead of
// waiting here.
func (w *rawWriter) write(fd uintptr) bool {
	for {
		n, err := rawWrite(int(fd), w.b)
		if err == syscall.EINTR {
			continue
		}
		w.n = n
		return true
	}
}

// CloseAfter queues f, then a close frame with code, and stops accepting
// frames (a protocol sends its error message before the close).
func (c *Conn) CloseAfter(f *Prepared, code int, reason string) {
	c.mu.Lock()
	if c.state == stateOpen {
		c.enqueueLocked(f)
		c.pending += f.Size()
		c.closeLocked(code, reason, false)
	}
	c.mu.Unlock()
}

// Close sends a close frame with code and stops accepting frames.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	if c.state == stateOpen {
		c.closeLocked(code, reason, false)
	}
	c.mu.Unlock()
}

// closeAndEnd sends a close frame and ends the socket once it is written,
// without waiting for the client (it broke the protocol).
func (c *Conn) closeAndEnd(code int, reason string) {
	c.mu.Lock()
	if c.state == stateOpen {
		c.closeLocked(code, reason, true)
	}
	c.abort = true
	c.endAfterOut = true
	idle := !c.writing
	c.mu.Unlock()
	if idle {
		c.end()
	}
}

// closeLocked queues the close frame; drop discards what is queued (a slow
// consumer will never read it). Caller holds mu and checked stateOpen.
func (c *Conn) closeLocked(code int, reason string, drop bool) {
	if drop {
		// Keep the rest of a frame already partly on the wire: the close
		// frame must not land inside it.
		keep := 0
		if len(c.queue) > 0 && c.queue[0].payload < 0 {
			keep = 1
		}
		clear(c.queue[keep:])
		c.queue, c.pending = c.queue[:keep], 0
		if keep == 1 {
			c.pending = c.queue[0].Size()
		}
	}
	if c.cfg.debug != nil {
		c.cfg.debug.Debug("close", "socket", c.sid(), "code", code, "reason", reason)
	}
	if c.closeCode == 0 {
		c.closeCode = int32(code)
	}
	c.enqueueLocked(closeFrame(code, reason))
	c.state = stateClosing
	c.startWriterLocked()
}

func (c *Conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
}

// control queues a control frame (pong) unless the socket is closing.
func (c *Conn) control(p *Prepared) {
	c.mu.Lock()
	if c.state == stateOpen {
		c.enqueueLocked(p)
		c.pending += p.Size()
		c.startWriterLocked()
	}
	c.mu.Unlock()
}

func (c *Conn) writeLoop() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.ended {
			c.writing = false
			endNow := c.endAfterOut && !c.ended
			// An idle socket keeps no buffers: they go back to a pool (a
			// burst's large ones are dropped) until the next frame.
			if !c.ended {
				putWriterBufs(c.queue, c.spare, c.bufs)
				// Send writes directly again, and needs no deadline for it.
				_ = c.nc.SetWriteDeadline(time.Time{})
			}
			c.queue, c.spare, c.bufs = nil, nil, nil
			c.mu.Unlock()
			if endNow {
				c.end()
			}
			return
		}
		batch := c.queue
		c.queue, c.pending = c.spare[:0], 0
		hello := c.hello
		c.hello = nil
		c.mu.Unlock()

		bufs := c.bufs[:0]
		if hello != nil {
			bufs = append(bufs, hello[:])
		}
		sentClose := false
		for _, p := range batch {
			bufs = append(bufs, p.wire)
			if p.payload >= 0 && p.wire[0]&0x0f == opClose {
				sentClose = true
			}
			if c.cfg.debug != nil && p.payload >= 0 && p.isText() {
				c.cfg.debug.Debug("out", "socket", c.sid(), "frame", string(p.Payload()))
			}
		}
		c.bufs = bufs
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.writeTimeout))
		w := bufs // WriteTo consumes its receiver
		n, err := w.WriteTo(c.nc)
		if c.meter != nil {
			// Bytes out are WebSocket frames: the 101 response is not one.
			helloLen := 0
			if hello != nil {
				helloLen = helloSize
			}
			c.measure(batch, max(int(n)-helloLen, 0), err == nil)
		}
		clear(batch)
		c.spare = batch
		clear(c.bufs)
		if err != nil { // timed out or broken: the client is not taking data
			c.mu.Lock()
			c.abort = true
			c.writing = false
			c.spare, c.bufs = nil, nil
			c.mu.Unlock()
			c.end()
			return
		}
		if sentClose {
			// Give the client a moment to answer our close, then end.
			time.AfterFunc(closeGrace, c.end)
		}
	}
}

// writerBufs are a socket's queue, the writer's spare queue and its writev
// vector: taken from a pool with the first frame queued on an idle socket
// and given back when the writer has nothing left, so idle sockets hold no
// buffers and busy ones allocate none.
type writerBufs struct {
	queue, spare []*Prepared
	bufs         net.Buffers
}

var writerPool = sync.Pool{New: func() any {
	return &writerBufs{queue: make([]*Prepared, 0, 8), spare: make([]*Prepared, 0, 8), bufs: make(net.Buffers, 0, 9)}
}}

// writerHolders recycles the emptied holders, so pooling allocates nothing.
var writerHolders = sync.Pool{New: func() any { return &writerBufs{} }}

// enqueueLocked appends p to the queue; caller holds mu.
func (c *Conn) enqueueLocked(p *Prepared) {
	if c.queue == nil && !c.writing {
		w := writerPool.Get().(*writerBufs)
		c.queue, c.spare, c.bufs = w.queue, w.spare, w.bufs
		*w = writerBufs{}
		writerHolders.Put(w)
	}
	c.queue = append(c.queue, p)
}

func putWriterBufs(queue, spare []*Prepared, bufs net.Buffers) {
	if queue == nil || spare == nil || cap(queue) > 256 || cap(spare) > 256 || cap(bufs) > 257 {
		return
	}
	w := writerHolders.Get().(*writerBufs)
	w.queue, w.spare, w.bufs = queue[:0], spare[:0], bufs[:0]
	writerPool.Put(w)
}

// end tears the socket down once: no more reads or writes, onEnd called.
func (c *Conn) end() {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.state = stateClosed
	clear(c.queue)
	c.queue, c.pending = nil, 0
	reset := c.abort && !c.peerClosed
	code := int(c.closeCode)
	c.mu.Unlock()
	if c.meter != nil {
		if code == 0 {
			code = statusAbnormal
		}
		c.meter.Closed(code)
	}
	pollerRemove(c)
	switch {
	case reset && c.rc != nil && unsent(c.rc) > 0:
		// The client may yet read what the kernel holds for it, our close
		// frame last: it gets closeGrace to, and then a reset.
		go c.resetUnlessDrained()
	case reset:
		c.reset()
	default:
		c.nc.Close()
	}
	if c.h != nil {
		c.h.End()
	}
}

// reset closes a client we dropped with SO_LINGER 0: the kernel frees what
// it still holds for it at once (the client gets a reset) instead of keeping
// it until the client goes away, which one that stopped reading never does.
func (c *Conn) reset() {
	if l, ok := c.nc.(interface{ SetLinger(int) error }); ok {
		_ = l.SetLinger(0)
	}
	c.nc.Close()
}

// resetUnlessDrained closes the socket normally once the client has taken
// everything written to it, or resets it after closeGrace.
func (c *Conn) resetUnlessDrained() {
	for deadline := time.Now().Add(closeGrace); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if unsent(c.rc) == 0 {
			c.nc.Close()
			return
		}
	}
	c.reset()
}

// measure1 reports one frame written whole by Send.
func (c *Conn) measure1(p *Prepared, n int) {
	c.meter.Sent(1, n)
	if p.born != 0 {
		c.meter.Delivered(time.Duration(int64(time.Since(epoch)) - p.born))
	}
}

// measure reports one write to the meter: the frames and bytes written and,
// for stamped frames, their delivery latency.
func (c *Conn) measure(batch []*Prepared, n int, ok bool) {
	frames := len(batch)
	if !ok {
		frames = 0 // a broken write: count the bytes that left, not the frames
	}
	c.meter.Sent(frames, n)
	if !ok {
		return
	}
	var now int64
	for _, p := range batch {
		if p.born != 0 {
			if now == 0 {
				now = int64(time.Since(epoch))
			}
			c.meter.Delivered(time.Duration(now - p.born))
		}
	}
}
