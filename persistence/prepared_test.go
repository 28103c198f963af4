package persistence

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"
)

// TestSendGroupPlansOnce: on PostgreSQL the group commit's statement runs
// prepared, with a generic plan, so the database neither parses nor plans it
// again for every group. Before, the group's statements ran as unnamed
// statements, parsed and planned on every group (about half of
// PostgreSQL's work per group); pg_prepared_statements listed none.
func TestSendGroupPlansOnce(t *testing.T) {
	var pg backend
	for _, b := range backends() {
		if b.name == "postgres" {
			pg = b
		}
	}
	s := newMigratedStore(t, pg).(*pgStore)
	ctx := context.Background()
	u := mustUser(t, s, "u")
	m := mustMatter(t, s, "m", u)
	// One sender at a time: the send pool reuses one connection, whose
	// session the check below then reads.
	const groups = 12
	for i := range groups {
		res := s.SendMessages(ctx, []Send{{MatterID: m.ID, SenderID: u.ID, Body: "hello", At: time.Now()}})
		if res[0].Err != nil {
			t.Fatalf("send %d: %v", i, res[0].Err)
		}
	}
	db, _ := s.sendPool()
	var rows []struct {
		Statement string `db:"statement"`
		Generic   int64  `db:"generic_plans"`
		Custom    int64  `db:"custom_plans"`
	}
	if err := db.SelectContext(ctx, &rows, `SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements`); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, r := range rows {
		for name, text := range map[string]string{"group": pgSendGroupSQL} {
			if strings.TrimSpace(r.Statement) != strings.TrimSpace(text) {
				continue
			}
			found[name] = true
			if r.Custom != 0 || r.Generic != groups {
				t.Errorf("%s: %d generic and %d custom plans for %d groups; want every run on the generic plan", name, r.Generic, r.Custom, groups)
			}
		}
	}
	if !found["group"] {
		t.Fatalf("the group's statements are not prepared on the send pool's session (found %v among %d prepared statements)", found, len(rows))
	}
}

// TestSendPoolFirstUse: the send pool's first groups arrive together on
// every lane at once, so every connection of the pool is taken when the
// statements are prepared. Preparing inside the group's transaction then
// waited for a free connection for ever (every send timed out).
func TestSendPoolFirstUse(t *testing.T) {
	onEachBackend(t, func(t *testing.T, _ backend, s Store) {
		u := mustUser(t, s, "u")
		const lanes = SendLanes
		matters := make([]Matter, 2*lanes)
		for i := range matters {
			matters[i] = mustMatter(t, s, "m", u)
		}
		g := NewSender(s, SenderOptions{Lanes: lanes, Timeout: 5 * time.Second})
		defer g.Close()
		var wg sync.WaitGroup
		errs := make(chan error, 8*len(matters))
		for i := range 8 * len(matters) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := g.Send(Send{MatterID: matters[i%len(matters)].ID, SenderID: u.ID, Body: "hi", At: time.Now()}, nil)
				errs <- r.Err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestCommittedGroupFailuresStayPerSend: once parley_send_group committed a
// group, a failure (the lookup of a repeated client message id, rows that do
// not match the sends) is answered to the sends it concerns. Before, it
// failed the whole group, and sendMessages then sent every send again one by
// one: each one without a client message id was stored twice, its first copy
// never broadcast.
func TestCommittedGroupFailuresStayPerSend(t *testing.T) {
	at := time.Now()
	sends := []Send{
		{MatterID: 7, SenderID: 1, Body: "one", At: at},
		{MatterID: 7, SenderID: 2, Body: "again", ClientMessageID: "c", At: at},
		{MatterID: 7, SenderID: 1, Body: "three", At: at},
	}
	matter := sendGroupRow{Members: pq.Int64Array{1, 2}, Message: Message{MatterID: 7}}
	row := func(id, sender int64, body string) sendGroupRow {
		return sendGroupRow{Message: Message{ID: id, MatterID: 7, SenderID: sender, Body: body}, Before: sql.NullInt64{Int64: 9, Valid: true}}
	}
	lookupFailed := errors.New("connection reset")
	out := committedResults(sends, []sendGroupRow{matter, row(11, 1, "three"), row(10, 1, "one")},
		func(repeats []int, out []SendResult) error {
			if !slices.Equal(repeats, []int{1}) {
				t.Errorf("repeats %v, want [1]", repeats)
			}
			return lookupFailed
		})
	if out[0].Err != nil || out[0].Message.ID != 10 || out[0].PreviousID != 9 {
		t.Errorf("send 0: %+v, want message 10 after 9", out[0])
	}
	if out[2].Err != nil || out[2].Message.ID != 11 || out[2].PreviousID != 10 {
		t.Errorf("send 2: %+v, want message 11 after 10", out[2])
	}
	if !errors.Is(out[1].Err, lookupFailed) {
		t.Errorf("send 1 (the repeat whose lookup failed): error %v, want %v", out[1].Err, lookupFailed)
	}

	// Rows that do not match: every send not refused fails on its own.
	out = committedResults(sends, []sendGroupRow{matter, row(10, 1, "one")}, func([]int, []SendResult) error { return nil })
	for i, r := range out {
		if r.Err == nil {
			t.Errorf("send %d: no error from rows that do not match the sends", i)
		}
	}
}
