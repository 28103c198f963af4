package chat

import (
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testkit"
)

// listed is GET /api/messages of a matter as p sees it, by message id.
func (e *env) listed(p person, matterID int64) map[int64]map[string]any {
	e.t.Helper()
	b := e.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d&limit=100", matterID), p.token, nil).want(e.t, http.StatusOK)
	out := map[int64]map[string]any{}
	for _, r := range b["data"].([]any) {
		m := r.(map[string]any)
		out[num(m["id"])] = m
	}
	return out
}

// readState is a message's read fields, for comparing.
func readState(m map[string]any) string {
	return fmt.Sprintf("is_read=%v read_at=%v read_by=%v", m["is_read"], m["read_at"], m["read_by"])
}

func readBy(entries ...any) string {
	var out []any
	for i := 0; i+1 < len(entries); i += 2 {
		out = append(out, map[string]any{"user_id": float64(entries[i].(int64)), "read_at": entries[i+1]})
	}
	if out == nil {
		out = []any{}
	}
	return fmt.Sprint(out)
}

// TestReadStateInHistory: GET /api/messages tells each caller what they
// have read and, for their own messages, who read them and when, from the
// receipts in the database, so it survives a restart.
func TestReadStateInHistory(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		ann, bob, cat := e.user("Ann"), e.user("Bob"), e.user("Cat")
		m := e.matter("M", ann, bob, cat)
		a1 := num(e.send(ann, m, "a1")["id"])
		a2 := num(e.send(ann, m, "a2")["id"])
		b1 := num(e.send(bob, m, "b1")["id"])
		a3 := num(e.send(ann, m, "a3")["id"])
		read := func(p person, id int64) any {
			return data(t, e.call("PUT", fmt.Sprintf("/api/messages/%d/read", id), p.token, nil).want(t, http.StatusOK))["read_at"]
		}
		catA1 := read(cat, a1) // Cat first, then Bob: read_by is oldest first
		bobA1 := read(bob, a1)
		upTo := data(t, e.call("PUT", fmt.Sprintf("/api/matters/%d/read", m.ID), bob.token, map[string]any{"up_to_id": a2}).want(t, http.StatusOK))["read_at"]
		annB1 := read(ann, b1)

		check := func(e *env) {
			t.Helper()
			want := map[person]map[int64]string{
				ann: {
					a1: readState(map[string]any{"is_read": true, "read_at": catA1, "read_by": readBy(cat.ID, catA1, bob.ID, bobA1)}),
					a2: readState(map[string]any{"is_read": true, "read_at": upTo, "read_by": readBy(bob.ID, upTo)}),
					b1: readState(map[string]any{"is_read": true, "read_at": annB1, "read_by": readBy(ann.ID, annB1)}),
					a3: readState(map[string]any{"is_read": true, "read_at": nil, "read_by": readBy()}),
				},
				bob: {
					a1: readState(map[string]any{"is_read": true, "read_at": bobA1, "read_by": readBy(cat.ID, catA1, bob.ID, bobA1)}),
					a2: readState(map[string]any{"is_read": true, "read_at": upTo, "read_by": readBy(bob.ID, upTo)}),
					b1: readState(map[string]any{"is_read": true, "read_at": annB1, "read_by": readBy(ann.ID, annB1)}),
					a3: readState(map[string]any{"is_read": false, "read_at": nil, "read_by": readBy()}),
				},
				cat: {
					a1: readState(map[string]any{"is_read": true, "read_at": catA1, "read_by": readBy(cat.ID, catA1, bob.ID, bobA1)}),
					a2: readState(map[string]any{"is_read": false, "read_at": nil, "read_by": readBy(bob.ID, upTo)}),
					b1: readState(map[string]any{"is_read": false, "read_at": nil, "read_by": readBy(ann.ID, annB1)}),
					a3: readState(map[string]any{"is_read": false, "read_at": nil, "read_by": readBy()}),
				},
			}
			for p, msgs := range want {
				got := e.listed(p, m.ID)
				for id, w := range msgs {
					g := got[id]
					// read_by prints as a list of maps; compare through the same printer.
					gs := readState(map[string]any{"is_read": g["is_read"], "read_at": g["read_at"], "read_by": fmt.Sprint(g["read_by"])})
					if gs != w {
						t.Fatalf("%s sees message %d as %s, want %s", p.Name, id, gs, w)
					}
				}
			}
		}
		check(e)
		// The cursors give the same objects as the pages.
		after := e.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d&after_id=%d", m.ID, a1), cat.token, nil).want(t, http.StatusOK)["data"].([]any)
		if all := e.listed(cat, m.ID); len(after) != 3 || !reflect.DeepEqual(after[0], all[a2]) || !reflect.DeepEqual(after[1], all[b1]) {
			t.Fatalf("after_id %v", after)
		}
		e.close()
		check(start(t, db, nil)) // a reload keeps every tick
	})
}

// TestMattersList: GET /api/matters has each matter's unread count, last
// message as the caller sees it and members, the most recent activity first.
func TestMattersList(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		ann, bob, cat := e.user("Ann"), e.user("Bob"), e.user("Cat")
		older := e.matter("Older", ann, bob)
		newer := e.matter("Newer", cat, ann)
		e.send(ann, newer, "first")
		idle := e.matter("Idle", ann) // after Newer's message, before Older's
		e.matter("Not Ann's", bob, cat)
		e.send(bob, older, "o1")
		last := e.send(bob, older, "o2")
		data(t, e.call("PUT", fmt.Sprintf("/api/messages/%d/read", num(last["id"])), ann.token, nil).want(t, http.StatusOK))
		e.settleUnread(ann.ID)

		b := e.call("GET", "/api/matters", ann.token, nil).want(t, http.StatusOK)
		rows := b["data"].([]any)
		var order []any
		for _, r := range rows {
			order = append(order, r.(map[string]any)["title"])
		}
		if fmt.Sprint(order) != "[Older Idle Newer]" {
			t.Fatalf("order %v", order)
		}
		o := rows[0].(map[string]any)
		if num(o["unread_count"]) != 1 || num(o["id"]) != older.ID {
			t.Fatalf("Older %v", o)
		}
		members := fmt.Sprint([]any{map[string]any{"id": float64(ann.ID), "name": "Ann"}, map[string]any{"id": float64(bob.ID), "name": "Bob"}})
		if fmt.Sprint(o["members"]) != members {
			t.Fatalf("members %v, want %v", o["members"], members)
		}
		// The last message is the object GET /api/messages gives Ann.
		if want := e.listed(ann, older.ID)[num(last["id"])]; !reflect.DeepEqual(o["last_message"], want) || want["is_read"] != true {
			t.Fatalf("last_message %v, want %v", o["last_message"], want)
		}
		if i := rows[1].(map[string]any); i["last_message"] != nil || num(i["unread_count"]) != 0 || len(i["members"].([]any)) != 1 || num(i["id"]) != idle.ID {
			t.Fatalf("Idle %v", i)
		}
		if n := rows[2].(map[string]any); n["last_message"].(map[string]any)["message"] != "first" || len(n["members"].([]any)) != 2 {
			t.Fatalf("Newer %v", n)
		}

		// A new message moves its matter to the top.
		e.send(cat, newer, "news")
		rows = e.call("GET", "/api/matters", ann.token, nil).want(t, http.StatusOK)["data"].([]any)
		if top := rows[0].(map[string]any); num(top["id"]) != newer.ID || num(top["unread_count"]) != 1 || top["last_message"].(map[string]any)["is_read"] != false {
			t.Fatalf("after a new message, first %v", top)
		}
		if got := e.call("GET", "/api/matters", e.user("Dan").token, nil).want(t, http.StatusOK)["data"].([]any); len(got) != 0 {
			t.Fatalf("matters of a user in none: %v", got)
		}
	})
}

// TestDeleteMessage: DELETE /api/messages/{id} by the sender empties the
// message, keeps it in the history, broadcasts MessageDeleted where
// MessageSent went, and takes it out of the unread counts of those who had
// not read it, with one UnreadCountUpdated each; repeating it does nothing.
func TestDeleteMessage(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		ann, bob, cat, dan := e.user("Ann"), e.user("Bob"), e.user("Cat"), e.user("Dan")
		m := e.matter("M", ann, bob, cat)
		e.matter("Dan's", dan)
		keep := e.send(ann, m, "keep")
		gone := e.send(ann, m, "regret")
		goneID := num(gone["id"])
		data(t, e.call("PUT", fmt.Sprintf("/api/messages/%d/read", goneID), bob.token, nil).want(t, http.StatusOK))
		for _, p := range []person{ann, bob, cat} {
			e.settleUnread(p.ID)
		}
		annWS := e.dialAs(ann, userChannel(ann.ID), matterChannel(m.ID))
		bobWS := e.dialAs(bob, userChannel(bob.ID), matterChannel(m.ID))
		catWS := e.dialAs(cat, userChannel(cat.ID))
		path := fmt.Sprintf("/api/messages/%d", goneID)

		e.call("DELETE", path, "", nil).want(t, http.StatusUnauthorized)
		e.call("DELETE", path, bob.token, nil).wantMessage(t, http.StatusForbidden, "This action is unauthorized.")
		e.call("DELETE", path, dan.token, nil).wantMessage(t, http.StatusForbidden, "This action is unauthorized.")
		e.call("DELETE", "/api/messages/999999", ann.token, nil).wantMessage(t, http.StatusNotFound, "Message not found.")
		e.call("DELETE", "/api/messages/abc", ann.token, nil).want(t, http.StatusNotFound)
		annWS.expectNothingBeforeMarker()
		bobWS.expectNothingBeforeMarker()
		catWS.expectNothingBeforeMarker()

		del := data(t, e.call("DELETE", path, ann.token, nil, "X-Socket-ID", annWS.SocketID).want(t, http.StatusOK))
		if del["message"] != "" || del["deleted_at"] == nil || del["updated_at"] != del["deleted_at"] || del["created_at"] != gone["created_at"] ||
			del["is_read"] != true || del["read_at"] != nil || fmt.Sprint(del["read_by"]) != "[]" || num(del["id"]) != goneID || num(del["sender_id"]) != ann.ID {
			t.Fatalf("deleted %v", del)
		}
		// Bob (had read it): MessageDeleted on both channels, no count change.
		for range 2 {
			f := bobWS.Next()
			if f.Event != ev("MessageDeleted") || !reflect.DeepEqual(f.DataMap(t)["message"], del) {
				t.Fatalf("bob got %+v, want MessageDeleted %v", f, del)
			}
		}
		bobWS.expectNothingBeforeMarker()
		// Cat (had not): MessageDeleted, then one count update, 2 → 1.
		if f := catWS.ExpectOn(ev("MessageDeleted"), userChannel(cat.ID)); !reflect.DeepEqual(f.DataMap(t)["message"], del) {
			t.Fatalf("cat got %v", f.Data)
		}
		uc := catWS.ExpectOn(ev("UnreadCountUpdated"), userChannel(cat.ID)).DataMap(t)
		if want := map[int64]int{m.ID: 1}; !maps.Equal(unreadMap(t, uc), want) || !maps.Equal(e.truth(cat), want) {
			t.Fatalf("cat's count %v, database %v", uc, e.truth(cat))
		}
		catWS.expectNothingBeforeMarker()
		annWS.expectNothingBeforeMarker() // X-Socket-ID, and not to the sender's user channel

		// It stays in the history, deleted, for everyone.
		for _, p := range []person{ann, bob, cat} {
			if got := e.listed(p, m.ID); !reflect.DeepEqual(got[goneID], del) || got[num(keep["id"])]["message"] != "keep" {
				t.Fatalf("%s's history %v", p.Name, got)
			}
		}

		// Again: the same answer, nothing broadcast.
		again := data(t, e.call("DELETE", path, ann.token, nil).want(t, http.StatusOK))
		if !reflect.DeepEqual(again, del) {
			t.Fatalf("second delete %v, first %v", again, del)
		}
		// No edit, and reading it is a no-op.
		e.call("PUT", path, ann.token, map[string]any{"message": "undo"}).wantMessage(t, http.StatusConflict, "This message was deleted.")
		e.call("PUT", path, bob.token, map[string]any{"message": "undo"}).want(t, http.StatusForbidden)
		for _, p := range []person{bob, cat} {
			r := data(t, e.call("PUT", path+"/read", p.token, nil).want(t, http.StatusOK))
			if r["read_at"] != nil || num(r["message_id"]) != goneID {
				t.Fatalf("read of a deleted message %v", r)
			}
		}
		annWS.expectNothingBeforeMarker()
		bobWS.expectNothingBeforeMarker()
		catWS.expectNothingBeforeMarker()
		// Reading up to it skips it.
		r := data(t, e.call("PUT", fmt.Sprintf("/api/matters/%d/read", m.ID), cat.token, map[string]any{"up_to_id": goneID}).want(t, http.StatusOK))
		if num(r["count"]) != 1 {
			t.Fatalf("read up to %v", r)
		}
		if counts, total := e.unread(cat); total != 0 || !maps.Equal(counts, e.truth(cat)) {
			t.Fatalf("cat unread %v, database %v", counts, e.truth(cat))
		}
	})
}

// TestDeleteCORS: browsers on an allowed origin may send DELETE.
func TestDeleteCORS(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	r := e.call("OPTIONS", "/api/messages/1", "", nil, "Origin", "http://app.example", "Access-Control-Request-Method", "DELETE")
	if r.status != http.StatusNoContent {
		t.Fatalf("preflight %d %s", r.status, r.raw)
	}
	if got := r.header.Get("Access-Control-Allow-Methods"); got != "GET, POST, PUT, DELETE, OPTIONS" {
		t.Fatalf("Allow-Methods %q", got)
	}
}

// TestMatterPresence: presence-matter.{id} is authorized for members only,
// with user_info {id, name}, and members see each other join over a real
// socket.
func TestMatterPresence(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		ann, bob, dan := e.user("Ann"), e.user("Bob"), e.user("Dan")
		m := e.matter("M", ann, bob)
		ch := fmt.Sprintf("presence-matter.%d", m.ID)
		for _, path := range []string{"/broadcasting/auth", "/api/broadcasting/auth"} {
			e.call("POST", path, dan.token, form{"socket_id": {"1.2"}, "channel_name": {ch}}).wantMessage(t, http.StatusForbidden, "This action is unauthorized.")
			e.call("POST", path, dan.token, map[string]any{"socket_id": "1.2", "channel_name": fmt.Sprintf("presence-matter.%d", m.ID+1000)}).want(t, http.StatusForbidden)
			b := e.call("POST", path, bob.token, form{"socket_id": {"1.2"}, "channel_name": {ch}}).want(t, http.StatusOK)
			if want := fmt.Sprintf(`{"user_id":"%d","user_info":{"id":%d,"name":"Bob"}}`, bob.ID, bob.ID); b["channel_data"] != want {
				t.Fatalf("channel_data %v, want %s", b["channel_data"], want)
			}
		}
		annWS := e.dialAs(ann, ch)
		e.dialAs(bob, ch)
		danWS := e.dial()
		f := annWS.ExpectOn("pusher_internal:member_added", ch)
		if d := f.DataMap(t); d["user_id"] != fmt.Sprint(bob.ID) || fmt.Sprint(d["user_info"]) != fmt.Sprint(map[string]any{"id": float64(bob.ID), "name": "Bob"}) {
			t.Fatalf("member_added %v", d)
		}
		// Without a signature the server refuses Dan's subscription.
		_ = danWS.Conn.WriteJSON(map[string]any{"event": "pusher:subscribe", "data": map[string]any{
			"channel": ch, "auth": testkit.Key + ":forged", "channel_data": fmt.Sprintf(`{"user_id":"%d"}`, dan.ID)}})
		if f := danWS.Next(); f.Event != "pusher:subscription_error" && f.Event != "pusher:error" {
			t.Fatalf("forged presence subscription: %+v", f)
		}
		annWS.expectNothingBeforeMarker() // Dan never joined
	})
}

// TestConcurrentDeleteAndRead: senders delete half their messages while the
// others read them; afterwards every user's count from the API, from their
// last UnreadCountUpdated and from the database agree and equal what was
// sent minus what was read or deleted.
func TestConcurrentDeleteAndRead(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		users, m, start := e.busyMatter("User", 4)
		lasts := e.followUnread(t, users)
		const perSender = 24
		var sendersLeft atomic.Int32
		sendersLeft.Store(int32(len(users)))
		var wg sync.WaitGroup
		for _, u := range users {
			wg.Go(func() {
				defer sendersLeft.Add(-1)
				var prev int64
				for i := range perSender {
					r, err := e.do("POST", "/api/messages/send", u.token, map[string]any{"message": fmt.Sprint(i), "client_matter_id": m.ID})
					if err != nil || r.status != http.StatusCreated {
						t.Errorf("send: %v %d %s", err, r.status, r.raw)
						return
					}
					if i%2 == 1 { // delete the one before, which the others may be reading
						if r, err := e.do("DELETE", fmt.Sprintf("/api/messages/%d", prev), u.token, nil); err != nil || r.status != http.StatusOK {
							t.Errorf("delete: %v %d %s", err, r.status, r.raw)
							return
						}
					}
					prev = num(r.body["data"].(map[string]any)["id"])
				}
			})
			// Each user reads as messages arrive, leaving every third
			// unread, and now and then reads up to the last one seen.
			wg.Go(func() {
				e.readAlong(t, u, m, start, func(msg map[string]any) bool { return num(msg["id"])%3 == 0 },
					func() bool { return sendersLeft.Load() == 0 })
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		// Everything from others with an id divisible by 3 that is not deleted.
		want := map[int64]int{}
		for _, row := range e.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d&limit=100", m.ID), users[0].token, nil).want(t, http.StatusOK)["data"].([]any) {
			msg := row.(map[string]any)
			if msg["deleted_at"] == nil && num(msg["id"])%3 == 0 {
				for _, u := range users {
					if u.ID != num(msg["sender_id"]) {
						want[u.ID]++
					}
				}
			}
		}
		for i, u := range users {
			truth := e.truth(u)
			if truth[m.ID] != want[u.ID] {
				t.Fatalf("user %d: database %v, want %d unread", u.ID, truth, want[u.ID])
			}
			api, _ := e.unread(u)
			got, _, _ := lasts[i].await(truth, 10*time.Second)
			if !maps.Equal(api, truth) || !maps.Equal(got, truth) {
				t.Errorf("user %d: API %v, last UnreadCountUpdated %v, database %v", u.ID, api, got, truth)
			}
		}
	})
}
