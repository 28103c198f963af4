package wsconn

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/parley-chat/parley/pusher"
)

// BenchmarkEncodePublish is the once-per-publish cost: the JSON frame and its
// WebSocket framing, shared by every receiving socket.
func BenchmarkEncodePublish(b *testing.B) {
	data := strings.Repeat("x", 200)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = NewPrepared(pusher.EncodeEvent("App\\Events\\MessageSent", "private-matter.42", data, ""))
	}
}

// BenchmarkDeliver is the per-delivery cost: queueing a prepared frame on a
// real socket and writing it out. It must not allocate per delivery.
func BenchmarkDeliver(b *testing.B) { benchmarkDeliver(b, (*Conn).Send) }

// BenchmarkDeliverNow is the same with SendNow, which writes on the caller's
// goroutine while the client keeps up.
func BenchmarkDeliverNow(b *testing.B) { benchmarkDeliver(b, (*Conn).SendNow) }

func benchmarkDeliver(b *testing.B, send func(*Conn, *Prepared) bool) {
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, Options{MaxPendingBytes: 1 << 34}) // the loop outruns the writer: measure, do not disconnect
		if err != nil {
			b.Error(err)
			return
		}
		conns <- c
	}))
	defer srv.Close()
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	c := <-conns
	c.Serve(func([]byte) {}, func() {}, nil)
	frame := NewPrepared(pusher.EncodeEvent("bench", "channel", strings.Repeat("x", 200), ""))
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
	b.StopTimer()
	_, _ = io.Discard.Write(nil)
}

// BenchmarkReceive is the per-message cost of reading: a client's message
// arrives on a real socket, the poller hands it to a reader, which reads it,
// parses the frame, gives the message to the handler and re-arms the socket.
// The one allocation is the message, which the handler owns.
func BenchmarkReceive(b *testing.B) {
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, Options{})
		if err != nil {
			b.Error(err)
			return
		}
		conns <- c
	}))
	defer srv.Close()
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	c := <-conns
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
