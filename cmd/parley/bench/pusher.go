package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Pusher event names the bench speaks.
const (
	evConnectionEstablished = "pusher:connection_established"
	evError                 = "pusher:error"
	evPing                  = "pusher:ping"
	evPong                  = "pusher:pong"
	evSubscribe             = "pusher:subscribe"
	evSubscriptionError     = "pusher:subscription_error"
	evSubscriptionSucceeded = "pusher_internal:subscription_succeeded"
	evMemberAdded           = "pusher_internal:member_added"
	evMemberRemoved         = "pusher_internal:member_removed"
)

var pongFrame = []byte(`{"event":"` + evPong + `","data":{}}`)

// dialContext opens every TCP connection the bench makes, WebSocket and
// HTTP alike, from the source address withSource put in ctx, if any. It is
// a variable so a test can prove that a refused target is never dialled.
var dialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src, ok := ctx.Value(sourceKey{}).(*net.TCPAddr); ok {
		d.LocalAddr = src
	}
	return d.DialContext(ctx, network, addr)
}

type sourceKey struct{}

// withSource asks dialContext to dial from src (nil: the kernel's choice).
func withSource(ctx context.Context, src *net.TCPAddr) context.Context {
	if src == nil {
		return ctx
	}
	return context.WithValue(ctx, sourceKey{}, src)
}

// sourceBlock is how many WebSocket dials of one dialer share a source
// address. A client has about 28,000 ephemeral ports per source address
// and destination (Linux's default ip_local_port_range): past them,
// connect fails with EADDRNOTAVAIL, so 50,000 sockets from 127.0.0.1 to
// one server port cannot all connect. Dialling a 127.x address, the
// first sourceBlock sockets therefore come from the kernel's choice
// (127.0.0.1), the next from 127.0.0.2, then 127.0.0.3, and so on: every
// 127.x address is local on Linux. A variable for the test.
var sourceBlock int64 = 16384

// loopbackSource is the source address of dial n (from 0) to addr: nil
// (the kernel's choice) for the first block and for any address outside
// 127.0.0.0/8.
func loopbackSource(addr string, n int64) *net.TCPAddr {
	block := n / sourceBlock
	if block == 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host).To4()
	if ip == nil || ip[0] != 127 {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+min(block, 253)))}
}

// writeBufferPool is shared by all sockets: a socket that is not writing
// holds no write buffer, which matters at tens of thousands of sockets.
var writeBufferPool = &sync.Pool{}

// newDialer returns a WebSocket dialer with small buffers so that the
// bench's memory per socket stays far below the server's.
func newDialer(handshakeTimeout time.Duration) *websocket.Dialer {
	var dials atomic.Int64
	return &websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialContext(withSource(ctx, loopbackSource(addr, dials.Add(1)-1)), network, addr)
		},
		HandshakeTimeout: handshakeTimeout,
		ReadBufferSize:   1024,
		WriteBufferSize:  256,
		WriteBufferPool:  writeBufferPool,
	}
}

// pusherError is a pusher:error or pusher:subscription_error frame.
type pusherError struct {
	Event   string
	Code    int
	Message string
}

func (e *pusherError) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("%s %d: %s", e.Event, e.Code, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Event, e.Message)
}

func parsePusherError(event string, msg []byte) *pusherError {
	pe := &pusherError{Event: event}
	d := dataString(msg)
	var body struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Error   string `json:"error"`
		Status  int    `json:"status"`
	}
	if json.Unmarshal([]byte(d), &body) == nil {
		pe.Code, pe.Message = body.Code, body.Message
		if pe.Code == 0 {
			pe.Code = body.Status
		}
		if pe.Message == "" {
			pe.Message = body.Error
		}
	} else {
		pe.Message = d
	}
	return pe
}

// frameHandler receives a frame's event name and the whole frame. Both
// slices are only valid during the call: the read loop reuses its buffer.
type frameHandler func(name, msg []byte)

// socket is one Pusher client connection.
type socket struct {
	// Set at construction.
	ws       *websocket.Conn
	socketID string

	// writeMu serialises writes: gorilla allows one writer at a time, and
	// the read loop's pongs must not interleave with any other write.
	writeMu sync.Mutex
	// closing is set before the bench closes the socket on purpose, so the
	// read loop can tell a deliberate close from a disconnect.
	closing atomic.Bool
	// buf is the read buffer, owned by whichever goroutine is reading.
	buf []byte
}

// dialSocket connects and waits for pusher:connection_established.
func dialSocket(ctx context.Context, d *websocket.Dialer, url string, timeout time.Duration) (*socket, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ws, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket handshake: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	ws.SetReadLimit(1 << 20)
	s := &socket{ws: ws, buf: make([]byte, 0, 512)}
	deadline, _ := ctx.Deadline()
	_ = ws.SetReadDeadline(deadline)
	for {
		msg, err := s.next()
		if err != nil {
			ws.Close()
			return nil, fmt.Errorf("waiting for connection_established: %w", err)
		}
		switch name := string(eventName(msg)); name {
		case evConnectionEstablished:
			var est struct {
				SocketID string `json:"socket_id"`
			}
			if err := json.Unmarshal([]byte(dataString(msg)), &est); err != nil || est.SocketID == "" {
				ws.Close()
				return nil, fmt.Errorf("connection_established without socket_id: %s", msg)
			}
			s.socketID = est.SocketID
			_ = ws.SetReadDeadline(time.Time{})
			return s, nil
		case evError:
			ws.Close()
			return nil, parsePusherError(name, msg)
		case evPing:
			if err := s.write(pongFrame); err != nil {
				ws.Close()
				return nil, err
			}
		default:
			ws.Close()
			return nil, fmt.Errorf("expected %s, got %q", evConnectionEstablished, name)
		}
	}
}

// next reads one whole message into the socket's buffer, growing it only
// when a message is bigger than any before.
func (s *socket) next() ([]byte, error) {
	_, r, err := s.ws.NextReader()
	if err != nil {
		return nil, err
	}
	buf := s.buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			s.buf = buf
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (s *socket) write(frame []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.ws.WriteMessage(websocket.TextMessage, frame)
}

// subscribe sends pusher:subscribe and waits for subscription_succeeded on
// channel, returning its data string (the presence snapshot). auth and
// channelData are omitted when empty. Frames that arrive meanwhile go to
// early (which may be nil).
func (s *socket) subscribe(channel, auth, channelData string, timeout time.Duration, early frameHandler) (string, error) {
	type subData struct {
		Channel     string `json:"channel"`
		Auth        string `json:"auth,omitempty"`
		ChannelData string `json:"channel_data,omitempty"`
	}
	frame, _ := json.Marshal(struct {
		Event string  `json:"event"`
		Data  subData `json:"data"`
	}{evSubscribe, subData{channel, auth, channelData}})
	_ = s.ws.SetReadDeadline(time.Now().Add(timeout))
	defer s.ws.SetReadDeadline(time.Time{})
	if err := s.write(frame); err != nil {
		return "", fmt.Errorf("subscribe %s: %w", channel, err)
	}
	for {
		msg, err := s.next()
		if err != nil {
			return "", fmt.Errorf("waiting for subscription_succeeded on %s: %w", channel, err)
		}
		name := eventName(msg)
		switch string(name) {
		case evSubscriptionSucceeded:
			if ch, _, _ := stringField(msg, needleChannel); string(ch) == channel {
				return dataString(msg), nil
			}
		case evSubscriptionError, evError:
			return "", fmt.Errorf("subscribe %s: %w", channel, parsePusherError(string(name), msg))
		case evPing:
			if err := s.write(pongFrame); err != nil {
				return "", err
			}
			continue
		}
		if early != nil {
			early(name, msg)
		}
	}
}

// run is the socket's read loop: it answers pings and hands every other
// frame to h until the connection ends, returning why it ended.
func (s *socket) run(h frameHandler) error {
	for {
		msg, err := s.next()
		if err != nil {
			return err
		}
		name := eventName(msg)
		if string(name) == evPing {
			if err := s.write(pongFrame); err != nil {
				return err
			}
			continue
		}
		h(name, msg)
	}
}

// close ends the connection on purpose; run then returns an error that
// the caller ignores because closing is set.
func (s *socket) close() {
	s.closing.Store(true)
	_ = s.ws.Close()
}
