package httpapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
)

// BenchmarkConnect is one client's whole connect against the real handler on
// a loopback socket: dial, the upgrade request, the 101 and
// connection_established, then the client goes away. Allocations are the
// server's and the (minimal, raw-bytes) client's together. The server's
// listener has the front, as parley serve's has; PARLEY_BENCH_NO_FRONT=1
// measures the connect through net/http instead.
func BenchmarkConnect(b *testing.B) {
	addr := benchServer(b)
	req := connectRequest(addr)
	want := []byte("connection_established")
	buf := make([]byte, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		got := 0
		for !bytes.Contains(buf[:got], want) {
			n, err := c.Read(buf[got:])
			if err != nil {
				b.Fatalf("after %q: %v", buf[:got], err)
			}
			got += n
		}
		c.Close()
	}
}

// BenchmarkConnectSubscribe is what deploy/bench's connect section measures,
// for one socket: BenchmarkConnect, then a pusher:subscribe to a public
// channel and one to a private channel (its auth signed as an auth endpoint
// would), each answered with subscription_succeeded, then the client goes
// away. The raw client allocates little (its signature is the bulk of it).
func BenchmarkConnectSubscribe(b *testing.B) {
	addr := benchServer(b)
	req := connectRequest(addr)
	public := maskedText([]byte(`{"event":"pusher:subscribe","data":{"channel":"bench-1"}}`))
	privateStart := []byte(`{"event":"pusher:subscribe","data":{"channel":"private-bench-1","auth":"` + testkit.Key + `:`)
	mac := hmac.New(sha256.New, []byte(testkit.Secret))
	buf := make([]byte, 1024)
	msg := make([]byte, 0, 256)
	sig := make([]byte, 0, sha256.Size)
	connect := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		got := readUntil(b, c, buf, 0, []byte("connection_established"))
		i := bytes.Index(buf[:got], []byte(`socket_id\":\"`))
		if i < 0 {
			b.Fatalf("no socket_id in %q", buf[:got])
		}
		id := buf[i+len(`socket_id\":\"`):]
		id = id[:bytes.IndexByte(id, '\\')]
		mac.Reset()
		mac.Write(id)
		mac.Write([]byte(":private-bench-1"))
		sig = mac.Sum(sig[:0])
		msg = append(msg[:0], privateStart...)
		msg = hex.AppendEncode(msg, sig)
		msg = append(msg, `"}}`...)
		if _, err := c.Write(public); err != nil {
			b.Fatal(err)
		}
		readUntil(b, c, buf, 0, []byte(`subscription_succeeded","channel":"bench-1"`))
		if _, err := c.Write(maskedText(msg)); err != nil {
			b.Fatal(err)
		}
		readUntil(b, c, buf, 0, []byte(`subscription_succeeded","channel":"private-bench-1"`))
		return c
	}
	// One socket stays in both channels, as the bench's other sockets keep
	// its channels occupied: a subscribe joins a running ChannelActor.
	defer connect().Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		connect().Close()
	}
}

// readUntil reads c into buf from got until buf holds want, and returns how
// much it holds.
func readUntil(b *testing.B, c net.Conn, buf []byte, got int, want []byte) int {
	for !bytes.Contains(buf[:got], want) {
		if got == len(buf) {
			b.Fatalf("no %q in %q", want, buf)
		}
		n, err := c.Read(buf[got:])
		if err != nil {
			b.Fatalf("after %q: %v", buf[:got], err)
		}
		got += n
	}
	return got
}

// maskedText frames p as a client's text message, masked with a zero key
// (a client must mask; any key will do). p is at most 65,535 bytes.
func maskedText(p []byte) []byte {
	f := []byte{0x81}
	if len(p) < 126 {
		f = append(f, 0x80|byte(len(p)))
	} else {
		f = append(f, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	f = append(f, 0, 0, 0, 0)
	return append(f, p...)
}

// benchServer is parley serve's HTTP server on a loopback port, with the
// front unless PARLEY_BENCH_NO_FRONT is set; it returns its address.
func benchServer(b *testing.B) string {
	cfg, err := config.Load(nil, func(k string) (string, bool) {
		v, ok := map[string]string{
			"PARLEY_APP_ID": testkit.AppID, "PARLEY_APP_KEY": testkit.Key, "PARLEY_APP_SECRET": testkit.Secret,
			"PARLEY_DATA_DIR": b.TempDir(),
		}[k]
		return v, ok
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	node := actors.NewNode(cfg, log)
	b.Cleanup(node.Stop)
	api := New(cfg, node, log)
	srv := httptest.NewUnstartedServer(api.Handler())
	if os.Getenv("PARLEY_BENCH_NO_FRONT") == "" { // as parley serve runs it
		srv.Listener = api.Front(srv.Listener, 10*time.Second)
	}
	srv.Start()
	b.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// connectRequest is pusher-js's handshake request.
func connectRequest(addr string) []byte {
	return []byte("GET /app/" + testkit.Key + "?protocol=7&client=js&version=8.4.0&flash=false HTTP/1.1\r\n" +
		"Host: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"User-Agent: parley-bench\r\n\r\n")
}
