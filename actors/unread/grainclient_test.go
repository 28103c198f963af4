package unread

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/cluster/clusterpb"
	"github.com/parley-chat/parley/internal/protoactor"
	"github.com/parley-chat/parley/persistence"
)

// slowSource is every user's read state: one matter with nothing unread.
// The load of user slow waits until release is closed.
type slowSource struct {
	slow    int64
	matter  int64
	release chan struct{}
}

func (s *slowSource) UnreadState(ctx context.Context, userID int64) (map[int64]persistence.MatterUnread, error) {
	if userID == s.slow {
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return map[int64]persistence.MatterUnread{s.matter: {LastMessageID: 99}}, nil
}

// lockedBuffer is a log destination for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestGrainClientNotificationsDoNotWaitForEachOther: in a cluster, a grain
// that does not answer (its load is slow) holds back no other user's
// notification, and its own is sent once and applied once it answers, not
// sent again on a short deadline or reported lost.
func TestGrainClientNotificationsDoNotWaitForEachOther(t *testing.T) {
	const slow, quick, matter = 1, 2, 10
	src := &slowSource{slow: slow, matter: matter, release: make(chan struct{})}
	var rec recorder
	published := make(chan struct{}, 64)
	logs := &lockedBuffer{}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	counters := Start(system, src, func(c Counts) { rec.publish(c); published <- struct{}{} },
		Options{Window: time.Millisecond, QueryTimeout: time.Minute, NotifyTimeout: time.Minute,
			Log: slog.New(slog.NewTextHandler(logs, nil))})

	var toSlow atomic.Int32 // notifications that reached the slow user's grain
	kind := counters.Kind()
	kind.Props = kind.Props.Configure(actor.WithReceiverMiddleware(func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			if m, ok := env.Message.(*clusterpb.UnreadChanged); ok && m.UserId == slow {
				toSlow.Add(1)
			}
			next(c, env)
		}
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cl := cluster.New(system, protoactor.ClusterConfig("unread-test", "127.0.0.1", port, kind))
	cl.StartMember()
	defer cl.Shutdown(false)
	cl.MemberList.UpdateClusterTopology([]*cluster.Member{protoactor.Member(system.ID, "127.0.0.1:"+strconv.Itoa(port), []string{GrainKind})})
	counters.UseCluster(cl)

	counters.Incr(slow, matter, 100)  // its grain is stuck loading
	counters.Incr(quick, matter, 101) // must not wait for it
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case <-published:
			rec.mu.Lock()
			got := rec.got[quick]
			rec.mu.Unlock()
			done = len(got) > 0 && got[len(got)-1].Matters[matter] == 1
		case <-deadline:
			t.Fatal("the quick user's count was not published while another user's grain was slow")
		}
	}
	if n := toSlow.Load(); n > 1 {
		t.Fatalf("the slow grain was sent the notification %d times before the quick one went out: notifications wait for each other", n)
	}
	close(src.release)
	// The notification may still be on its way (its grain's lookup runs
	// beside the others'): Settle until it is counted.
	for until := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := counters.Settle(slow)
		if err != nil {
			t.Fatal(err)
		}
		if c.Matters[matter] == 1 {
			break
		}
		if time.Now().After(until) {
			t.Fatalf("slow user: counts %v after %d deliveries, want 1 unread", c.Matters, toSlow.Load())
		}
	}
	if n := toSlow.Load(); n != 1 {
		t.Fatalf("the slow grain got the notification %d times, want once", n)
	}
	if strings.Contains(logs.String(), "notification lost") {
		t.Fatalf("a notification was given up: %s", logs.String())
	}
}
