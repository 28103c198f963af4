package persistence

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

// TestReadStateAndDelete runs the read-state, matter-summary and deletion
// checks on both databases.
func TestReadStateAndDelete(t *testing.T) {
	suite := []storeCase{
		{"DeleteMessage", testDeleteMessage},
		{"DeleteRacesReads", testDeleteRacesReads},
		{"Readers", testReaders},
		{"MatterSummaries", testMatterSummaries},
	}
	runSuite(t, suite)
}

// readSeq is the member's read version in the matter, from UnreadState.
func readSeq(t *testing.T, s Store, u User, m Matter) int64 {
	t.Helper()
	st, err := s.UnreadState(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	return st[m.ID].ReadSeq
}

// testDeleteMessage: a deletion empties the text, keeps the row, leaves the
// unread count of exactly the members who had not read it (moving their read
// version), happens once, and bars edits and reads afterwards.
func testDeleteMessage(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c, d := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c"), mustUser(t, s, "d")
	m := mustMatter(t, s, "abc", a, b, c)
	a1 := mustSend(t, s, m, a, "a1")
	a2 := mustSend(t, s, m, a, "secret")
	mustSend(t, s, m, a, "a3")
	if _, _, err := s.MarkRead(ctx, a2.ID, b.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	checkUnread(t, s, b, map[int64]int{m.ID: 2})
	checkUnread(t, s, c, map[int64]int{m.ID: 3})
	seqB, seqC := readSeq(t, s, b, m), readSeq(t, s, c, m)

	at := time.Date(2026, 3, 4, 5, 6, 7, 891011000, time.UTC)
	del, err := s.DeleteMessage(ctx, a2.ID, at)
	if err != nil {
		t.Fatal(err)
	}
	want := a2
	want.Body, want.DeletedAt, want.UpdatedAt = "", &at, at
	if !del.Deleted || !reflect.DeepEqual(del.Message, want) {
		t.Fatalf("DeleteMessage = %+v, want deleted %+v", del, want)
	}
	// Only c had not read it: c's count drops, c's read version moves.
	if fmt.Sprint(del.Unread) != fmt.Sprint([]ReadVersion{{UserID: c.ID, ReadSeq: seqC + 1}}) {
		t.Fatalf("Unread = %+v, want c at %d", del.Unread, seqC+1)
	}
	checkUnread(t, s, b, map[int64]int{m.ID: 2})
	checkUnread(t, s, c, map[int64]int{m.ID: 2})
	if got := readSeq(t, s, b, m); got != seqB {
		t.Fatalf("b's read version moved to %d (was %d): b had read it", got, seqB)
	}
	got, err := s.MessageByID(ctx, a2.ID)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("MessageByID after delete = %+v, %v", got, err)
	}
	// It stays in the history, in its place.
	page, total, err := s.ListMessages(ctx, MessageQuery{MatterID: m.ID, Page: 1, Limit: 10})
	if err != nil || total != 3 || len(page) != 3 || !reflect.DeepEqual(page[1], want) || page[0].DeletedAt != nil {
		t.Fatalf("ListMessages = %+v, %d, %v", page, total, err)
	}

	// Again: nothing changes.
	again, err := s.DeleteMessage(ctx, a2.ID, at.Add(time.Hour))
	if err != nil || again.Deleted || len(again.Unread) != 0 || !reflect.DeepEqual(again.Message, want) {
		t.Fatalf("second DeleteMessage = %+v, %v", again, err)
	}
	checkUnread(t, s, c, map[int64]int{m.ID: 2})
	_, err = s.DeleteMessage(ctx, a2.ID+1000, at)
	wantErr(t, "delete missing", err, ErrNotFound)

	// Deleted is final: no edit, no read (not even by c, who has the
	// deletion's receipt), and nothing to count.
	_, err = s.UpdateMessage(ctx, a2.ID, "back", time.Now())
	wantErr(t, "edit deleted", err, ErrDeleted)
	_, err = s.UpdateMessage(ctx, a2.ID+1000, "back", time.Now())
	wantErr(t, "edit missing", err, ErrNotFound)
	for _, u := range []User{b, c} {
		_, _, err = s.MarkRead(ctx, a2.ID, u.ID, time.Now())
		wantErr(t, "read deleted", err, ErrDeleted)
	}
	_, _, err = s.MarkRead(ctx, a2.ID+1000, c.ID, time.Now())
	wantErr(t, "read missing", err, ErrNotFound)

	// A member who joins after the deletion never counts it and never
	// marks it: the counts and the marks agree.
	if err := s.AddMember(ctx, m.ID, d.ID); err != nil {
		t.Fatal(err)
	}
	checkUnread(t, s, d, map[int64]int{m.ID: 2})
	r, err := s.MarkReadUpTo(ctx, m.ID, d.ID, a2.ID, time.Now())
	if err != nil || r.Marked != 1 || r.LastMarkedID != a1.ID {
		t.Fatalf("MarkReadUpTo over a deleted message = %+v, %v", r, err)
	}
	checkUnread(t, s, d, map[int64]int{m.ID: 1})
	// c marks everything: the deleted one is not marked again.
	r, err = s.MarkReadUpTo(ctx, m.ID, c.ID, a2.ID+10, time.Now())
	if err != nil || r.Marked != 2 {
		t.Fatalf("c MarkReadUpTo = %+v, %v", r, err)
	}
	checkUnread(t, s, c, map[int64]int{m.ID: 0})

	// The sender's own message in a matter of one: nobody to tell.
	solo := mustMatter(t, s, "alone", a)
	own := mustSend(t, s, solo, a, "note")
	if del, err := s.DeleteMessage(ctx, own.ID, at); err != nil || !del.Deleted || len(del.Unread) != 0 {
		t.Fatalf("delete in a matter of one = %+v, %v", del, err)
	}
}

// raceFixture is the race tests' matter: a sender and the given number of
// readers, and the given number of messages from the sender.
func raceFixture(t *testing.T, s Store, readers, messages int) (us []User, m Matter, msgs []Message) {
	t.Helper()
	sender := mustUser(t, s, "sender")
	us = make([]User, readers)
	for i := range us {
		us[i] = mustUser(t, s, fmt.Sprint("r", i))
	}
	m = mustMatter(t, s, "race", append([]User{sender}, us...)...)
	msgs = make([]Message, messages)
	for i := range msgs {
		msgs[i] = mustSend(t, s, m, sender, fmt.Sprint(i))
	}
	return us, m, msgs
}

// testDeleteRacesReads: deletions racing single reads and reads up to a
// message take each message out of each member's unread count exactly once,
// which is what the counters' arithmetic relies on.
func testDeleteRacesReads(t *testing.T, s Store) {
	const readers, messages = 6, 40
	ctx := context.Background()
	us, m, msgs := raceFixture(t, s, readers, messages)
	var (
		mu      sync.Mutex
		removed = map[int64]int{} // reader → messages taken out of their count
	)
	count := func(user int64, n int) {
		mu.Lock()
		removed[user] += n
		mu.Unlock()
	}
	var wg sync.WaitGroup
	errc := make(chan error, readers+1)
	wg.Add(1)
	go func() { // deletes every other message, newest first
		defer wg.Done()
		for i := messages - 1; i >= 0; i -= 2 {
			del, err := s.DeleteMessage(ctx, msgs[i].ID, time.Now())
			if err != nil {
				errc <- err
				return
			}
			for _, u := range del.Unread {
				count(u.UserID, 1)
			}
		}
	}()
	for ri, u := range us {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range msgs {
				if ri%2 == 0 && i%7 == 6 {
					r, err := s.MarkReadUpTo(ctx, m.ID, u.ID, msgs[i].ID, time.Now())
					if err != nil {
						errc <- err
						return
					}
					count(u.ID, r.Marked)
					continue
				}
				_, created, err := s.MarkRead(ctx, msgs[i].ID, u.ID, time.Now())
				if errors.Is(err, ErrDeleted) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				if created {
					count(u.ID, 1)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for _, u := range us {
		checkUnread(t, s, u, map[int64]int{m.ID: messages - removed[u.ID]})
	}
	// Every message is read or deleted by now, for everyone.
	for _, u := range us {
		if removed[u.ID] != messages {
			t.Fatalf("%s: %d messages left the count, want %d", u.Name, removed[u.ID], messages)
		}
	}
}

// testReaders: one call returns every receipt of the messages asked about,
// oldest read first.
func testReaders(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c")
	m := mustMatter(t, s, "abc", a, b, c)
	m1, m2, m3 := mustSend(t, s, m, a, "1"), mustSend(t, s, m, a, "2"), mustSend(t, s, m, b, "3")
	t0 := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, r := range []struct {
		msg    Message
		reader User
		at     time.Time
	}{{m1, c, t0}, {m1, b, t0.Add(-time.Minute)}, {m2, c, t0}, {m3, a, t0.Add(time.Second)}} {
		if _, _, err := s.MarkRead(ctx, r.msg.ID, r.reader.ID, r.at); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Readers(ctx, []int64{m1.ID, m2.ID, m3.ID + 1000})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64][]Reader{
		m1.ID: {{UserID: b.ID, ReadAt: t0.Add(-time.Minute)}, {UserID: c.ID, ReadAt: t0}},
		m2.ID: {{UserID: c.ID, ReadAt: t0}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Readers = %v, want %v", got, want)
	}
	if got, err := s.Readers(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("Readers(nil) = %v, %v", got, err)
	}
}

// testMatterSummaries: the user's matters, newest activity first, each with
// its last message (deleted ones too) and every member.
func testMatterSummaries(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c := mustUser(t, s, "ann"), mustUser(t, s, "bob"), mustUser(t, s, "cat")
	quiet := mustMatter(t, s, "quiet", a, b)
	busy := mustMatter(t, s, "busy", c, a, b)
	empty := mustMatter(t, s, "empty", a)
	mustMatter(t, s, "not mine", b, c)
	base := time.Now().Add(-time.Hour)
	send := func(m Matter, from User, body string, at time.Time) Message {
		t.Helper()
		msg, err := s.CreateMessage(ctx, m.ID, from.ID, body, at)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	send(quiet, a, "q1", base)
	send(busy, b, "b1", base.Add(time.Minute))
	last := send(busy, c, "b2", base.Add(2*time.Minute))
	qlast := send(quiet, b, "q2", base.Add(3*time.Minute))

	got, err := s.MatterSummaries(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	names := func(us ...User) []MemberName {
		out := []MemberName{}
		for _, u := range us {
			out = append(out, MemberName{ID: u.ID, Name: u.Name})
		}
		return out
	}
	// empty has no message: its own creation (now) is its last activity.
	want := []MatterSummary{
		{Matter: empty, Members: names(a)},
		{Matter: quiet, LastMessage: &qlast, Members: names(a, b)},
		{Matter: busy, LastMessage: &last, Members: names(a, b, c)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MatterSummaries =\n%+v\nwant\n%+v", got, want)
	}

	// A deleted last message stays the last message, deleted.
	del, err := s.DeleteMessage(ctx, qlast.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.MatterSummaries(ctx, a.ID)
	if err != nil || len(got) != 3 || got[1].LastMessage == nil || !reflect.DeepEqual(*got[1].LastMessage, del.Message) {
		t.Fatalf("after deleting the last message: %+v, %v", got, err)
	}
	if got, err := s.MatterSummaries(ctx, a.ID+1000); err != nil || len(got) != 0 {
		t.Fatalf("unknown user: %v, %v", got, err)
	}
}
