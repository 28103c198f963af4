package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A slow consumer completes the handshake, subscribes and then never reads
// again, like a phone that went into a tunnel with its socket open. It is
// raw TCP with a minimal WebSocket client, because a WebSocket library
// would read (to answer pings) on its own. The server's queue for it can
// only grow until the server gives up on it (Parley closes it with 4101).

// slowUserAgent tells a server's logs (and the tests' fake server) which
// sockets are the slow consumers.
const slowUserAgent = "parley-bench (slow consumer)"

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// wsGUID is the RFC 6455 handshake constant.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxHandshakeMessage bounds a message read before the socket goes quiet.
const maxHandshakeMessage = 1 << 20

// slowSocket is one slow consumer.
type slowSocket struct {
	conn net.Conn
	br   *bufio.Reader // holds whatever the handshake read ahead
}

// dialSlow connects to t, subscribes to channel and returns without
// reading anything more. Every step is bounded by timeout.
func dialSlow(ctx context.Context, t target, channel string, timeout time.Duration) (*slowSocket, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dialContext(ctx, "tcp", t.hostPort())
	if err != nil {
		return nil, err
	}
	// The deadline bounds the handshake; cancellation of ctx cuts it short.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	s := &slowSocket{conn: conn, br: bufio.NewReaderSize(conn, 1024)}
	if err := s.handshake(t, channel); err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, err
	}
	if !stop() {
		conn.Close()
		return nil, ctx.Err()
	}
	_ = conn.SetDeadline(time.Time{})
	return s, nil
}

func (s *slowSocket) handshake(t target, channel string) error {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + t.wsPath() + " HTTP/1.1\r\n" +
		"Host: " + t.hostPort() + "\r\n" +
		"User-Agent: " + slowUserAgent + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(s.conn, req); err != nil {
		return fmt.Errorf("websocket handshake: %w", err)
	}
	resp, err := http.ReadResponse(s.br, nil)
	if err != nil {
		return fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("websocket handshake: HTTP %d", resp.StatusCode)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return errors.New("websocket handshake: bad Sec-WebSocket-Accept")
	}

	msg, err := s.readMessage()
	if err != nil {
		return fmt.Errorf("waiting for connection_established: %w", err)
	}
	switch name := string(eventName(msg)); name {
	case evConnectionEstablished:
	case evError:
		return parsePusherError(name, msg)
	default:
		return fmt.Errorf("expected %s, got %q", evConnectionEstablished, name)
	}

	sub, _ := json.Marshal(map[string]any{"event": evSubscribe, "data": map[string]string{"channel": channel}})
	if _, err := s.conn.Write(clientFrame(opText, sub)); err != nil {
		return fmt.Errorf("subscribe %s: %w", channel, err)
	}
	for {
		msg, err := s.readMessage()
		if err != nil {
			return fmt.Errorf("waiting for subscription_succeeded on %s: %w", channel, err)
		}
		switch name := eventName(msg); string(name) {
		case evSubscriptionSucceeded:
			if ch, _, _ := stringField(msg, needleChannel); string(ch) == channel {
				return nil
			}
		case evSubscriptionError, evError:
			return fmt.Errorf("subscribe %s: %w", channel, parsePusherError(string(name), msg))
		case evPing:
			if _, err := s.conn.Write(clientFrame(opText, pongFrame)); err != nil {
				return err
			}
		}
	}
}

// readMessage reads one whole text message, answering WebSocket pings;
// a close frame is an error carrying its code.
func (s *slowSocket) readMessage() ([]byte, error) {
	var msg []byte
	for {
		fin, op, n, err := readFrameHeader(s.br)
		if err != nil {
			return nil, err
		}
		if n > maxHandshakeMessage || int64(len(msg))+n > maxHandshakeMessage {
			return nil, fmt.Errorf("a %d-byte frame during the handshake", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(s.br, payload); err != nil {
			return nil, err
		}
		switch op {
		case opClose:
			return nil, fmt.Errorf("closed by the server with code %d", closeCode(payload))
		case opPing:
			if _, err := s.conn.Write(clientFrame(opPong, payload)); err != nil {
				return nil, err
			}
			continue
		case opPong:
			continue
		}
		msg = append(msg, payload...)
		if fin {
			return msg, nil
		}
	}
}

// readFrameHeader reads a server frame's header: FIN, opcode and payload
// length. Server frames are never masked (RFC 6455 §5.1).
func readFrameHeader(r *bufio.Reader) (fin bool, op byte, n int64, err error) {
	var h [8]byte
	if _, err = io.ReadFull(r, h[:2]); err != nil {
		return
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0f
	if h[1]&0x80 != 0 {
		return false, 0, 0, errors.New("a masked frame from the server")
	}
	switch n = int64(h[1] & 0x7f); n {
	case 126:
		if _, err = io.ReadFull(r, h[:2]); err != nil {
			return
		}
		n = int64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err = io.ReadFull(r, h[:8]); err != nil {
			return
		}
		n = int64(binary.BigEndian.Uint64(h[:8]) & (1<<63 - 1))
	}
	return fin, op, n, nil
}

// clientFrame is one masked, final frame (clients must mask, §5.3).
func clientFrame(op byte, payload []byte) []byte {
	n := len(payload)
	b := make([]byte, 0, 14+n)
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// closeCode is a close frame's status code; 1005 (RFC 6455 §7.4.1) when
// the frame has none.
func closeCode(payload []byte) int {
	if len(payload) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(payload))
}

// slowEnd is what became of a slow consumer by the end of the run.
type slowEnd struct {
	open    bool  // the server had not closed it
	code    int   // the close frame's code; 0 when the connection ended without one
	drained int64 // bytes read while finding out
}

// slowQuiet is how long a slow consumer's drain waits for more bytes
// before deciding that the server still holds the socket open.
const slowQuiet = 500 * time.Millisecond

// finish reads what the server queued for s, discarding it, until the
// connection ends, a close frame arrives, nothing arrives for slowQuiet,
// or deadline passes (the socket then counts as open: the server had not
// given up on it). Only frame headers are parsed.
func (s *slowSocket) finish(deadline time.Time) slowEnd {
	var end slowEnd
	quiet := func() {
		_ = s.conn.SetReadDeadline(minTime(time.Now().Add(slowQuiet), deadline))
	}
	for {
		quiet()
		_, op, n, err := readFrameHeader(s.br)
		if err != nil {
			end.open = isTimeout(err)
			return end
		}
		end.drained += 2
		if op == opClose {
			payload := make([]byte, min(n, 125))
			if _, err := io.ReadFull(s.br, payload); err != nil {
				end.open = isTimeout(err)
				return end
			}
			end.code = closeCode(payload)
			return end
		}
		for n > 0 {
			quiet()
			k, err := s.br.Discard(int(min(n, 64<<10)))
			n -= int64(k)
			end.drained += int64(k)
			if err != nil {
				end.open = isTimeout(err)
				return end
			}
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// slowSet is the run's slow consumers.
type slowSet struct {
	socks     []*slowSocket // socks[j] is set by the worker that connected j
	connected atomic.Int64
	failed    atomic.Int64
	perNode   []atomic.Int64 // connected per node
}

// connectSlow opens n slow consumers, consumer j on nodes[place(j)]
// subscribed to channel(j), at most concurrency at a time.
func connectSlow(ctx context.Context, nodes []target, place func(j int) int, n, concurrency int, channel func(j int) string, errs *errorLog) *slowSet {
	set := &slowSet{socks: make([]*slowSocket, n), perNode: make([]atomic.Int64, len(nodes))}
	loop := openLoop{count: int64(n), workers: concurrency}
	loop.run(ctx, func(ctx context.Context, i int64, _ time.Time) {
		j := int(i)
		node := place(j)
		s, err := dialSlow(ctx, nodes[node], channel(j), socketTimeout)
		if err != nil {
			set.failed.Add(1)
			errs.add("slow consumer", err)
			return
		}
		set.socks[j] = s
		set.connected.Add(1)
		set.perNode[node].Add(1)
	})
	return set
}

// slowOutcome counts what became of the slow consumers.
type slowOutcome struct {
	open, closed int64
	codes        map[string]int64 // close code (or "none") → sockets
	drained      int64
}

// slowCheckBudget bounds finishing all slow consumers together.
const slowCheckBudget = 10 * time.Second

// finishAll finds out, for every slow consumer at once, whether the server
// still held it open, then closes them all.
func (set *slowSet) finishAll(ctx context.Context) slowOutcome {
	deadline := time.Now().Add(slowCheckBudget)
	if d, ok := ctx.Deadline(); ok {
		deadline = minTime(deadline, d)
	}
	out := slowOutcome{codes: map[string]int64{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range set.socks {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			end := s.finish(deadline)
			s.conn.Close()
			mu.Lock()
			defer mu.Unlock()
			out.drained += end.drained
			if end.open {
				out.open++
				return
			}
			out.closed++
			code := "none"
			if end.code != 0 {
				code = strconv.Itoa(end.code)
			}
			out.codes[code]++
		}()
	}
	wg.Wait()
	return out
}

// closeAll closes every slow consumer without looking at it.
func (set *slowSet) closeAll() {
	for _, s := range set.socks {
		if s != nil {
			s.conn.Close()
		}
	}
}
