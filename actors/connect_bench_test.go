package actors

import (
	"bytes"
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// BenchmarkConnectSubscribe is a socket's life in the actors during a
// connect storm: its ConnectionActor is spawned as Node.Accept spawns it and
// sends connection_established, the socket subscribes to a public and to a
// private channel (the auth checked), and the actor stops when the socket
// ends. One socket stays in both channels, so each subscribe joins a running
// ChannelActor. The socket is a stub that counts frames; the messages are
// made before the timer starts.
func BenchmarkConnectSubscribe(b *testing.B) {
	cfg, err := config.Load(nil, func(k string) (string, bool) {
		v, ok := map[string]string{"PARLEY_APP_ID": testkit.AppID, "PARLEY_APP_KEY": testkit.Key, "PARLEY_APP_SECRET": testkit.Secret, "PARLEY_DATA_DIR": b.TempDir()}[k]
		return v, ok
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	n := NewNode(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer n.Stop()
	app := n.byID[testkit.AppID]
	sock := &countSocket{frames: make(chan struct{}, 16)}
	type socketMsgs struct {
		id              string
		public, private []byte
	}
	msgs := func(id string) socketMsgs {
		return socketMsgs{id, []byte(`{"event":"pusher:subscribe","data":{"channel":"bench-1"}}`),
			[]byte(`{"event":"pusher:subscribe","data":{"auth":"` + pusher.ChannelAuth(testkit.Key, testkit.Secret, id, "private-bench-1", "") + `","channel":"private-bench-1"}}`)}
	}
	live := func(m socketMsgs) (stop func()) {
		root := n.system.Root
		pid := root.Spawn(n.conns0)
		root.Send(pid, &connInitMsg{node: n, app: app, conn: sock, socketID: m.id})
		root.Send(pid, &inboundMsg{data: m.public})
		root.Send(pid, &inboundMsg{data: m.private})
		for range 3 {
			<-sock.frames
		}
		return func() { root.Send(pid, gone) }
	}
	defer live(msgs("0.0"))()
	all := make([]socketMsgs, b.N)
	for i := range all {
		all[i] = msgs("1." + strconv.Itoa(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range all {
		live(all[i])()
	}
}

// countSocket is a Socket that signals each frame sent to it; it fails at
// a refusal.
type countSocket struct{ frames chan struct{} }

func (s *countSocket) Send(p *wsconn.Prepared) bool {
	if bytes.Contains(p.Payload(), []byte("error")) {
		panic("refused: " + string(p.Payload()))
	}
	s.frames <- struct{}{}
	return true
}
func (s *countSocket) SendNow(p *wsconn.Prepared) bool                   { return s.Send(p) }
func (s *countSocket) Close(int, string)                                 {}
func (s *countSocket) CloseAfter(p *wsconn.Prepared, code int, r string) {}
func (s *countSocket) Done(int)                                          {}
