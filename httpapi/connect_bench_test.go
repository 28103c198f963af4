package httpapi

import (
	"bytes"
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
	defer node.Stop()
	api := New(cfg, node, log)
	srv := httptest.NewUnstartedServer(api.Handler())
	if os.Getenv("PARLEY_BENCH_NO_FRONT") == "" { // as parley serve runs it
		srv.Listener = api.Front(srv.Listener, 10*time.Second)
	}
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	req := []byte("GET /app/" + testkit.Key + "?protocol=7&client=js&version=8.4.0&flash=false HTTP/1.1\r\n" +
		"Host: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"User-Agent: parley-bench\r\n\r\n")
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
