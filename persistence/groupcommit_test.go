package persistence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// gatedStore is a real store whose SendMessages waits for the gate once, so
// a test can queue sends behind a group that is still committing.
type gatedStore struct {
	Store
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
	groups  groupCounts
}

func (g *gatedStore) SendMessages(ctx context.Context, sends []Send) []SendResult {
	g.once.Do(func() {
		close(g.entered)
		<-g.gate
	})
	g.groups.add(len(sends))
	return g.Store.SendMessages(ctx, sends)
}

// groupCounts counts the groups a Sender commits: transactions, the sends in
// them, the most in one.
type groupCounts struct {
	mu                     sync.Mutex
	Groups, Sends, Largest int
}

func (c *groupCounts) add(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Groups++
	c.Sends += n
	c.Largest = max(c.Largest, n)
}

func (c *groupCounts) get() (groups, sends, largest int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Groups, c.Sends, c.Largest
}

// countingStore counts the groups committed through it.
type countingStore struct {
	Store
	groups groupCounts
}

func (c *countingStore) SendMessages(ctx context.Context, sends []Send) []SendResult {
	c.groups.add(len(sends))
	return c.Store.SendMessages(ctx, sends)
}

// TestSenderGroupsAndIsolates: sends queued while a group commits form the
// next group, one transaction; a send the database refuses fails alone;
// hooks run in commit order after the commit.
func TestSenderGroupsAndIsolates(t *testing.T) {
	onEachBackend(t, func(t *testing.T, b backend, s Store) {
		ann := mustUser(t, s, "ann")
		dan := mustUser(t, s, "dan")
		m := mustMatter(t, s, "m", ann)
		addPoison(t, s, b.name)
		gs := &gatedStore{Store: s, gate: make(chan struct{}), entered: make(chan struct{})}
		g := NewSender(gs, SenderOptions{})
		defer g.Close()

		var hookMu sync.Mutex
		var hooked []int64
		hook := func(r SendResult) {
			hookMu.Lock()
			hooked = append(hooked, r.Message.ID)
			hookMu.Unlock()
		}
		firstDone := make(chan SendResult)
		go func() {
			firstDone <- g.Send(Send{MatterID: m.ID, SenderID: ann.ID, Body: "first", At: time.Now()}, hook)
		}()
		<-gs.entered // the first group is committing; the rest queue behind it

		const n = 20
		bodies := make([]string, n)
		for i := range bodies {
			bodies[i] = fmt.Sprint("m", i)
		}
		bodies[7] = "poison"
		sends := make([]Send, n)
		for i := range sends {
			sends[i] = Send{MatterID: m.ID, SenderID: ann.ID, Body: bodies[i], ClientMessageID: fmt.Sprint("k", i), At: time.Now()}
		}
		sends[11].SenderID = dan.ID // not a member: refused, not failed
		res := make([]SendResult, n)
		var wg sync.WaitGroup
		for i := range sends {
			wg.Go(func() { res[i] = g.Send(sends[i], hook) })
		}
		for len(g.lanes[0].queue) < n {
			time.Sleep(time.Millisecond)
		}
		close(gs.gate)
		wg.Wait()
		if r := <-firstDone; r.Err != nil {
			t.Fatal(r.Err)
		}
		if groups, total, largest := gs.groups.get(); groups != 2 || total != n+1 || largest != n {
			t.Fatalf("%d groups, %d sends, largest %d: want the %d queued sends in one group after the first", groups, total, largest, n)
		}
		var ids []int64
		for i, r := range res {
			switch i {
			case 7:
				if r.Err == nil {
					t.Fatalf("the poisoned send was stored: %+v", r)
				}
			case 11:
				if !errorsIs(r.Err, ErrForbidden) {
					t.Fatalf("non-member: %v", r.Err)
				}
			default:
				if r.Err != nil || r.Message.Body != bodies[i] {
					t.Fatalf("send %d: %+v", i, r)
				}
				ids = append(ids, r.Message.ID)
			}
		}
		hookMu.Lock()
		defer hookMu.Unlock()
		if len(hooked) != len(ids)+1 || !slices.IsSorted(hooked) {
			t.Fatalf("hooks ran for %v, want %d in id order", hooked, len(ids)+1)
		}
		msgs, total, err := s.ListMessages(context.Background(), MessageQuery{MatterID: m.ID, Page: 1, Limit: 100})
		if err != nil || total != n-1 {
			t.Fatalf("%d stored (%v), want %d", total, err, n-1)
		}
		slices.Reverse(msgs) // newest first
		for i, msg := range msgs {
			if msg.ID != hooked[i] {
				t.Fatalf("stored ids %v..., hooked %v", msg.ID, hooked)
			}
		}
	})
}

// TestSenderConcurrent: many goroutines send into three matters at once,
// over two lanes, while a reader catches up with after_id in the first:
// every acknowledged message is in the database, each matter's ids grow in
// commit (hook) order, and the catch-up reader sees every message of its
// matter exactly once, in order.
func TestSenderConcurrent(t *testing.T) {
	onEachBackend(t, func(t *testing.T, _ backend, s Store) {
		var users []User
		for i := range 4 {
			users = append(users, mustUser(t, s, fmt.Sprint("u", i)))
		}
		var matters []Matter
		for i := range 3 {
			matters = append(matters, mustMatter(t, s, fmt.Sprint("busy", i), users...))
		}
		// The reader's cursor starts at a message from before (after_id
		// must be positive).
		start := mustSend(t, s, matters[0], users[0], "before").ID
		cs := &countingStore{Store: s}
		g := NewSender(cs, SenderOptions{Lanes: 2})
		defer g.Close()
		var hookMu sync.Mutex
		hooked := map[int64][]int64{}
		const senders, each = 18, 20
		acked := make(chan Message, senders*each)
		done := make(chan struct{})
		var wg sync.WaitGroup
		for w := range senders {
			wg.Go(func() {
				for i := range each {
					r := g.Send(Send{MatterID: matters[w%3].ID, SenderID: users[w%len(users)].ID, Body: fmt.Sprint(w, "-", i), At: time.Now()},
						func(r SendResult) {
							hookMu.Lock()
							hooked[r.Message.MatterID] = append(hooked[r.Message.MatterID], r.Message.ID)
							hookMu.Unlock()
						})
					if r.Err != nil {
						t.Error(r.Err)
						return
					}
					acked <- r.Message
				}
			})
		}
		var seen []int64
		readerDone := make(chan error)
		go func() {
			cursor := start
			for {
				finished := false
				select {
				case <-done:
					finished = true
				default:
				}
				msgs, _, err := s.ListMessages(context.Background(), MessageQuery{MatterID: matters[0].ID, AfterID: cursor, Limit: 100, Page: 1})
				if err != nil {
					readerDone <- err
					return
				}
				for _, msg := range msgs {
					seen = append(seen, msg.ID)
					cursor = msg.ID
				}
				if finished && len(msgs) == 0 {
					readerDone <- nil
					return
				}
			}
		}()
		wg.Wait()
		close(done)
		if err := <-readerDone; err != nil {
			t.Fatal(err)
		}
		close(acked)
		ids := map[int64][]int64{}
		n := 0
		for m := range acked {
			ids[m.MatterID] = append(ids[m.MatterID], m.ID)
			n++
		}
		if n != senders*each {
			t.Fatalf("%d acknowledged", n)
		}
		for i, m := range matters {
			slices.Sort(ids[m.ID])
			if !slices.Equal(hooked[m.ID], ids[m.ID]) {
				t.Fatalf("matter %d: hooks ran out of id order", i)
			}
			_, total, err := s.ListMessages(context.Background(), MessageQuery{MatterID: m.ID, Page: 1, Limit: 1})
			if want := senders * each / 3; err != nil || total != want+map[bool]int{true: 1}[i == 0] {
				t.Fatalf("matter %d: %d stored (%v), want %d", i, total, err, want)
			}
		}
		if !slices.Equal(seen, ids[matters[0].ID]) {
			t.Fatalf("the after_id reader saw %d messages, %d were acknowledged (first differences: %v)", len(seen), len(ids[matters[0].ID]), firstDiff(seen, ids[matters[0].ID]))
		}
		groups, total, largest := cs.groups.get()
		t.Logf("%d sends in %d groups (largest %d)", total, groups, largest)
	})
}

func firstDiff(a, b []int64) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("at %d: %d vs %d", i, a[i], b[i])
		}
	}
	return "one is a prefix of the other"
}

func errorsIs(err, target error) bool { return err != nil && errors.Is(err, target) }

// addPoison makes the database refuse any message whose body is "poison".
func addPoison(t *testing.T, s Store, dialect string) {
	t.Helper()
	db := rawDB(s)
	if dialect == "postgres" {
		db.MustExec(`CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN
			IF NEW.body = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`)
		db.MustExec(`CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison()`)
	} else {
		db.MustExec(`CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.body = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END`)
	}
}

// TestSenderBusyAndClose: past Queue waiting sends, Send refuses at once
// with ErrBusy (nothing stored); Close stores what is queued, and later
// sends get ErrBusy.
func TestSenderBusyAndClose(t *testing.T) {
	s := newMigratedStore(t, backends()[0])
	ann, m := annsMatter(t, s)
	gs := &gatedStore{Store: s, gate: make(chan struct{}), entered: make(chan struct{})}
	g := NewSender(gs, SenderOptions{Queue: 1})
	send := func(body string) SendResult {
		return g.Send(Send{MatterID: m.ID, SenderID: ann.ID, Body: body, At: time.Now()}, nil)
	}
	first, queued := make(chan SendResult), make(chan SendResult)
	go func() { first <- send("first") }()
	<-gs.entered // committing, the queue empty
	go func() { queued <- send("queued") }()
	for len(g.lanes[0].queue) < 1 {
		time.Sleep(time.Millisecond)
	}
	if r := send("refused"); !errors.Is(r.Err, ErrBusy) {
		t.Fatalf("a send past the queue: %+v", r)
	}
	closed := make(chan struct{})
	go func() { g.Close(); close(closed) }()
	close(gs.gate)
	<-closed
	for _, ch := range []chan SendResult{first, queued} {
		if r := <-ch; r.Err != nil {
			t.Fatalf("queued send: %v", r.Err)
		}
	}
	if r := send("late"); !errors.Is(r.Err, ErrBusy) {
		t.Fatalf("a send after Close: %+v", r)
	}
	if _, total, err := s.ListMessages(context.Background(), MessageQuery{MatterID: m.ID, Page: 1, Limit: 10}); err != nil || total != 2 {
		t.Fatalf("%d stored (%v), want the 2 accepted", total, err)
	}
}
