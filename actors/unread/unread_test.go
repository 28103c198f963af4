package unread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/persistence/storetest"

	"github.com/asynkron/protoactor-go/actor"
	_ "github.com/lib/pq"
	"github.com/parley-chat/parley/persistence"
)

// backends returns fresh, migrated stores: the embedded database in a temp
// dir and PostgreSQL in a schema of its own (skipped locally when
// unreachable, fatal in CI).
func backends() map[string]func(t *testing.T) persistence.Store {
	return map[string]func(t *testing.T) persistence.Store{
		"sqlite":   func(t *testing.T) persistence.Store { return openStore(t, "", t.TempDir()) },
		"postgres": func(t *testing.T) persistence.Store { return openStore(t, storetest.PostgresURL(t), "") },
	}
}

func openStore(t *testing.T, databaseURL, dir string) persistence.Store {
	t.Helper()
	st, err := persistence.Open(context.Background(), databaseURL, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

// recorder keeps every published Counts per user, and when it came.
type recorder struct {
	mu  sync.Mutex
	got map[int64][]Counts
	at  map[int64][]time.Time
}

func (r *recorder) publish(c Counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got, r.at = map[int64][]Counts{}, map[int64][]time.Time{}
	}
	r.got[c.UserID] = append(r.got[c.UserID], c)
	r.at[c.UserID] = append(r.at[c.UserID], time.Now())
}

func (r *recorder) times(id int64) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.at[id]...)
}

// loadCounter is the real store, counting the counters' loads.
type loadCounter struct {
	persistence.Store
	mu    sync.Mutex
	loads map[int64]int
}

func (l *loadCounter) UnreadState(ctx context.Context, userID int64) (map[int64]persistence.MatterUnread, error) {
	l.mu.Lock()
	if l.loads == nil {
		l.loads = map[int64]int{}
	}
	l.loads[userID]++
	l.mu.Unlock()
	return l.Store.UnreadState(ctx, userID)
}

func (l *loadCounter) of(id int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loads[id]
}

func (r *recorder) last(id int64) (Counts, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.got[id]
	if len(l) == 0 {
		return Counts{}, 0
	}
	return l[len(l)-1], len(l)
}

// waitLast waits until the last published counts of id equal want.
func (r *recorder) waitLast(t *testing.T, id int64, want map[int64]int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, n := r.last(id)
		if n > 0 && maps.Equal(c.Matters, want) {
			total := 0
			for _, v := range want {
				total += v
			}
			if c.Total != total {
				t.Fatalf("total %d, want %d", c.Total, total)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("user %d: last published %v (%d events), want %v", id, c.Matters, n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type fixture struct {
	st      persistence.Store
	sys     *actor.ActorSystem
	rec     *recorder
	c       *Counters
	users   []persistence.User
	matters []persistence.Matter
}

func newFixture(t *testing.T, st persistence.Store, opts Options) *fixture {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	f := &fixture{st: st, sys: sys, rec: &recorder{}}
	f.c = Start(f.sys, st, f.rec.publish, opts)
	t.Cleanup(func() { f.c.Stop(); f.sys.Shutdown() })
	for i := range 3 {
		u, err := st.CreateUser(ctx, fmt.Sprint("u", i), fmt.Sprintf("u%d@example.com", i), "x")
		if err != nil {
			t.Fatal(err)
		}
		f.users = append(f.users, u)
	}
	for i := range 2 {
		m, err := st.CreateMatter(ctx, fmt.Sprint("m", i))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range f.users {
			if err := st.AddMember(ctx, m.ID, u.ID); err != nil {
				t.Fatal(err)
			}
		}
		f.matters = append(f.matters, m)
	}
	return f
}

func (f *fixture) truth(t *testing.T, userID int64) map[int64]int {
	t.Helper()
	m, err := f.st.UnreadCounts(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// send commits a message and then notifies the other members, as the API does.
func (f *fixture) send(t *testing.T, from persistence.User, m persistence.Matter) persistence.Message {
	t.Helper()
	msg, err := f.st.CreateMessage(context.Background(), m.ID, from.ID, "hi", time.Now())
	if err != nil {
		t.Error(err)
		return msg
	}
	for _, u := range f.users {
		if u.ID != from.ID {
			f.c.Incr(u.ID, m.ID, msg.ID)
		}
	}
	return msg
}

func (f *fixture) read(t *testing.T, reader persistence.User, msg persistence.Message) {
	t.Helper()
	r, created, err := f.st.MarkRead(context.Background(), msg.ID, reader.ID, time.Now())
	if err != nil {
		t.Error(err)
		return
	}
	if created {
		f.c.Read(reader.ID, msg.MatterID, r.ReadSeq, 1)
	}
}

func TestCountsFollowTheDatabase(t *testing.T) {
	f := newFixture(t, backends()["sqlite"](t), Options{})
	a, b := f.users[0], f.users[1]
	m0, m1 := f.matters[0], f.matters[1]

	got, err := f.c.Get(b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int64]int{m0.ID: 0, m1.ID: 0}; !maps.Equal(got.Matters, want) || got.Total != 0 {
		t.Fatalf("fresh counts %v", got)
	}
	if _, n := f.rec.last(b.ID); n != 0 {
		t.Fatalf("a plain Get published %d events", n)
	}

	msg := f.send(t, a, m0)
	f.send(t, a, m1)
	f.send(t, a, m1)
	f.rec.waitLast(t, b.ID, map[int64]int{m0.ID: 1, m1.ID: 2})
	got, _ = f.c.Get(b.ID)
	if got.Total != 3 || got.Matters[m1.ID] != 2 {
		t.Fatalf("Get %v", got)
	}
	if _, n := f.rec.last(a.ID); n != 0 {
		t.Fatalf("the sender's counter published %d events", n)
	}

	f.read(t, b, msg)
	f.rec.waitLast(t, b.ID, map[int64]int{m0.ID: 0, m1.ID: 2})
	f.read(t, b, msg) // already read: no notification, nothing changes
	if got, _ := f.c.Get(b.ID); !maps.Equal(got.Matters, f.truth(t, b.ID)) {
		t.Fatalf("Get %v, database %v", got.Matters, f.truth(t, b.ID))
	}
}

func TestIdleCounterStopsAndRestarts(t *testing.T) {
	f := newFixture(t, backends()["sqlite"](t), Options{IdleTimeout: 50 * time.Millisecond})
	a, b := f.users[0], f.users[1]
	f.send(t, a, f.matters[0])
	f.rec.waitLast(t, b.ID, map[int64]int{f.matters[0].ID: 1, f.matters[1].ID: 0})
	if n, _ := f.c.Active(); n != 2 {
		t.Fatalf("active counters %d, want 2 (the sender's was never needed)", n)
	}
	deadline := time.Now().Add(3 * time.Second)
	for n, _ := f.c.Active(); n != 0; n, _ = f.c.Active() {
		if time.Now().After(deadline) {
			t.Fatalf("%d counters still running after the idle timeout", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A change while stopped is in the database; the new counter loads it.
	if _, err := f.st.CreateMessage(context.Background(), f.matters[1].ID, a.ID, "x", time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := f.c.Get(b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int64]int{f.matters[0].ID: 1, f.matters[1].ID: 1}; !maps.Equal(got.Matters, want) {
		t.Fatalf("after restart %v, want %v", got.Matters, want)
	}
}

// TestConcurrentChanges: senders and readers at once; every counter's last
// event and Get equal the database.
func TestConcurrentChanges(t *testing.T) {
	for name, open := range backends() {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, open(t), Options{IdleTimeout: 20 * time.Millisecond}) // stops and restarts mid-run too
			var wg sync.WaitGroup
			sent := make(chan persistence.Message, 1000)
			for g := range 6 {
				wg.Go(func() {
					from := f.users[g%len(f.users)]
					for i := range 20 {
						sent <- f.send(t, from, f.matters[(g+i)%len(f.matters)])
					}
				})
			}
			var readers sync.WaitGroup
			for _, u := range f.users {
				readers.Go(func() {
					for msg := range sent {
						if msg.SenderID != u.ID && msg.ID%2 == 0 {
							f.read(t, u, msg)
						}
					}
				})
			}
			wg.Wait()
			close(sent)
			readers.Wait()
			for _, u := range f.users {
				want := f.truth(t, u.ID)
				f.rec.waitLast(t, u.ID, want)
				got, err := f.c.Get(u.ID)
				if err != nil || !maps.Equal(got.Matters, want) {
					t.Fatalf("user %d: Get %v %v, database %v", u.ID, got.Matters, err, want)
				}
			}
		})
	}
}

func TestDatabaseDown(t *testing.T) {
	st := backends()["sqlite"](t)
	f := newFixture(t, st, Options{AskTimeout: 2 * time.Second})
	st.Close()
	_, err := f.c.Get(f.users[0].ID)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get on a closed store: %v, want ErrUnavailable", err)
	}
}

// TestArithmetic: after the load at start, changes are applied without
// asking the database, once each however often they are delivered, and
// changes the load already saw are not counted again.
func TestArithmetic(t *testing.T) {
	for name, open := range backends() {
		t.Run(name, func(t *testing.T) {
			st := &loadCounter{Store: open(t)}
			f := newFixture(t, st, Options{Window: time.Millisecond, ReconcileEvery: time.Hour})
			a, b := f.users[0], f.users[1]
			m0, m1 := f.matters[0], f.matters[1]
			// Committed before b's counter starts, announced after: the
			// load has it, the notification must not add it again.
			early := f.send(t, a, m0)
			if _, err := f.c.Get(b.ID); err != nil {
				t.Fatal(err)
			}
			f.c.Incr(b.ID, m0.ID, early.ID)
			var msgs []persistence.Message
			for i := range 10 {
				msg := f.send(t, a, f.matters[i%2])
				f.c.Incr(b.ID, msg.MatterID, msg.ID) // delivered twice
				msgs = append(msgs, msg)
			}
			f.rec.waitLast(t, b.ID, map[int64]int{m0.ID: 6, m1.ID: 5})
			for _, msg := range msgs[:4] {
				r, created, err := f.st.MarkRead(context.Background(), msg.ID, b.ID, time.Now())
				if err != nil || !created {
					t.Fatal(err, created)
				}
				f.c.Read(b.ID, msg.MatterID, r.ReadSeq, 1)
				f.c.Read(b.ID, msg.MatterID, r.ReadSeq, 1) // twice
			}
			up, err := f.st.MarkReadUpTo(context.Background(), m1.ID, b.ID, msgs[7].ID, time.Now())
			if err != nil || up.Marked != 2 {
				t.Fatal(up, err)
			}
			f.c.Read(b.ID, m1.ID, up.ReadSeq, up.Marked)
			f.c.Read(b.ID, m1.ID, up.ReadSeq, up.Marked)
			want := f.truth(t, b.ID)
			if fmt.Sprint(want) != fmt.Sprint(map[int64]int{m0.ID: 4, m1.ID: 1}) {
				t.Fatalf("database %v", want)
			}
			f.rec.waitLast(t, b.ID, want)
			if got, err := f.c.Get(b.ID); err != nil || !maps.Equal(got.Matters, want) {
				t.Fatalf("Get %v %v, database %v", got.Matters, err, want)
			}
			if n := st.of(b.ID); n != 1 {
				t.Fatalf("%d loads for 22 changes, want the one at start", n)
			}
		})
	}
}

// TestReconcile: changes nobody announced (another process, an admin
// command) reach the counts and the user by the periodic reconciliation,
// and by Reload at once.
func TestReconcile(t *testing.T) {
	for name, open := range backends() {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, open(t), Options{ReconcileEvery: 100 * time.Millisecond})
			ctx := context.Background()
			a, b := f.users[0], f.users[1]
			m0, m1 := f.matters[0], f.matters[1]
			if _, err := f.c.Get(b.ID); err != nil {
				t.Fatal(err)
			}
			// Behind the counters' back: two messages, a read, a new matter.
			first, _ := f.st.CreateMessage(ctx, m0.ID, a.ID, "quiet", time.Now())
			f.st.CreateMessage(ctx, m1.ID, a.ID, "quiet", time.Now())
			if _, _, err := f.st.MarkRead(ctx, first.ID, b.ID, time.Now()); err != nil {
				t.Fatal(err)
			}
			m2, _ := f.st.CreateMatter(ctx, "m2")
			f.st.AddMember(ctx, m2.ID, b.ID)
			f.st.AddMember(ctx, m2.ID, a.ID)
			f.st.CreateMessage(ctx, m2.ID, a.ID, "quiet", time.Now())
			want := map[int64]int{m0.ID: 0, m1.ID: 1, m2.ID: 1}
			if got := f.truth(t, b.ID); !maps.Equal(got, want) {
				t.Fatalf("database %v", got)
			}
			f.rec.waitLast(t, b.ID, want)

			// Reload: at once, whatever ReconcileEvery says.
			rec := &recorder{}
			g := Start(f.sys, f.st, rec.publish, Options{ReconcileEvery: time.Hour})
			defer g.Stop()
			c := f.users[2]
			if _, err := g.Get(c.ID); err != nil {
				t.Fatal(err)
			}
			if err := f.st.AddMember(ctx, m2.ID, c.ID); err != nil {
				t.Fatal(err)
			}
			g.Reload(c.ID)
			rec.waitLast(t, c.ID, f.truth(t, c.ID))
		})
	}
}

// TestCoalescing: a burst of changes gives at most one publish per window
// per user, the last with the final counts.
func TestCoalescing(t *testing.T) {
	const window = 150 * time.Millisecond
	f := newFixture(t, backends()["sqlite"](t), Options{Window: window, ReconcileEvery: time.Hour})
	a, b := f.users[0], f.users[1]
	if _, err := f.c.Get(b.ID); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	for i := range 40 {
		f.send(t, a, f.matters[i%2])
	}
	elapsed := time.Since(began)
	want := f.truth(t, b.ID)
	f.rec.waitLast(t, b.ID, want)
	got, err := f.c.Settle(b.ID) // nothing is held back any more
	if err != nil || !maps.Equal(got.Matters, want) {
		t.Fatalf("Settle %v %v, database %v", got, err, want)
	}
	times := f.rec.times(b.ID)
	for i := 1; i < len(times); i++ {
		// The counter stamps its publish before the recorder does, so
		// allow the recorder's own jitter.
		if gap := times[i].Sub(times[i-1]); gap < window-5*time.Millisecond {
			t.Fatalf("publishes %d and %d %v apart, window %v", i-1, i, gap, window)
		}
	}
	if max := 2 + int(elapsed/window); len(times) > max {
		t.Fatalf("%d publishes for a %v burst, at most %d expected", len(times), elapsed, max)
	}
	t.Logf("40 messages in %v: %d publishes", elapsed, len(times))
}
