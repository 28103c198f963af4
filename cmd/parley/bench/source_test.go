package bench

import (
	"context"
	"net"
	"testing"
)

// Past sourceBlock dials, the WebSocket dialer moves to the next loopback
// source address, so that more sockets than one address has ephemeral
// ports can reach one server port.
func TestDialerSpreadsLoopbackSources(t *testing.T) {
	orig := sourceBlock
	sourceBlock = 2
	t.Cleanup(func() { sourceBlock = orig })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := newDialer(socketTimeout)
	var got []string
	for range 5 {
		c, err := d.NetDialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got = append(got, c.LocalAddr().(*net.TCPAddr).IP.String())
	}
	want := []string{"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.3"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("source addresses %v, want %v", got, want)
		}
	}
	// Not loopback: always the kernel's choice.
	if src := loopbackSource("192.0.2.1:80", 5); src != nil {
		t.Fatalf("non-loopback target got source %v", src)
	}
}
