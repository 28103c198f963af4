package persistence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestSendMessages: a group commit stores its sends in order with
// consecutive ids, refuses each bad send on its own, and treats a repeated
// client message id as the message stored first.
func TestSendMessages(t *testing.T) {
	onEachBackend(t, func(t *testing.T, _ backend, s Store) {
		ctx := context.Background()
		ann, bob, dan := mustUser(t, s, "ann"), mustUser(t, s, "bob"), mustUser(t, s, "dan")
		m1 := mustMatter(t, s, "m1", ann, bob)
		m2 := mustMatter(t, s, "m2", ann)
		now := time.Now()
		res := s.SendMessages(ctx, []Send{
			{MatterID: m1.ID, SenderID: ann.ID, Body: "one", At: now},
			{MatterID: m2.ID, SenderID: ann.ID, Body: "two", ClientMessageID: "k-2", At: now},
			{MatterID: m1.ID, SenderID: bob.ID, Body: "three", ClientMessageID: "k-2", At: now}, // another sender's key space
			{MatterID: m1.ID, SenderID: dan.ID, Body: "not a member", At: now},
			{MatterID: 99999, SenderID: ann.ID, Body: "no matter", At: now},
			{MatterID: m2.ID, SenderID: ann.ID, Body: "two again", ClientMessageID: "k-2", At: now}, // repeat within the group
			{MatterID: m1.ID, SenderID: ann.ID, Body: "two elsewhere", ClientMessageID: "k-2", At: now},
			{MatterID: m1.ID, SenderID: ann.ID, Body: "four", At: now},
		})
		if len(res) != 8 {
			t.Fatalf("%d results", len(res))
		}
		for _, i := range []int{0, 1, 2, 7} {
			if res[i].Err != nil || res[i].Repeat {
				t.Fatalf("send %d: %+v", i, res[i])
			}
		}
		if !errors.Is(res[3].Err, ErrForbidden) || !errors.Is(res[4].Err, ErrNotFound) || !errors.Is(res[6].Err, ErrConflict) {
			t.Fatalf("refusals: %v / %v / %v", res[3].Err, res[4].Err, res[6].Err)
		}
		if r := res[5]; r.Err != nil || !r.Repeat || r.Message.ID != res[1].Message.ID || r.Message.Body != "two" {
			t.Fatalf("repeat within the group: %+v", r)
		}
		ids := []int64{res[0].Message.ID, res[1].Message.ID, res[2].Message.ID, res[7].Message.ID}
		if !slices.IsSorted(ids) || slices.Compact(slices.Clone(ids))[3] != ids[3] {
			t.Fatalf("ids %v not increasing in send order", ids)
		}
		m := res[0].Message
		if m.SenderName != "ann" || m.Body != "one" || m.ClientMessageID != nil || m.CreatedAt != dbTime(now) ||
			!slices.Equal(res[0].Members, []int64{ann.ID, bob.ID}) || !slices.Equal(res[1].Members, []int64{ann.ID}) {
			t.Fatalf("first: %+v", res[0])
		}
		if k := res[2].Message.ClientMessageID; k == nil || *k != "k-2" || res[2].Message.SenderName != "bob" {
			t.Fatalf("bob's: %+v", res[2].Message)
		}
		// Each message names the one before it in its matter, within the
		// group too.
		if res[0].PreviousID != 0 || res[2].PreviousID != res[0].Message.ID || res[7].PreviousID != res[2].Message.ID || res[1].PreviousID != 0 {
			t.Fatalf("previous ids %d %d %d %d, want 0 %d %d 0", res[0].PreviousID, res[2].PreviousID, res[7].PreviousID, res[1].PreviousID,
				res[0].Message.ID, res[2].Message.ID)
		}
		next := s.SendMessages(ctx, []Send{{MatterID: m1.ID, SenderID: bob.ID, Body: "five", At: now}})[0]
		if next.Err != nil || next.PreviousID != res[7].Message.ID {
			t.Fatalf("the next group's first message: %+v, want previous %d", next, res[7].Message.ID)
		}

		// A later repeat, alone: the stored message, as stored.
		again := s.SendMessages(ctx, []Send{{MatterID: m2.ID, SenderID: ann.ID, Body: "changed", ClientMessageID: "k-2", At: now.Add(time.Hour)}})[0]
		if again.Err != nil || !again.Repeat || again.Message != res[1].Message && !sameMessage(again.Message, res[1].Message) {
			t.Fatalf("later repeat: %+v, first %+v", again, res[1])
		}
		got, err := s.MessageByID(ctx, res[1].Message.ID)
		if err != nil || !sameMessage(got, res[1].Message) {
			t.Fatalf("MessageByID %+v %v, sent %+v", got, err, res[1].Message)
		}
		_, total, err := s.ListMessages(ctx, MessageQuery{MatterID: m1.ID, Page: 1, Limit: 100})
		if err != nil || total != 4 {
			t.Fatalf("matter 1 holds %d messages (%v), want 4", total, err)
		}
		_, total, _ = s.ListMessages(ctx, MessageQuery{MatterID: m2.ID, Page: 1, Limit: 100})
		if total != 1 {
			t.Fatalf("matter 2 holds %d messages, want 1", total)
		}
	})
}

// TestSendPreviousIDChains: groups sent at once from several goroutines (as
// several nodes do on one database) each name the message before theirs in
// the matter: following previous ids from the newest visits every message.
func TestSendPreviousIDChains(t *testing.T) {
	onEachBackend(t, func(t *testing.T, _ backend, s Store) {
		ctx := context.Background()
		ann, m := annsMatter(t, s)
		prev := map[int64]int64{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					res := s.SendMessages(ctx, []Send{
						{MatterID: m.ID, SenderID: ann.ID, Body: "a", At: time.Now()},
						{MatterID: m.ID, SenderID: ann.ID, Body: "b", At: time.Now()},
					})
					mu.Lock()
					for _, r := range res {
						if r.Err != nil {
							t.Error(r.Err)
						}
						prev[r.Message.ID] = r.PreviousID
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		var newest int64
		for id := range prev {
			newest = max(newest, id)
		}
		seen := 0
		for id := newest; id != 0; id = prev[id] {
			if _, ok := prev[id]; !ok {
				t.Fatalf("previous id %d is not a message sent here", id)
			}
			seen++
		}
		if seen != len(prev) {
			t.Fatalf("the chain from the newest visits %d of %d messages", seen, len(prev))
		}
	})
}

// annsMatter is a new user ann and a new matter m, she its one member.
func annsMatter(t *testing.T, s Store) (User, Matter) {
	t.Helper()
	ann := mustUser(t, s, "ann")
	return ann, mustMatter(t, s, "m", ann)
}

func sameMessage(a, b Message) bool {
	return a.ID == b.ID && a.MatterID == b.MatterID && a.SenderID == b.SenderID && a.SenderName == b.SenderName &&
		a.Body == b.Body && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) &&
		ptrEq(a.ClientMessageID, b.ClientMessageID)
}

// TestSendMessagesFailureIsolated: a send the database refuses (here a
// trigger on one body) fails alone; its group's other sends are stored.
func TestSendMessagesFailureIsolated(t *testing.T) {
	onEachBackend(t, func(t *testing.T, b backend, s Store) {
		ctx := context.Background()
		ann, m := annsMatter(t, s)
		addPoison(t, s, b.name)
		db := rawDB(s)
		res := s.SendMessages(ctx, []Send{
			{MatterID: m.ID, SenderID: ann.ID, Body: "a", At: time.Now()},
			{MatterID: m.ID, SenderID: ann.ID, Body: "poison", ClientMessageID: "p", At: time.Now()},
			{MatterID: m.ID, SenderID: ann.ID, Body: "b", ClientMessageID: "b", At: time.Now()},
		})
		if res[0].Err != nil || res[2].Err != nil || res[1].Err == nil {
			t.Fatalf("results %+v", res)
		}
		for _, sentinel := range []error{ErrNotFound, ErrForbidden, ErrConflict} {
			if errors.Is(res[1].Err, sentinel) {
				t.Fatalf("the poisoned send's error %v is a refusal", res[1].Err)
			}
		}
		msgs, total, err := s.ListMessages(ctx, MessageQuery{MatterID: m.ID, AfterID: 0, Page: 1, Limit: 10})
		if err != nil || total != 2 || msgs[0].Body != "b" || msgs[1].Body != "a" || msgs[0].ID != res[2].Message.ID || msgs[1].ID != res[0].Message.ID {
			t.Fatalf("stored %+v (%d, %v)", msgs, total, err)
		}
		// The key of the failed send is free.
		db.MustExec(`DROP TRIGGER poison` + map[bool]string{true: " ON messages", false: ""}[b.name == "postgres"])
		if r := s.SendMessages(ctx, []Send{{MatterID: m.ID, SenderID: ann.ID, Body: "poison", ClientMessageID: "p", At: time.Now()}})[0]; r.Err != nil || r.Repeat {
			t.Fatalf("retry of the failed send: %+v", r)
		}
	})
}

// TestSendMessagesConcurrentRepeats: the same client message id sent at
// once from many goroutines (separate transactions racing) stores one row;
// every send answers with it, exactly one as new.
func TestSendMessagesConcurrentRepeats(t *testing.T) {
	onEachBackend(t, func(t *testing.T, _ backend, s Store) {
		ctx := context.Background()
		ann, m := annsMatter(t, s)
		for round := range 5 {
			key := fmt.Sprint("race-", round)
			const n = 12
			res := make([]SendResult, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					res[i] = s.SendMessages(ctx, []Send{{MatterID: m.ID, SenderID: ann.ID, Body: key, ClientMessageID: key, At: time.Now()}})[0]
				})
			}
			close(start)
			wg.Wait()
			fresh := 0
			for _, r := range res {
				if r.Err != nil || r.Message.ID != res[0].Message.ID {
					t.Fatalf("round %d: %+v vs %+v", round, r, res[0])
				}
				if !r.Repeat {
					fresh++
				}
			}
			if fresh != 1 {
				t.Fatalf("round %d: %d sends stored as new, want 1", round, fresh)
			}
		}
		_, total, err := s.ListMessages(ctx, MessageQuery{MatterID: m.ID, Page: 1, Limit: 10})
		if err != nil || total != 5 {
			t.Fatalf("%d messages stored (%v), want 5", total, err)
		}
	})
}
