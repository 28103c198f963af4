package chat

import (
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors/unread"
)

// TestReadUpTo: PUT /api/matters/{id}/read marks everything from others up
// to a message read, broadcasts one MessagesRead to the matter and the
// senders, and one count update to the reader; repeating it does nothing.
func TestReadUpTo(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		ann, bob, cat, dan := e.user("Ann"), e.user("Bob"), e.user("Cat"), e.user("Dan")
		m := e.matter("M", ann, bob, cat)
		var ids []int64
		for i, p := range []person{ann, cat, bob, ann, cat} {
			ids = append(ids, num(e.send(p, m, fmt.Sprint("m", i))["id"]))
		}
		late := num(e.send(ann, m, "after")["id"])
		for _, p := range []person{ann, bob, cat} {
			e.settleUnread(p.ID) // their counts go out before they listen
		}
		bobWS := e.dialAs(bob, userChannel(bob.ID), matterChannel(m.ID))
		annWS := e.dialAs(ann, userChannel(ann.ID))
		catWS := e.dialAs(cat, userChannel(cat.ID))
		bobWS.expectNothingBeforeMarker()
		annWS.expectNothingBeforeMarker()
		catWS.expectNothingBeforeMarker()
		path := fmt.Sprintf("/api/matters/%d/read", m.ID)

		e.call("PUT", path, "", map[string]any{"up_to_id": ids[4]}).want(t, http.StatusUnauthorized)
		e.call("PUT", "/api/matters/999999/read", bob.token, map[string]any{"up_to_id": 1}).wantMessage(t, http.StatusNotFound, "Matter not found.")
		e.call("PUT", "/api/matters/x/read", bob.token, map[string]any{"up_to_id": 1}).want(t, http.StatusNotFound)
		e.call("PUT", path, dan.token, map[string]any{"up_to_id": ids[4]}).wantMessage(t, http.StatusForbidden, "This action is unauthorized.")
		e.call("PUT", path, bob.token, map[string]any{}).wantInvalid(t, "up_to_id", "required")
		e.call("PUT", path, bob.token, map[string]any{"up_to_id": "abc"}).wantInvalid(t, "up_to_id", "integer")
		e.call("PUT", path, bob.token, map[string]any{"up_to_id": 0}).wantInvalid(t, "up_to_id", "at least 1")

		rd := data(t, e.call("PUT", path, bob.token, map[string]any{"up_to_id": ids[4]}).want(t, http.StatusOK))
		if num(rd["client_matter_id"]) != m.ID || num(rd["reader_id"]) != bob.ID || num(rd["up_to_id"]) != ids[4] || num(rd["count"]) != 4 || rd["read_at"] == nil {
			t.Fatalf("read up to %v", rd)
		}
		for _, w := range []*wsClient{annWS, catWS} {
			f := w.Next()
			if f.Event != ev("MessagesRead") || !maps.Equal(f.DataMap(t), rd) {
				t.Fatalf("sender got %+v, want MessagesRead %v", f, rd)
			}
		}
		var uc map[string]any
		for range 2 {
			switch f := bobWS.Next(); {
			case f.Event == ev("MessagesRead") && f.Channel == matterChannel(m.ID):
			case f.Event == ev("UnreadCountUpdated") && f.Channel == userChannel(bob.ID) && uc == nil:
				uc = f.DataMap(t)
			default:
				t.Fatalf("bob got %+v", f)
			}
		}
		if want := map[int64]int{m.ID: 1}; !maps.Equal(unreadMap(t, uc), want) || !maps.Equal(e.truth(bob), want) {
			t.Fatalf("after reading up to: event %v, database %v", uc, e.truth(bob))
		}
		annWS.expectNothingBeforeMarker()
		catWS.expectNothingBeforeMarker()
		bobWS.expectNothingBeforeMarker() // one count update, not one per message

		// Again: nothing to mark, nothing broadcast.
		again := data(t, e.call("PUT", path, bob.token, map[string]any{"up_to_id": ids[4]}).want(t, http.StatusOK))
		if num(again["count"]) != 0 {
			t.Fatalf("second read up to %v", again)
		}
		// A single read below the mark is already read.
		if r := data(t, e.call("PUT", fmt.Sprintf("/api/messages/%d/read", ids[1]), bob.token, nil).want(t, http.StatusOK)); r["read_at"] != rd["read_at"] {
			t.Fatalf("single read after read up to: %v", r)
		}
		annWS.expectNothingBeforeMarker()
		bobWS.expectNothingBeforeMarker()
		// An id that is no message of the matter is refused: a client
		// marks what it showed.
		other := e.matter("Other", ann, dan)
		elsewhere := num(e.send(ann, other, "elsewhere")["id"])
		for _, id := range []int64{late + 1000, elsewhere} {
			e.call("PUT", path, bob.token, map[string]any{"up_to_id": id}).wantInvalid(t, "up_to_id", "The selected up to id is invalid.")
		}
		bobWS.expectNothingBeforeMarker()
		annWS.expectNothingBeforeMarker()
		// Up to the last message: the rest.
		rest := data(t, e.call("PUT", path, bob.token, map[string]any{"up_to_id": late}).want(t, http.StatusOK))
		if num(rest["count"]) != 1 {
			t.Fatalf("read to the end %v", rest)
		}
		if counts, total := e.unread(bob); total != 0 || counts[m.ID] != 0 {
			t.Fatalf("bob unread %v", counts)
		}
	})
}

// TestReconcileBehindTheServersBack: changes made by another process (an
// admin command adding a member, messages written straight to the
// database) reach the user's UnreadCountUpdated and the API through the
// counters' reconciliation, with no request to the server.
func TestReconcileBehindTheServersBack(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := startDeps(t, db, nil, func(d *Deps) { d.Unread = unread.Options{ReconcileEvery: 200 * time.Millisecond} })
		ann, bob := e.user("Ann"), e.user("Bob")
		m := e.matter("M", ann, bob)
		e.send(ann, m, "announced")
		e.settleUnread(bob.ID)
		w := e.dialAs(bob, userChannel(bob.ID))
		if counts, _ := e.unread(bob); counts[m.ID] != 1 {
			t.Fatalf("bob unread %v", counts)
		}
		w.expectNothingBeforeMarker()

		// Another process: a new matter with bob in it, and messages
		// written without the API.
		other := e.matter("Other", ann, bob)
		db.exec(t,
			fmt.Sprintf(`INSERT INTO messages (matter_id, sender_id, body, created_at, updated_at) VALUES (%d, %d, 'quiet', '2026-01-01 00:00:00', '2026-01-01 00:00:00')`, m.ID, ann.ID),
			fmt.Sprintf(`INSERT INTO messages (matter_id, sender_id, body, created_at, updated_at) VALUES (%d, %d, 'quiet', '2026-01-01 00:00:00', '2026-01-01 00:00:00')`, other.ID, ann.ID))
		want := map[int64]int{m.ID: 2, other.ID: 1}
		if truth := e.truth(bob); !maps.Equal(truth, want) {
			t.Fatalf("database %v", truth)
		}
		f := w.ExpectOn(ev("UnreadCountUpdated"), userChannel(bob.ID))
		if got := unreadMap(t, f.DataMap(t)); !maps.Equal(got, want) {
			t.Fatalf("reconciled event %v, database %v", got, want)
		}
		if counts, total := e.unread(bob); !maps.Equal(counts, want) || total != 3 {
			t.Fatalf("API %v %d, database %v", counts, total, want)
		}
	})
}
