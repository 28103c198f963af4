package testkit

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/parley-chat/parley/wsconn"
)

// SocketPair upgrades one WebSocket on an httptest server with opts: the
// server's side, not served yet, and a gorilla client's. The server and the
// client are closed when tb's cleanup runs (for a benchmark: after each of its
// runs).
func SocketPair(tb testing.TB, opts wsconn.Options) (*wsconn.Conn, *websocket.Conn) {
	tb.Helper()
	conns := make(chan *wsconn.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := wsconn.Upgrade(w, r, opts)
		if err != nil {
			tb.Error(err)
			return
		}
		conns <- c
	}))
	tb.Cleanup(srv.Close)
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Close() })
	return <-conns, client
}

// BenchDeliver is the timed loop of a delivery benchmark: b.N times
// send(c, frame) on the served socket c while client reads every byte of
// them, then waits for the last. Allocations and bytes are reported.
func BenchDeliver(b *testing.B, c *wsconn.Conn, client *websocket.Conn, frame *wsconn.Prepared, send func(*wsconn.Conn, *wsconn.Prepared) bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc := client.NetConn()
		buf := make([]byte, 64<<10)
		want := int64(b.N) * int64(frame.Size())
		for got := int64(0); got < want; {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			got += int64(n)
		}
	}()
	b.ReportAllocs()
	b.SetBytes(int64(frame.Size()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !send(c, frame) {
			b.Fatal("send refused")
		}
	}
	<-done
}
