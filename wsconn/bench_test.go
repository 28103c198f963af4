package wsconn_test

import (
	"io"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// BenchmarkEncodePublish is the once-per-publish cost: the JSON frame and its
// WebSocket framing, shared by every receiving socket.
func BenchmarkEncodePublish(b *testing.B) {
	data := strings.Repeat("x", 200)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = wsconn.NewPrepared(pusher.EncodeEvent("App\\Events\\MessageSent", "private-matter.42", data, ""))
	}
}

// BenchmarkDeliver is the per-delivery cost: queueing a prepared frame on a
// real socket and writing it out. It must not allocate per delivery.
func BenchmarkDeliver(b *testing.B) { benchmarkDeliver(b, (*wsconn.Conn).Send) }

// BenchmarkDeliverNow is the same with SendNow, which writes on the caller's
// goroutine while the client keeps up.
func BenchmarkDeliverNow(b *testing.B) { benchmarkDeliver(b, (*wsconn.Conn).SendNow) }

func benchmarkDeliver(b *testing.B, send func(*wsconn.Conn, *wsconn.Prepared) bool) {
	c, client := testkit.SocketPair(b, wsconn.Options{MaxPendingBytes: 1 << 34}) // the loop outruns the writer: measure, do not disconnect
	c.Serve(func([]byte) {}, func() {}, nil)
	frame := wsconn.NewPrepared(pusher.EncodeEvent("bench", "channel", strings.Repeat("x", 200), ""))
	testkit.BenchDeliver(b, c, client, frame, send)
	b.StopTimer()
	_, _ = io.Discard.Write(nil)
}

// BenchmarkReceive is the per-message cost of reading: a client's message
// arrives on a real socket, the poller hands it to a reader, which reads it,
// parses the frame, gives the message to the handler and re-arms the socket.
// The one allocation is the message, which the handler owns.
func BenchmarkReceive(b *testing.B) {
	c, client := testkit.SocketPair(b, wsconn.Options{})
	got := make(chan struct{}, 1)
	c.Serve(func(p []byte) { c.Done(len(p)); got <- struct{}{} }, func() {}, nil)
	msg := `{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"k:s"}}`
	frame := append([]byte{0x81, 0x80 | byte(len(msg)), 0, 0, 0, 0}, msg...) // masked with a zero key
	nc := client.NetConn()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := nc.Write(frame); err != nil {
			b.Fatal(err)
		}
		<-got
	}
}
