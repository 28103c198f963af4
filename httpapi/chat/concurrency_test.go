package chat

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/persistence"
)

// lastUnread follows one socket and keeps the last UnreadCountUpdated.
type lastUnread struct {
	mu     sync.Mutex
	counts map[int64]int // guarded by mu
	total  int           // guarded by mu
	events int           // guarded by mu
}

func (l *lastUnread) follow(t *testing.T, w *wsClient) {
	go func() {
		for r := range w.Reads {
			f := r.Frame
			if f.Event != ev("UnreadCountUpdated") {
				continue
			}
			var d struct {
				UnreadCount int            `json:"unread_count"`
				Matters     map[string]int `json:"matters"`
			}
			if err := json.Unmarshal([]byte(f.Data), &d); err != nil {
				t.Errorf("UnreadCountUpdated data %q: %v", f.Data, err)
				continue
			}
			m := map[int64]int{}
			for k, v := range d.Matters {
				var id int64
				fmt.Sscan(k, &id)
				m[id] = v
			}
			l.mu.Lock()
			l.counts, l.total, l.events = m, d.UnreadCount, l.events+1
			l.mu.Unlock()
		}
	}()
}

func (l *lastUnread) get() (map[int64]int, int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts, l.total, l.events
}

func sum(m map[int64]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// await returns the last UnreadCountUpdated once it says want, or after d
// what it says then.
func (l *lastUnread) await(want map[int64]int, d time.Duration) (counts map[int64]int, total, events int) {
	deadline := time.Now().Add(d)
	for {
		counts, total, events = l.get()
		if maps.Equal(counts, want) || time.Now().After(deadline) {
			return counts, total, events
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// busyMatter makes n users named prefix0, prefix1..., a matter of them
// all, and a message elsewhere: ids are global, so that message's id is an
// after_id cursor from before the first message in the matter.
func (e *env) busyMatter(prefix string, n int) (users []person, m persistence.Matter, before int64) {
	e.t.Helper()
	for i := range n {
		users = append(users, e.user(fmt.Sprint(prefix, i)))
	}
	m = e.matter("Busy", users...)
	before = num(e.send(users[0], e.matter("Seed", users[0]), "seed")["id"])
	return users, m, before
}

// followUnread follows each user's UnreadCountUpdated on a socket of their
// own.
func (e *env) followUnread(t *testing.T, users []person) []*lastUnread {
	t.Helper()
	lasts := make([]*lastUnread, len(users))
	for i, u := range users {
		w := e.dialAs(u, userChannel(u.ID))
		lasts[i] = &lastUnread{}
		lasts[i].follow(t, w)
	}
	return lasts
}

// readAlong is a reader while others send: u reads m's messages as they
// arrive, catching up with after_id from after, and marks each read but
// those skip keeps unread; once done says the senders finished, it reads
// to the end and returns.
func (e *env) readAlong(t *testing.T, u person, m persistence.Matter, after int64, skip func(msg map[string]any) bool, done func() bool) {
	cursor := after
	for {
		finished := done()
		r, err := e.do("GET", fmt.Sprintf("/api/messages?client_matter_id=%d&after_id=%d&limit=100", m.ID, cursor), u.token, nil)
		if err != nil || r.status != http.StatusOK {
			t.Errorf("list: %v %d %s", err, r.status, r.raw)
			return
		}
		rows, _ := r.body["data"].([]any)
		for _, row := range rows {
			msg := row.(map[string]any)
			cursor = num(msg["id"])
			if skip(msg) {
				continue
			}
			if r, err := e.do("PUT", fmt.Sprintf("/api/messages/%d/read", cursor), u.token, nil); err != nil || r.status != http.StatusOK {
				t.Errorf("read: %v %d %s", err, r.status, r.raw)
				return
			}
		}
		if finished && len(rows) == 0 {
			return
		}
		if len(rows) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// history is every message of m after the id after, as p sees them, oldest
// first: the after_id walk a client makes.
func (e *env) history(p person, m persistence.Matter, after int64) []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for {
		page := e.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d&after_id=%d&limit=100", m.ID, after), p.token, nil).want(e.t, http.StatusOK)
		rows := page["data"].([]any)
		if len(rows) == 0 {
			return out
		}
		for _, row := range rows {
			msg := row.(map[string]any)
			after = num(msg["id"])
			out = append(out, msg)
		}
	}
}

// TestConcurrentSendAndRead: many senders and readers at once on one matter;
// afterwards every user's unread count from the API, from the last
// UnreadCountUpdated event they received, and from the database agree, and
// match what was sent minus what was read.
func TestConcurrentSendAndRead(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		users, m, start := e.busyMatter("User", 4)
		quiet := e.matter("Quiet", users[0], users[1]) // a zero that must stay in the maps
		lasts := e.followUnread(t, users)

		began := time.Now()
		const senders, perSender = 8, 25
		var sendersLeft atomic.Int32
		sendersLeft.Store(senders)
		var wg sync.WaitGroup
		for g := range senders {
			wg.Go(func() {
				defer sendersLeft.Add(-1)
				u := users[g%len(users)]
				for i := range perSender {
					r, err := e.do("POST", "/api/messages/send", u.token, map[string]any{"message": fmt.Sprintf("g%d-%d", g, i), "client_matter_id": m.ID})
					if err != nil || r.status != http.StatusCreated {
						t.Errorf("send: %v %d %s", err, r.status, r.raw)
						return
					}
				}
			})
		}
		// Each user reads as messages arrive, catching up with after_id,
		// and leaves every third message unread.
		for _, u := range users {
			wg.Go(func() {
				e.readAlong(t, u, m, start, func(msg map[string]any) bool {
					return num(msg["sender_id"]) == u.ID || num(msg["id"])%3 == 0
				}, func() bool { return sendersLeft.Load() == 0 })
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}

		// What the counts must be: others' messages with ids divisible by 3.
		all := e.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d&limit=100", m.ID), users[0].token, nil).want(t, http.StatusOK)
		if num(all["total"]) != senders*perSender {
			t.Fatalf("%v messages stored, want %d", all["total"], senders*perSender)
		}
		var ids []int64
		for _, msg := range e.history(users[0], m, start) {
			ids = append(ids, num(msg["id"]), num(msg["sender_id"]))
		}
		for i, u := range users {
			want := 0
			for j := 0; j < len(ids); j += 2 {
				if ids[j+1] != u.ID && ids[j]%3 == 0 {
					want++
				}
			}
			truth := e.truth(u)
			_, inQuiet := truth[quiet.ID]
			if truth[m.ID] != want || inQuiet != (i < 2) || truth[quiet.ID] != 0 {
				t.Fatalf("user %d: database says %v, want %d unread in matter %d", u.ID, truth, want, m.ID)
			}
			got, gotTotal, events := lasts[i].await(truth, 10*time.Second)
			if !maps.Equal(got, truth) || gotTotal != sum(truth) {
				t.Errorf("user %d: last UnreadCountUpdated %v (total %d, %d events), database %v", u.ID, got, gotTotal, events, truth)
			}
			api, apiTotal := e.unread(u)
			if !maps.Equal(api, truth) || apiTotal != sum(truth) {
				t.Errorf("user %d: API %v (total %d), database %v", u.ID, api, apiTotal, truth)
			}
			// Coalescing: at most one event per 50 ms window (the
			// default), plus the first.
			if limit := 2 + int(time.Since(began)/(50*time.Millisecond)); events > limit {
				t.Errorf("user %d: %d UnreadCountUpdated events in %v, at most %d with a 50 ms window", u.ID, events, time.Since(began), limit)
			}
			t.Logf("user %d: %d unread, %d UnreadCountUpdated events", u.ID, sum(truth), events)
		}
	})
}
