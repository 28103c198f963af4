package wsconn

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
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

var upgrader = websocket.Upgrader{
	// Small read buffers keep idle sockets cheap; messages bigger than the
	// buffer are still read whole. Writes bypass gorilla (see writeLoop), and
	// the pool stops gorilla from keeping the hijacked 4 KB write buffer.
	ReadBufferSize:  512,
	WriteBufferPool: &sync.Pool{},
	// Origins are checked per app after the upgrade, so that a refused client
	// gets a pusher:error it can show instead of a bare HTTP 403.
	CheckOrigin: func(*http.Request) bool { return true },
}

// connection states, guarded by Conn.mu.
const (
	stateOpen    = iota
	stateClosing // our close frame is queued; nothing more is accepted
	stateClosed  // the read loop has ended
)

// Conn is one client socket. Reading belongs to ReadLoop; any goroutine may
// Send. Outbound frames wait in a bounded queue drained by a writer goroutine
// that exists only while there is something to write, and that coalesces
// everything queued into one writev.
type Conn struct {
	ws           *websocket.Conn // read side; owned by ReadLoop
	nc           net.Conn        // set at construction
	debug        *slog.Logger    // set at construction; nil when not debugging
	maxPending   int             // set at construction
	writeTimeout time.Duration   // set at construction
	id           string          // socket id for logs; set once by SetID before ReadLoop

	mu            sync.Mutex
	queue         []*Prepared // guarded by mu
	pending       int         // bytes in queue; guarded by mu
	writing       bool        // a writeLoop goroutine runs; guarded by mu
	state         int         // guarded by mu
	closeAfterOut bool        // close the TCP conn once the queue is written; guarded by mu

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
	return newConn(ws, opts), nil
}

func newConn(ws *websocket.Conn, opts Options) *Conn {
	if opts.ReadLimit <= 0 {
		opts.ReadLimit = 64 << 10
	}
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = 4 << 20
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	ws.SetReadLimit(opts.ReadLimit)
	return &Conn{ws: ws, nc: ws.NetConn(), debug: opts.Debug, maxPending: opts.MaxPendingBytes, writeTimeout: opts.WriteTimeout}
}

// SetID names the socket in debug logs.
func (c *Conn) SetID(id string) { c.id = id }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

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
		c.closeLocked(CodeSlowConsumer, CodeSlowConsumer.Message(), true)
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
		c.closeLocked(e.Code, e.Message(), false)
	}
	c.mu.Unlock()
}

// Close sends a close frame with code and stops accepting frames.
func (c *Conn) Close(code Code, reason string) {
	c.mu.Lock()
	if c.state == stateOpen {
		c.closeLocked(code, reason, false)
	}
	c.mu.Unlock()
}

// closeLocked queues the close frame; drop discards what is queued (a slow
// consumer will never read it). Caller holds mu and checked stateOpen.
func (c *Conn) closeLocked(code Code, reason string, drop bool) {
	if drop {
		clear(c.queue)
		c.queue, c.pending = c.queue[:0], 0
	}
	if c.debug != nil {
		c.debug.Debug("close", "socket", c.id, "code", int(code), "reason", reason)
	}
	c.queue = append(c.queue, closeFrame(int(code), reason))
	c.state = stateClosing
	c.startWriterLocked()
}

func (c *Conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
}

// control queues a control frame (pong, close reply) regardless of state
// unless the socket is fully closed.
func (c *Conn) control(p *Prepared) {
	c.mu.Lock()
	if c.state != stateClosed || c.writing {
		c.queue = append(c.queue, p)
		c.pending += p.Size()
		c.startWriterLocked()
	}
	c.mu.Unlock()
}

func (c *Conn) writeLoop() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.writing = false
			closeNow := c.closeAfterOut
			if cap(c.queue) > 256 || cap(c.spare) > 256 {
				// don't keep a burst's capacity on an idle socket
				c.queue, c.spare, c.bufs = nil, nil, nil
			}
			c.mu.Unlock()
			if closeNow {
				c.nc.Close()
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
		if sentClose {
			// Give the client a moment to answer our close, then the read
			// loop times out and tears the socket down.
			_ = c.nc.SetReadDeadline(time.Now().Add(closeGrace))
		}
		if err != nil {
			c.mu.Lock()
			c.state = stateClosed
			clear(c.queue)
			c.queue, c.pending, c.writing = nil, 0, false
			c.spare, c.bufs = nil, nil
			c.mu.Unlock()
			c.nc.Close()
			return
		}
	}
}

// ReadLoop reads messages until the socket ends, calling onMessage for each
// and onActivity for protocol-level ping/pong frames. It closes the socket
// before returning. Callbacks run on the read goroutine and must not block.
func (c *Conn) ReadLoop(onMessage func([]byte), onActivity func()) error {
	c.ws.SetPingHandler(func(data string) error {
		c.control(newFrame(opPong, []byte(data)))
		onActivity()
		return nil
	})
	c.ws.SetPongHandler(func(string) error { onActivity(); return nil })
	c.ws.SetCloseHandler(func(code int, _ string) error {
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
		c.control(closeFrame(code, ""))
		return nil
	})
	var err error
	for {
		var data []byte
		_, data, err = c.ws.ReadMessage()
		if err != nil {
			break
		}
		if c.debug != nil {
			c.debug.Debug("in", "socket", c.id, "frame", string(data))
		}
		onMessage(data)
	}
	c.mu.Lock()
	c.state = stateClosed
	if c.writing {
		// Let the writer flush a close reply, bounded by the write deadline.
		c.closeAfterOut = true
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.mu.Unlock()
	} else {
		c.mu.Unlock()
		c.nc.Close()
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
