package actors

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// fakeSocket is a Socket that keeps what is sent to it, for actor tests in
// which a real connection adds nothing.
type fakeSocket struct {
	mu     sync.Mutex
	frames []pusher.Message
	closed int
	got    chan struct{}
}

func newFakeSocket() *fakeSocket { return &fakeSocket{got: make(chan struct{}, 1024)} }

func (f *fakeSocket) Send(p *wsconn.Prepared) bool {
	var m pusher.Message
	_ = json.Unmarshal(p.Payload(), &m)
	f.mu.Lock()
	f.frames = append(f.frames, m)
	f.mu.Unlock()
	f.got <- struct{}{}
	return true
}
func (f *fakeSocket) SendNow(p *wsconn.Prepared) bool { return f.Send(p) }
func (f *fakeSocket) Close(code int, _ string) {
	f.mu.Lock()
	f.closed = code
	f.mu.Unlock()
}
func (f *fakeSocket) CloseAfter(p *wsconn.Prepared, code int, reason string) {
	f.Send(p)
	f.Close(code, reason)
}
func (f *fakeSocket) Done(int) {}

// next waits for the next message sent to the socket.
func (f *fakeSocket) next(t *testing.T) pusher.Message {
	t.Helper()
	select {
	case <-f.got:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing sent to the socket within 5 s")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.frames[0]
	f.frames = f.frames[1:]
	return m
}

// TestConnectionActorOnAFakeSocket: a ConnectionActor speaks the protocol
// to whatever Socket it is given: connection_established, then a
// subscription and a publish to it.
func TestConnectionActorOnAFakeSocket(t *testing.T) {
	n := startNode(t, nil).Node
	s := newFakeSocket()
	pid := n.system.Root.Spawn(n.conns0)
	n.system.Root.Send(pid, &connInitMsg{node: n, app: n.byID[testkit.AppID], conn: s, socketID: "1.1"})
	if m := s.next(t); m.Event != "pusher:connection_established" {
		t.Fatalf("first message %+v", m)
	}
	n.system.Root.Send(pid, &inboundMsg{data: []byte(`{"event":"pusher:subscribe","data":{"channel":"news"}}`)})
	if m := s.next(t); m.Event != "pusher_internal:subscription_succeeded" || m.Channel != "news" {
		t.Fatalf("after subscribe %+v", m)
	}
	if err := n.Publish(Event{AppID: testkit.AppID, Channels: []string{"news"}, Name: "flash", Data: "x"}); err != nil {
		t.Fatal(err)
	}
	if m := s.next(t); m.Event != "flash" || m.Channel != "news" {
		t.Fatalf("publish %+v", m)
	}
}
