package chat

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
)

// TestConcurrentSendsGroupCommit: many concurrent sends into one matter,
// some refused by the database (a trigger on one body): every acknowledged
// message is stored, the refused ones fail alone (503, not their whole
// group), and a member's socket on the matter channel gets every
// acknowledged message once, in id order (commit order).
func TestConcurrentSendsGroupCommit(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		users, m, before := e.busyMatter("U", 4)
		if db.dialect == "postgres" {
			db.exec(t, `CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN
				IF NEW.body = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`,
				`CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison()`)
		} else {
			db.exec(t, `CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.body = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END`)
		}
		w := e.dialAs(users[0], matterChannel(m.ID))

		const senders, each = 16, 20
		var mu sync.Mutex
		var acked []int64
		poisoned := 0
		var wg sync.WaitGroup
		for g := range senders {
			wg.Go(func() {
				u := users[1+g%3] // never users[0], whose socket listens
				for i := range each {
					text := fmt.Sprint("g", g, "-", i)
					if i == 5 && g%4 == 0 {
						text = "poison"
					}
					r, err := e.do("POST", "/api/messages/send", u.token, map[string]any{"message": text, "client_matter_id": m.ID})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					switch {
					case text == "poison" && r.status == http.StatusServiceUnavailable:
						poisoned++
					case text != "poison" && r.status == http.StatusCreated:
						acked = append(acked, num(data(t, r.body)["id"]))
					default:
						t.Errorf("send %q: %d %s", text, r.status, r.raw)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if want := senders*each - senders/4; len(acked) != want || poisoned != senders/4 {
			t.Fatalf("%d acknowledged, %d poisoned", len(acked), poisoned)
		}
		slices.Sort(acked)
		var got []int64
		for _, f := range w.drain()[ev("MessageSent")] {
			got = append(got, num(f.DataMap(t)["message"].(map[string]any)["id"]))
		}
		if !slices.Equal(got, acked) {
			t.Fatalf("the matter channel got %d MessageSent (in id order: %v), %d were acknowledged", len(got), slices.IsSorted(got), len(acked))
		}
		// The history holds exactly the acknowledged messages.
		var stored []int64
		for _, msg := range e.history(users[0], m, before) {
			stored = append(stored, num(msg["id"]))
		}
		if !slices.Equal(stored, acked) {
			t.Fatalf("history after_id walk: %d messages, %d acknowledged", len(stored), len(acked))
		}
	})
}
