package chat

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// TestIdempotentSend: a send repeating the sender's client_message_id
// answers 200 with the message stored first and broadcasts nothing, counts
// nothing; concurrent repeats store one message and send one MessageSent.
func TestIdempotentSend(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		ann, bob := e.user("Ann"), e.user("Bob")
		m := e.matter("M", ann, bob)
		other := e.matter("Other", ann, bob)
		w := e.dialAs(bob, userChannel(bob.ID))
		send := func(body map[string]any) response { return e.call("POST", "/api/messages/send", ann.token, body) }

		plain := e.send(ann, m, "no key")
		if v, ok := plain["client_message_id"]; !ok || v != nil {
			t.Fatalf("client_message_id of a send without one: %v", plain)
		}
		f := w.ExpectOn(ev("MessageSent"), userChannel(bob.ID))
		if ev := f.DataMap(t)["message"].(map[string]any); !reflect.DeepEqual(ev, asEvent(plain)) {
			t.Fatalf("event %v, REST %v", ev, plain)
		}
		w.ExpectOn(ev("UnreadCountUpdated"), userChannel(bob.ID))

		first := data(t, send(map[string]any{"message": "hello", "client_matter_id": m.ID, "client_message_id": "q-1"}).want(t, http.StatusCreated))
		if first["client_message_id"] != "q-1" {
			t.Fatalf("sent %v", first)
		}
		f = w.ExpectOn(ev("MessageSent"), userChannel(bob.ID))
		if ev := f.DataMap(t)["message"].(map[string]any); !reflect.DeepEqual(ev, asEvent(first)) {
			t.Fatalf("event %v, REST %v", ev, first)
		}
		w.ExpectOn(ev("UnreadCountUpdated"), userChannel(bob.ID))

		// The repeat (an offline queue resending after a lost answer),
		// even with another text: 200, the first message, no event.
		again := data(t, send(map[string]any{"message": "hello, edited in the queue", "client_matter_id": m.ID, "client_message_id": "q-1"}).want(t, http.StatusOK))
		if !reflect.DeepEqual(again, first) {
			t.Fatalf("repeat answered %v, first %v", again, first)
		}
		w.expectNothingBeforeMarker()
		if counts, total := e.unread(bob); total != 2 || counts[m.ID] != 2 {
			t.Fatalf("bob unread %v %d, want 2", counts, total)
		}
		// Keys are per sender: Bob may use the same one.
		data(t, e.call("POST", "/api/messages/send", bob.token, map[string]any{"message": "mine", "client_matter_id": m.ID, "client_message_id": "q-1"}).want(t, http.StatusCreated))
		// The same key for another matter is a client bug: 422, nothing stored.
		send(map[string]any{"message": "x", "client_matter_id": other.ID, "client_message_id": "q-1"}).
			wantInvalid(t, "client_message_id", "already been used for a message in another matter")

		// Validation.
		send(map[string]any{"message": "x", "client_matter_id": m.ID, "client_message_id": 42}).wantInvalid(t, "client_message_id", "must be a string")
		send(map[string]any{"message": "x", "client_matter_id": m.ID, "client_message_id": ""}).wantInvalid(t, "client_message_id", "at least 1 character")
		send(map[string]any{"message": "x", "client_matter_id": m.ID, "client_message_id": strings.Repeat("é", 65)}).
			wantInvalid(t, "client_message_id", "not be greater than 64 characters")
		send(map[string]any{"message": "x", "client_matter_id": m.ID, "client_message_id": "a\x00b"}).wantInvalid(t, "client_message_id", "NUL")
		send(map[string]any{"message": " ", "client_matter_id": m.ID, "client_message_id": 1}).
			wantInvalid(t, "message", "required", "client_message_id", "must be a string")
		long := data(t, send(map[string]any{"message": "x", "client_matter_id": m.ID, "client_message_id": strings.Repeat("é", 64)}).want(t, http.StatusCreated))
		if long["client_message_id"] != strings.Repeat("é", 64) {
			t.Fatalf("64 characters: %v", long)
		}
		data(t, send(map[string]any{"message": "x", "client_matter_id": m.ID, "client_message_id": nil}).want(t, http.StatusCreated))
		if got := w.drain(); len(got[ev("MessageSent")]) != 2 {
			t.Fatalf("bob got %v, want the 64-character send's and the null key's MessageSent", got)
		}

		// Concurrent repeats: one 201, the rest 200, one event.
		const n = 10
		answers := make([]response, n)
		var wg sync.WaitGroup
		begin := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-begin
				r, err := e.do("POST", "/api/messages/send", ann.token, map[string]any{"message": "race", "client_matter_id": m.ID, "client_message_id": "race-1"})
				if err != nil {
					t.Error(err)
				}
				answers[i] = r
			})
		}
		close(begin)
		wg.Wait()
		created, id := 0, int64(0)
		for _, r := range answers {
			switch r.status {
			case http.StatusCreated:
				created++
			case http.StatusOK:
			default:
				t.Fatalf("race answer %d %s", r.status, r.raw)
			}
			got := num(data(t, r.body)["id"])
			if id != 0 && got != id {
				t.Fatalf("race answered ids %d and %d", id, got)
			}
			id = got
		}
		if created != 1 {
			t.Fatalf("%d of %d racing sends answered 201, want 1", created, n)
		}
		got := w.drain()
		if sent := got[ev("MessageSent")]; len(sent) != 1 || num(sent[0].DataMap(t)["message"].(map[string]any)["id"]) != id {
			t.Fatalf("bob got %v after the race, want one MessageSent of message %d", got, id)
		}
		list := e.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d&after_id=%d", m.ID, id-1), ann.token, nil).want(t, http.StatusOK)
		if rows := list["data"].([]any); len(rows) != 1 || num(rows[0].(map[string]any)["id"]) != id || rows[0].(map[string]any)["client_message_id"] != "race-1" {
			t.Fatalf("history after the race: %v", list["data"])
		}
		if truth, api := e.truth(bob), func() map[int64]int { c, _ := e.unread(bob); return c }(); truth[m.ID] != 5 || !reflect.DeepEqual(truth, api) {
			t.Fatalf("bob unread: database %v, API %v, want 5 in matter %d", truth, api, m.ID)
		}
	})
}
