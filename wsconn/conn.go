package wsconn

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Options tune one socket.
type Options struct {
	// ReadLimit is the largest inbound message in bytes; a bigger one closes
	// the socket with 1009. Zero means 64 KiB.
	ReadLimit int64
	// MaxPendingBytes bounds the outbound queue; past it the socket is closed
	// with CodeSlowConsumer. Zero means 4 MiB.
	MaxPendingBytes int
	// WriteTimeout bounds one write to the network. Zero means 10s.
	WriteTimeout time.Duration
	// Debug, when set, logs every frame in and out.
	Debug *slog.Logger
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
	nc           net.Conn        // set at construction
	rc           syscall.RawConn // set at construction; nil if the conn has no fd
	debug        *slog.Logger    // set at construction; nil when not debugging
	maxPending   int             // set at construction
	writeTimeout time.Duration   // set at construction
	id           string          // socket id for logs; set once by SetID before Serve

	// Set by Serve, called by the reader.
	onMessage  func([]byte)
	onActivity func()
	onEnd      func()

	fr     frameReader // owned by the reader (one at a time)
	pollID uint64      // set by the poller

	mu          sync.Mutex
	queue       []*Prepared // guarded by mu
	pending     int         // bytes in queue; guarded by mu
	writing     bool        // a writeLoop goroutine runs; guarded by mu
	state       int         // guarded by mu
	endAfterOut bool        // end the socket once the queue is written; guarded by mu
	peerClosed  bool        // the client sent a close frame; guarded by mu
	ended       bool        // guarded by mu

	// Owned by the one running writeLoop; handed over under mu when it exits.
	spare []*Prepared
	bufs  net.Buffers
}

// Upgrade turns an HTTP request into a socket. On failure gorilla has already
// answered the HTTP request.
func Upgrade(w http.ResponseWriter, r *http.Request, opts Options) (*Conn, error) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, err
	}
	return newConn(ws.NetConn(), opts), nil
}

func newConn(nc net.Conn, opts Options) *Conn {
	if opts.ReadLimit <= 0 {
		opts.ReadLimit = 64 << 10
	}
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = 4 << 20
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	c := &Conn{nc: nc, debug: opts.Debug, maxPending: opts.MaxPendingBytes, writeTimeout: opts.WriteTimeout}
	c.fr.limit = opts.ReadLimit
	if sc, ok := nc.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	return c
}

// SetID names the socket in debug logs.
func (c *Conn) SetID(id string) { c.id = id }

// Serve starts reading: onMessage gets each complete message, onActivity each
// WebSocket ping or pong, and onEnd is called once when the socket is gone.
// Callbacks must not block. Serve returns at once.
func (c *Conn) Serve(onMessage func([]byte), onActivity func(), onEnd func()) {
	c.onMessage, c.onActivity, c.onEnd = onMessage, onActivity, onEnd
	if c.rc != nil && pollerAdd(c) == nil {
		return
	}
	go c.readBlocking()
}

// readBlocking is the portable reader: one goroutine per socket.
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
	}
}

// consume parses bytes read from the socket. It returns false when reading
// must stop.
func (c *Conn) consume(b []byte) bool {
	if err := c.fr.feed(b, c); err != nil {
		code := 1002 // protocol error
		if errors.Is(err, errTooBig) {
			code = 1009
		}
		if c.debug != nil {
			c.debug.Debug("bad frame", "socket", c.id, "error", err)
		}
		c.closeAndEnd(code, err.Error())
		return false
	}
	c.mu.Lock()
	stop := c.peerClosed || c.ended
	c.mu.Unlock()
	return !stop
}

// frameEvents, called by the frameReader on the reader's goroutine.

func (c *Conn) message(p []byte) {
	if c.debug != nil {
		c.debug.Debug("in", "socket", c.id, "frame", string(p))
	}
	c.onMessage(append([]byte(nil), p...))
}

func (c *Conn) ping(p []byte) {
	c.control(newFrame(opPong, p))
	c.onActivity()
}

func (c *Conn) pong() { c.onActivity() }

func (c *Conn) peerClose(code int) {
	if code == 1005 || code == 1006 || code == 1015 {
		code = 1000 // not sendable on the wire
	}
	c.mu.Lock()
	c.peerClosed = true
	if c.state == stateOpen {
		// Answer the client's close, then end.
		c.queue = append(c.queue, closeFrame(code, ""))
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
// CodeSlowConsumer instead of growing.
func (c *Conn) Send(p *Prepared) bool {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return false
	}
	if c.pending+len(p.wire) > c.maxPending {
		c.closeLocked(int(CodeSlowConsumer), CodeSlowConsumer.Message(), true)
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, p)
	c.pending += len(p.wire)
	c.startWriterLocked()
	c.mu.Unlock()
	return true
}

// SendEvent encodes and queues one frame for this socket only.
func (c *Conn) SendEvent(event, channel, data string) bool {
	return c.Send(NewPrepared(EncodeEvent(event, channel, data, "")))
}

// SendError queues a pusher:error frame; the socket stays open.
func (c *Conn) SendError(e *Error) bool {
	return c.SendEvent("pusher:error", "", ErrorData(e.Code, e.Message()))
}

// CloseWithError sends pusher:error followed by a close frame with the same
// code, as Pusher does, then stops accepting frames.
func (c *Conn) CloseWithError(e *Error) {
	f := NewPrepared(EncodeEvent("pusher:error", "", ErrorData(e.Code, e.Message()), ""))
	c.mu.Lock()
	if c.state == stateOpen {
		c.queue = append(c.queue, f)
		c.pending += f.Size()
		c.closeLocked(int(e.Code), e.Message(), false)
	}
	c.mu.Unlock()
}

// Close sends a close frame with code and stops accepting frames.
func (c *Conn) Close(code Code, reason string) {
	c.mu.Lock()
	if c.state == stateOpen {
		c.closeLocked(int(code), reason, false)
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
		clear(c.queue)
		c.queue, c.pending = c.queue[:0], 0
	}
	if c.debug != nil {
		c.debug.Debug("close", "socket", c.id, "code", code, "reason", reason)
	}
	c.queue = append(c.queue, closeFrame(code, reason))
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
		c.queue = append(c.queue, p)
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
			if cap(c.queue) > 256 || cap(c.spare) > 256 || c.ended {
				// don't keep a burst's capacity on an idle socket
				c.queue, c.spare, c.bufs = nil, nil, nil
			}
			c.mu.Unlock()
			if endNow {
				c.end()
			}
			return
		}
		batch := c.queue
		c.queue, c.pending = c.spare[:0], 0
		c.mu.Unlock()

		bufs := c.bufs[:0]
		sentClose := false
		for _, p := range batch {
			bufs = append(bufs, p.wire)
			if p.wire[0]&0x0f == opClose {
				sentClose = true
			}
			if c.debug != nil && p.isText() {
				c.debug.Debug("out", "socket", c.id, "frame", string(p.Payload()))
			}
		}
		c.bufs = bufs
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		w := bufs // WriteTo consumes its receiver
		_, err := w.WriteTo(c.nc)
		clear(batch)
		c.spare = batch
		clear(c.bufs)
		if err != nil {
			c.mu.Lock()
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
	c.mu.Unlock()
	pollerRemove(c)
	c.nc.Close()
	if c.onEnd != nil {
		c.onEnd()
	}
}
