package persistence

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

// migrateTo applies the migrations up to version only, as a store of that
// release would have.
func migrateTo(t *testing.T, s Store, version int) {
	t.Helper()
	var ss *sqlStore
	switch s := s.(type) {
	case *sqliteStore:
		ss = &s.sqlStore
	case *pgStore:
		ss = &s.sqlStore
	}
	all := ss.migrations
	ss.migrations = slices.DeleteFunc(slices.Clone(all), func(m migration) bool { return m.version > version })
	defer func() { ss.migrations = all }()
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate to %d: %v", version, err)
	}
}

// oldReads writes read state the way Parley did before migration 0007,
// straight to the old schema: a receipt row per message read
// (message_reads), members.read_up_to and read_seq.
type oldReads struct {
	t  *testing.T
	db *sqlx.DB
}

func (o oldReads) exec(q string, args ...any) int64 {
	o.t.Helper()
	res, err := o.db.Exec(o.db.Rebind(q), args...)
	if err != nil {
		o.t.Fatal(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		o.t.Fatal(err)
	}
	return n
}

// read is the old MarkRead: a receipt unless there is one or the message
// was deleted, and the reader's read_seq if they are a member.
func (o oldReads) read(msg Message, u User, at time.Time) {
	o.t.Helper()
	n := o.exec(`INSERT INTO message_reads (message_id, user_id, read_at)
		SELECT id, ?, ? FROM messages WHERE id = ? AND deleted_at IS NULL ON CONFLICT DO NOTHING`, u.ID, dbTime(at), msg.ID)
	if n == 1 {
		o.exec(`UPDATE members SET read_seq = read_seq + 1 WHERE matter_id = ? AND user_id = ?`, msg.MatterID, u.ID)
	}
}

// upTo is the old MarkReadUpTo: a receipt for every message from others
// after read_up_to and up to upTo, not deleted and without one, all at
// the same time; read_up_to moves to the newest message up to upTo.
func (o oldReads) upTo(m Matter, u User, upTo Message, at time.Time) {
	o.t.Helper()
	n := o.exec(`INSERT INTO message_reads (message_id, user_id, read_at)
		SELECT m.id, ?, ? FROM messages m JOIN members mm ON mm.matter_id = m.matter_id AND mm.user_id = ?
		WHERE m.matter_id = ? AND m.id > mm.read_up_to AND m.id <= ? AND m.sender_id <> ? AND m.deleted_at IS NULL
		ON CONFLICT DO NOTHING`, u.ID, dbTime(at), u.ID, m.ID, upTo.ID, u.ID)
	bump := 0
	if n > 0 {
		bump = 1
	}
	o.exec(`UPDATE members SET read_seq = read_seq + ?,
		read_up_to = (SELECT MAX(id) FROM messages WHERE matter_id = ? AND id <= ?)
		WHERE matter_id = ? AND user_id = ?`, bump, m.ID, upTo.ID, m.ID, u.ID)
}

// remove is the old DeleteMessage: the message deleted, and a receipt at
// the deletion time for every member (but the sender) without one.
func (o oldReads) remove(msg Message, at time.Time) {
	o.t.Helper()
	o.exec(`UPDATE messages SET body = '', deleted_at = ?, updated_at = ? WHERE id = ?`, dbTime(at), dbTime(at), msg.ID)
	o.exec(`UPDATE members SET read_seq = read_seq + 1 WHERE matter_id = ? AND user_id <> ?
		AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = ? AND r.user_id = members.user_id)`, msg.MatterID, msg.SenderID, msg.ID)
	o.exec(`INSERT INTO message_reads (message_id, user_id, read_at)
		SELECT ?, user_id, ? FROM members WHERE matter_id = ? AND user_id <> ? ON CONFLICT DO NOTHING`, msg.ID, dbTime(at), msg.MatterID, msg.SenderID)
}

// oldAnswers is what the old statements answered about the read state.
type oldAnswers struct {
	readers map[int64][]Reader      // Readers of every message
	unread  map[int64]map[int64]int // UnreadCounts per user
	state   map[int64]map[int64]MatterUnread
	senders map[int64]map[int64][]int64 // per user, matter: senders of their unread messages
}

// answersBefore asks the old schema with the old statements.
func answersBefore(t *testing.T, s Store, users []User, msgIDs []int64) oldAnswers {
	t.Helper()
	db := rawDB(s)
	out := oldAnswers{readers: map[int64][]Reader{}, unread: map[int64]map[int64]int{}, state: map[int64]map[int64]MatterUnread{}, senders: map[int64]map[int64][]int64{}}
	for _, id := range msgIDs {
		var rs []Reader
		if err := db.Select(&rs, db.Rebind(`SELECT user_id, read_at FROM message_reads WHERE message_id = ? ORDER BY read_at, user_id`), id); err != nil {
			t.Fatal(err)
		}
		for i := range rs {
			rs[i].ReadAt = rs[i].ReadAt.UTC()
		}
		if len(rs) > 0 {
			out.readers[id] = rs
		}
	}
	unreadOf := `FROM members mm JOIN messages m ON m.matter_id = mm.matter_id AND m.sender_id <> mm.user_id AND m.deleted_at IS NULL
		AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = mm.user_id)
		WHERE mm.user_id = ?`
	for _, u := range users {
		var rows []struct {
			MatterID int64 `db:"matter_id"`
			Unread   int   `db:"unread"`
			Last     int64 `db:"last_id"`
			Seq      int64 `db:"read_seq"`
			UpTo     int64 `db:"read_up_to"`
		}
		if err := db.Select(&rows, db.Rebind(`SELECT mm.matter_id, mm.read_seq, mm.read_up_to,
			(SELECT COUNT(*) `+unreadOf+` AND mm.matter_id = x.matter_id) AS unread,
			COALESCE((SELECT MAX(id) FROM messages WHERE matter_id = x.matter_id), 0) AS last_id
			FROM members x JOIN members mm ON mm.matter_id = x.matter_id AND mm.user_id = x.user_id WHERE x.user_id = ?`), u.ID, u.ID); err != nil {
			t.Fatal(err)
		}
		out.unread[u.ID], out.state[u.ID], out.senders[u.ID] = map[int64]int{}, map[int64]MatterUnread{}, map[int64][]int64{}
		for _, r := range rows {
			out.unread[u.ID][r.MatterID] = r.Unread
			out.state[u.ID][r.MatterID] = MatterUnread{Unread: r.Unread, LastMessageID: r.Last, ReadSeq: r.Seq}
			senders := []int64{}
			if err := db.Select(&senders, db.Rebind(`SELECT DISTINCT m.sender_id `+unreadOf+` AND mm.matter_id = ? ORDER BY m.sender_id`), u.ID, r.MatterID); err != nil {
				t.Fatal(err)
			}
			out.senders[u.ID][r.MatterID] = senders
		}
	}
	return out
}

// TestMigrateReadWatermark: read state written by the old code (receipt
// rows) reads the same after migration 0007 turned what it could into
// watermarks and ranges: every message's readers and read times, every
// unread count, a single read of what was read, a read up to the end.
func TestMigrateReadWatermark(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			dbURL, dir := b.newDB(t)
			s := openStore(t, dbURL, dir)
			migrateTo(t, s, 6)
			users, msgIDs, matters := oldReadHistory(t, s)
			before := answersBefore(t, s, users, msgIDs)
			receipts := countRows(t, s, "message_reads")

			if err := s.Migrate(context.Background()); err != nil {
				t.Fatalf("migrate to 0007: %v", err)
			}
			if ranges, left := countRows(t, s, "read_ranges"), countRows(t, s, "message_reads"); ranges != 6 || left != receipts-21 {
				t.Errorf("%d receipts became %d ranges and %d receipts; want 6 ranges for 21 of them", receipts, ranges, left)
			}
			checkAnswersAfter(t, s, users, msgIDs, matters, before)
		})
	}
}

// oldReadHistory makes two matters and reads in them with the old code;
// it returns every user, every message id and the matters.
func oldReadHistory(t *testing.T, s Store) ([]User, []int64, []Matter) {
	ctx := context.Background()
	o := oldReads{t: t, db: rawDB(s)}
	a, b, c, d, e, f := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c"), mustUser(t, s, "d"), mustUser(t, s, "e"), mustUser(t, s, "f")
	m, n := mustMatter(t, s, "m", a, b, c, f), mustMatter(t, s, "n", a, b)
	var ms []Message // ms[i] is message i+1 of m
	for _, u := range []User{a, c, b, a, a, c, a, a, b, a, c, a} {
		ms = append(ms, mustSend(t, s, m, u, fmt.Sprint("m", len(ms)+1)))
	}
	var ns []Message
	for range 3 {
		ns = append(ns, mustSend(t, s, n, a, "n"))
	}
	at := func(minute int) time.Time { return time.Date(2026, 3, 1, 10, minute, 0, 123000, time.UTC) }
	o.read(ms[1], b, at(1))     // b reads m2 on its own,
	o.upTo(m, b, ms[4], at(2))  // then up to m5: m1, m4, m5 at 2 (m2 kept, m3 is b's)
	o.upTo(m, c, ms[7], at(3))  // c up to m8: one run of six at 3
	o.upTo(m, f, ms[3], at(4))  // f up to m4, then leaves: a former member's receipts
	o.remove(ms[6], at(5))      // m7 deleted: b had not read it (a receipt at 5)
	o.upTo(m, b, ms[9], at(6))  // b up to m10: m6, m8, m10 at 6 (m7 deleted, m9 b's)
	o.read(ms[5], a, at(7))     // a reads m6 and m11 on their own (no watermark)
	o.read(ms[10], a, at(8))    //
	o.read(ms[9], c, at(9))     // c reads m10 and m9 at the same time: a run of
	o.read(ms[8], c, at(9))     // two above its read_up_to
	o.read(ms[0], a, at(10))    // a reads its own m1 (the store allowed it)
	o.read(ms[0], e, at(11))    // e, no member, reads m1
	o.upTo(n, b, ns[2], at(12)) // b up to n3 in n
	if _, err := s.RemoveMember(ctx, m.ID, f.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, m.ID, d.ID); err != nil { // d joins late and reads up to m6
		t.Fatal(err)
	}
	o.upTo(m, d, ms[5], at(13))
	var ids []int64
	for _, msg := range append(ms, ns...) {
		ids = append(ids, msg.ID)
	}
	return []User{a, b, c, d, e, f}, ids, []Matter{m, n}
}

// checkAnswersAfter compares the new store's answers with the old ones.
func checkAnswersAfter(t *testing.T, s Store, users []User, msgIDs []int64, matters []Matter, before oldAnswers) {
	t.Helper()
	ctx := context.Background()
	got, err := s.Readers(ctx, msgIDs)
	if err != nil || !reflect.DeepEqual(got, before.readers) {
		t.Fatalf("Readers after = %v, %v\nbefore = %v", got, err, before.readers)
	}
	for _, u := range users {
		checkUnread(t, s, u, before.unread[u.ID])
		state, err := s.UnreadState(ctx, u.ID)
		if err != nil || !reflect.DeepEqual(state, before.state[u.ID]) {
			t.Fatalf("UnreadState(%s) after = %v, %v; before %v", u.Name, state, err, before.state[u.ID])
		}
	}
	// A single read of a message read before answers its read time.
	for id, rs := range before.readers {
		for _, r := range rs {
			rr, created, err := s.MarkRead(ctx, id, r.UserID, time.Now())
			if (err != nil && !isDeleted(err)) || created || (err == nil && !rr.ReadAt.Equal(r.ReadAt)) {
				t.Fatalf("MarkRead(%d by %d) = %+v, %v, %v; read at %v before", id, r.UserID, rr, created, err, r.ReadAt)
			}
		}
	}
	// Reading up to the end marks what was unread, from those senders.
	for _, u := range users {
		for _, m := range matters {
			n, member := before.unread[u.ID][m.ID]
			if !member {
				continue
			}
			r, err := s.MarkReadUpTo(ctx, m.ID, u.ID, msgIDs[len(msgIDs)-1], time.Now())
			if err != nil || r.Marked != n || fmt.Sprint(r.SenderIDs) != fmt.Sprint(before.senders[u.ID][m.ID]) {
				t.Fatalf("MarkReadUpTo(%s in %s) = %+v, %v; want %d from %v", u.Name, m.Title, r, err, n, before.senders[u.ID][m.ID])
			}
			checkUnread(t, s, u, mapWith(before.unread[u.ID], m.ID, 0))
			before.unread[u.ID][m.ID] = 0
		}
	}
}

func isDeleted(err error) bool { return errors.Is(err, ErrDeleted) }

func mapWith(m map[int64]int, k int64, v int) map[int64]int {
	out := map[int64]int{}
	for key, val := range m {
		out[key] = val
	}
	out[k] = v
	return out
}
