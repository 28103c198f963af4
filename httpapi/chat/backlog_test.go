package chat

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/persistence"
)

// TestFullBacklogLosesNoAcknowledgedMessage: with a fan-out backlog of 2,
// many senders at once fill it. Sends are then refused with 503 before
// anything is stored; every send answered 201 reaches every socket in its
// matter, once. (Before, a send was stored and acknowledged, and its
// MessageSent dropped silently when the backlog was full.)
func TestFullBacklogLosesNoAcknowledgedMessage(t *testing.T) {
	e := start(t, sqliteDB(t), func(c *config.Config) { c.MaxPublishBacklog = 2 })
	const matters, members = 4, 3
	type room struct {
		m       persistence.Matter
		people  []person
		sockets []*wsClient
	}
	rooms := make([]*room, matters)
	for i := range rooms {
		r := &room{}
		for j := 0; j < members; j++ {
			r.people = append(r.people, e.user(fmt.Sprintf("u%d-%d", i, j)))
		}
		r.m = e.matter(fmt.Sprintf("m%d", i), r.people...)
		for _, p := range r.people {
			w := e.dialAs(p, matterChannel(r.m.ID))
			r.sockets = append(r.sockets, w)
		}
		rooms[i] = r
	}

	var mu sync.Mutex
	acked := map[int64]map[int64]bool{} // matter → message ids answered 201
	var refused, sent atomic.Int64
	// Bursts of concurrent sends until the backlog refused some (bounded).
	for round := 0; round < 40 && (refused.Load() == 0 || sent.Load() < 200); round++ {
		var wg sync.WaitGroup
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rooms[g%matters]
				p := r.people[g%members]
				for k := 0; k < 5; k++ {
					res, err := e.do("POST", "/api/messages/send", p.token, map[string]any{"message": "x", "client_matter_id": r.m.ID})
					if err != nil {
						t.Error(err)
						return
					}
					switch res.status {
					case http.StatusCreated:
						id := num(res.body["data"].(map[string]any)["id"])
						mu.Lock()
						if acked[r.m.ID] == nil {
							acked[r.m.ID] = map[int64]bool{}
						}
						acked[r.m.ID][id] = true
						mu.Unlock()
						sent.Add(1)
					case http.StatusServiceUnavailable:
						refused.Add(1)
						if res.header.Get("Retry-After") == "" || res.body["message"] != msgBusy {
							t.Errorf("refusal %d %v (Retry-After %q)", res.status, res.body, res.header.Get("Retry-After"))
						}
					default:
						t.Errorf("send: %d %s", res.status, res.raw)
					}
				}
			}()
		}
		wg.Wait()
	}
	// Refused sends stored nothing.
	for _, r := range rooms {
		_, total, err := e.st.ListMessages(t.Context(), persistence.MessageQuery{MatterID: r.m.ID, Page: 1, Limit: 1})
		if err != nil || total != len(acked[r.m.ID]) {
			t.Fatalf("matter %d holds %d messages (%v), %d acknowledged", r.m.ID, total, err, len(acked[r.m.ID]))
		}
	}
	t.Logf("%d sends acknowledged, %d refused with 503", sent.Load(), refused.Load())

	// A marker after everything: each socket must have had every
	// acknowledged message of its matter once before it.
	for _, r := range rooms {
		marker := fmt.Sprintf("end-%d", r.m.ID)
		e.node.PublishCommitted(actors.Event{AppID: testkit.AppID, Channels: []string{matterChannel(r.m.ID)}, Name: markerEvent, Data: marker})
		for _, w := range r.sockets {
			got := map[int64]int{}
			for _, f := range w.Before(marker, isMarkerOf(marker), 10*time.Second) {
				if f.Event == ev("MessageSent") {
					got[num(f.DataMap(t)["message"].(map[string]any)["id"])]++
				}
			}
			lost := 0
			for id := range acked[r.m.ID] {
				if got[id] == 0 {
					lost++
				} else if got[id] != 1 {
					t.Errorf("matter %d, socket %s: acknowledged message %d delivered %d times", r.m.ID, w.SocketID, id, got[id])
				}
			}
			if lost > 0 {
				t.Errorf("matter %d, socket %s: %d of %d acknowledged messages never delivered", r.m.ID, w.SocketID, lost, len(acked[r.m.ID]))
			}
			if len(got) != len(acked[r.m.ID]) {
				t.Errorf("matter %d, socket %s: %d messages delivered, %d acknowledged", r.m.ID, w.SocketID, len(got), len(acked[r.m.ID]))
			}
		}
	}
	if refused.Load() == 0 {
		t.Fatalf("%d sends, none refused: the backlog never filled, the test tested nothing", sent.Load())
	}
}
