package persistence

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestReadWatermark runs the watermark checks on both databases.
func TestReadWatermark(t *testing.T) {
	suite := []storeCase{
		{"UpToWritesNoReceipts", testUpToWritesNoReceipts},
		{"FormerMembers", testWatermarkFormerMembers},
		{"ReadsRaceEachOther", testReadsRaceEachOther},
	}
	runSuite(t, suite)
}

// countRows counts a table's rows behind the Store's back.
func countRows(t *testing.T, s Store, table string) int {
	t.Helper()
	var n int
	if err := rawDB(s).Get(&n, `SELECT COUNT(*) FROM `+table); err != nil {
		t.Fatal(err)
	}
	return n
}

// testUpToWritesNoReceipts: reading a matter up to a message stores the
// move, not a row per message (the rows it writes do not grow with the
// backlog), and every message it covered shows the read at its time.
func testUpToWritesNoReceipts(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c")
	m := mustMatter(t, s, "m", a, b, c)
	var msgs []Message
	for i := range 300 {
		msgs = append(msgs, mustSend(t, s, m, []User{a, c}[i%2], fmt.Sprint(i)))
	}
	single := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	if _, _, err := s.MarkRead(ctx, msgs[10].ID, b.ID, single); err != nil {
		t.Fatal(err)
	}
	receipts := countRows(t, s, "message_reads")
	at := single.Add(time.Hour)
	r, err := s.MarkReadUpTo(ctx, m.ID, b.ID, msgs[299].ID, at)
	if err != nil || r.Marked != 299 || r.LastMarkedID != msgs[299].ID || fmt.Sprint(r.SenderIDs) != fmt.Sprint([]int64{a.ID, c.ID}) {
		t.Fatalf("MarkReadUpTo = %+v, %v", r, err)
	}
	if n := countRows(t, s, "message_reads"); n != receipts {
		t.Fatalf("reading 299 messages up to one added %d receipt rows", n-receipts)
	}
	if n := countRows(t, s, "read_ranges"); n != 1 {
		t.Fatalf("%d read ranges, want 1", n)
	}
	ids := make([]int64, len(msgs))
	for i, msg := range msgs {
		ids[i] = msg.ID
	}
	got, err := s.Readers(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i, msg := range msgs {
		want := []Reader{{UserID: b.ID, ReadAt: at}}
		if i == 10 {
			want[0].ReadAt = single // read on its own first
		}
		if !reflect.DeepEqual(got[msg.ID], want) {
			t.Fatalf("Readers(message %d) = %v, want %v", i, got[msg.ID], want)
		}
		if rr, created, err := s.MarkRead(ctx, msg.ID, b.ID, at.Add(time.Hour)); err != nil || created || !rr.ReadAt.Equal(want[0].ReadAt) {
			t.Fatalf("MarkRead(message %d) after reading up to it = %+v, %v, %v", i, rr, created, err)
		}
	}
	checkUnread(t, s, b, map[int64]int{m.ID: 0})
	checkUnread(t, s, c, map[int64]int{m.ID: 150})
}

// testWatermarkFormerMembers: a member's reads outlive their membership,
// as their receipts always did: a former member still shows as a reader,
// and a member added again finds read what they had read.
func testWatermarkFormerMembers(t *testing.T, s Store) {
	ctx := context.Background()
	a, b := mustUser(t, s, "a"), mustUser(t, s, "b")
	m := mustMatter(t, s, "m", a, b)
	m1, m2 := mustSend(t, s, m, a, "1"), mustSend(t, s, m, a, "2")
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	if _, err := s.MarkReadUpTo(ctx, m.ID, b.ID, m2.ID, at); err != nil {
		t.Fatal(err)
	}
	if removed, err := s.RemoveMember(ctx, m.ID, b.ID); err != nil || !removed {
		t.Fatalf("RemoveMember: %v %v", removed, err)
	}
	m3 := mustSend(t, s, m, a, "3")
	got, err := s.Readers(ctx, []int64{m1.ID, m2.ID, m3.ID})
	want := map[int64][]Reader{m1.ID: {{UserID: b.ID, ReadAt: at}}, m2.ID: {{UserID: b.ID, ReadAt: at}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Readers after b left = %v, %v; want %v", got, err, want)
	}
	if _, err := s.MarkReadUpTo(ctx, m.ID, b.ID, m3.ID, at); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MarkReadUpTo by a former member: %v", err)
	}
	if err := s.AddMember(ctx, m.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	checkUnread(t, s, b, map[int64]int{m.ID: 1})
	r, err := s.MarkReadUpTo(ctx, m.ID, b.ID, m3.ID, at.Add(time.Minute))
	if err != nil || r.Marked != 1 || r.LastMarkedID != m3.ID {
		t.Fatalf("MarkReadUpTo after coming back = %+v, %v", r, err)
	}
	checkUnread(t, s, b, map[int64]int{m.ID: 0})
}

// testReadsRaceEachOther: for each reader, single reads, reads up to a
// message and deletions race; each message leaves each reader's unread
// count exactly once (what the counters' arithmetic relies on), and the
// read versions returned are distinct.
func testReadsRaceEachOther(t *testing.T, s Store) {
	const readers, messages = 4, 60
	ctx := context.Background()
	us, m, msgs := raceFixture(t, s, readers, messages)
	var mu sync.Mutex
	removed := map[int64]int{}  // reader → messages taken out of their count
	seqs := map[int64][]int64{} // reader → read versions returned
	count := func(user int64, n int, seq int64) {
		mu.Lock()
		defer mu.Unlock()
		removed[user] += n
		seqs[user] = append(seqs[user], seq)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 2*readers+1)
	run := func(fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				errc <- err
			}
		}()
	}
	run(func() error { // deletes every third message, newest first
		for i := messages - 1; i >= 0; i -= 3 {
			del, err := s.DeleteMessage(ctx, msgs[i].ID, time.Now())
			if err != nil {
				return err
			}
			for _, u := range del.Unread {
				count(u.UserID, 1, u.ReadSeq)
			}
		}
		return nil
	})
	for ri, u := range us {
		run(func() error { // single reads, from the newest down
			for i := messages - 1; i >= 0; i -= 1 + ri%2 {
				r, created, err := s.MarkRead(ctx, msgs[i].ID, u.ID, time.Now())
				if errors.Is(err, ErrDeleted) {
					continue
				}
				if err != nil {
					return err
				}
				if created {
					count(u.ID, 1, r.ReadSeq)
				}
			}
			return nil
		})
		run(func() error { // reads up to a message, from the oldest up
			for i := ri; i < messages; i += 5 {
				r, err := s.MarkReadUpTo(ctx, m.ID, u.ID, msgs[i].ID, time.Now())
				if err != nil {
					return err
				}
				if r.Marked > 0 {
					count(u.ID, r.Marked, r.ReadSeq)
				}
			}
			// Then everything: by now each message is read or deleted.
			r, err := s.MarkReadUpTo(ctx, m.ID, u.ID, msgs[messages-1].ID, time.Now())
			if err == nil && r.Marked > 0 {
				count(u.ID, r.Marked, r.ReadSeq)
			}
			return err
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for _, u := range us {
		checkUnread(t, s, u, map[int64]int{m.ID: messages - removed[u.ID]})
		if removed[u.ID] != messages {
			t.Fatalf("%s: %d messages left the count, want %d", u.Name, removed[u.ID], messages)
		}
		got := slices.Sorted(slices.Values(seqs[u.ID]))
		if len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("%s: read versions %v repeat", u.Name, got)
		}
	}
}

// BenchmarkMarkReadUpTo: a member who has read nothing of a matter with a
// backlog of n messages from others reads it up to the newest (what opening
// a conversation does), a fresh member each iteration. Before migration
// 0007 this inserted n receipt rows; now it writes three rows and counts
// the n messages in the index.
func BenchmarkMarkReadUpTo(b *testing.B) {
	for _, be := range backends() {
		for _, n := range []int{1_000, 10_000, 50_000} {
			b.Run(fmt.Sprintf("%s/backlog=%d", be.name, n), func(b *testing.B) {
				s := newMigratedStore(b, be)
				ctx := context.Background()
				sender := mustUser(b, s, "sender")
				m := mustMatter(b, s, "m", sender)
				var last int64
				for i := 0; i < n; i += 256 {
					sends := make([]Send, min(256, n-i))
					for j := range sends {
						sends[j] = Send{MatterID: m.ID, SenderID: sender.ID, Body: "backlog", At: time.Now()}
					}
					for _, r := range s.SendMessages(ctx, sends) {
						if r.Err != nil {
							b.Fatal(r.Err)
						}
						last = r.Message.ID
					}
				}
				readers := make([]User, b.N)
				for i := range readers {
					var err error
					if readers[i], err = s.CreateUser(ctx, "r", fmt.Sprintf("r%d@example.com", i), "x"); err != nil {
						b.Fatal(err)
					}
					if err := s.AddMember(ctx, m.ID, readers[i].ID); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for _, u := range readers {
					r, err := s.MarkReadUpTo(ctx, m.ID, u.ID, last, time.Now())
					if err != nil || r.Marked != n {
						b.Fatalf("MarkReadUpTo = %+v, %v", r, err)
					}
				}
			})
		}
	}
}
