package cluster

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/cluster/clusterpb"
)

// TestForwardLogKeepsTheRecent: forwards are numbered from 1 in the order
// sent, every peer gets each, and since gives back the kept ones of a range,
// the oldest dropped once more than keepForwardCount are kept.
func TestForwardLogKeepsTheRecent(t *testing.T) {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }))
	var got atomic.Int64
	pid := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*clusterpb.Publish); ok {
			got.Add(1)
		}
	}))
	var peers []peer
	var l forwardLog
	publish := func(data string) *clusterpb.Publish {
		m := &clusterpb.Publish{AppId: "a", Channels: []string{"c"}, Name: "e", Data: data}
		l.send(system.Root, peers, "self", m)
		return m
	}
	// With no peer a forward is numbered and kept all the same: the peers
	// may come back (a partition) and ask for it.
	if m := publish("nobody"); m.Seq != 1 || l.last() != 1 || m.Node != "self" {
		t.Fatalf("with no peer: seq %d, last %d, node %q; want 1, 1, self", m.Seq, l.last(), m.Node)
	}
	peers = []peer{{id: "p1", pid: pid}, {id: "p2", pid: pid}}
	for i := 2; i <= 4; i++ {
		if m := publish("x"); m.Seq != uint64(i) || m.Node != "self" {
			t.Fatalf("forward %d numbered %s/%d", i, m.Node, m.Seq)
		}
	}
	waitUntil(t, "6 deliveries", func() bool { return got.Load() == 6 })

	fs, first := l.since(1, 9)
	if len(fs) != 4 || first != 1 || fs[0].(*clusterpb.Publish).Data != "nobody" || fs[1].(*clusterpb.Publish).Seq != 2 {
		t.Fatalf("since(1, 9): %d forwards from %d", len(fs), first)
	}
	if fs, first := l.since(6, 9); len(fs) != 0 || first != 10 {
		t.Fatalf("since(6, 9): %d forwards, first %d; want none, 10", len(fs), first)
	}

	for range keepForwardCount {
		publish("y")
	}
	last := l.last()
	fs, first = l.since(1, last)
	if want := uint64(keepForwardCount); uint64(len(fs)) != want || first != last-want+1 {
		t.Fatalf("after %d forwards: %d kept from %d, want %d from %d", last, len(fs), first, want, last-want+1)
	}
	for i, f := range fs {
		if s := f.(*clusterpb.Publish).Seq; s != first+uint64(i) {
			t.Fatalf("kept forward %d is numbered %d, want %d", i, s, first+uint64(i))
		}
	}
	if len(l.kept)-l.head != keepForwardCount || cap(l.kept) > 4*keepForwardCount {
		t.Fatalf("%d kept in a slice of %d (head %d)", len(l.kept)-l.head, cap(l.kept), l.head)
	}
}

// TestForwardLogForgetsTheOld: a forward older than keepForwards is not
// sent again.
func TestForwardLogForgetsTheOld(t *testing.T) {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }))
	pid := system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	one := []peer{{id: "p", pid: pid}}
	var l forwardLog
	for range 3 {
		l.send(system.Root, one, "self", &clusterpb.Terminate{AppId: "a", UserId: "u"})
	}
	l.kept[l.head].at = time.Now().Add(-keepForwards - time.Second) // forward 1 is old
	fs, first := l.since(1, 3)
	if len(fs) != 2 || first != 2 {
		t.Fatalf("since(1, 3): %d forwards from %d; want 2 from 2", len(fs), first)
	}
}
