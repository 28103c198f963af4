package actors

import (
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// TestIdleWheel: each socket's check comes once, at or after its time and
// within a tick of it; a new schedule replaces the old one; a cancelled
// check never comes (proven by a later marker check).
func TestIdleWheel(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	w := newIdleWheel(system.Root)
	defer w.close()

	var mu sync.Mutex
	fired := map[string][]time.Duration{}
	marker := make(chan struct{})
	start := time.Now()
	spawn := func(name string) *connActor {
		pid := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			if ctx.Message() == "sync" {
				ctx.Respond("ok")
			}
			if _, ok := ctx.Message().(*idleTickMsg); ok {
				mu.Lock()
				fired[name] = append(fired[name], time.Since(start))
				mu.Unlock()
				if name == "marker" {
					close(marker)
				}
			}
		}))
		return &connActor{pid: pid}
	}
	a, b, cancelled, moved, m := spawn("a"), spawn("b"), spawn("cancelled"), spawn("moved"), spawn("marker")
	w.schedule(a, 150*time.Millisecond)
	w.schedule(b, 350*time.Millisecond)
	w.schedule(cancelled, 200*time.Millisecond)
	w.schedule(moved, 100*time.Millisecond)
	w.schedule(moved, 400*time.Millisecond) // replaces the first
	w.schedule(m, 600*time.Millisecond)
	w.cancel(cancelled)
	select {
	case <-marker:
	case <-time.After(5 * time.Second):
		t.Fatal("the marker's check never came")
	}
	// The wheel sent every check due before the marker's before it; a round
	// trip to each socket's actor makes sure it has handled them.
	for _, a := range []*connActor{a, b, cancelled, moved} {
		if _, err := system.Root.RequestFuture(a.pid, "sync", 5*time.Second).Result(); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(fired["cancelled"]) != 0 {
		t.Errorf("a cancelled check came at %v", fired["cancelled"])
	}
	for name, at := range map[string]time.Duration{"a": 150 * time.Millisecond, "b": 350 * time.Millisecond, "moved": 400 * time.Millisecond} {
		got := fired[name]
		if len(got) != 1 {
			t.Errorf("%s: %d checks, want 1", name, len(got))
			continue
		}
		if got[0] < at {
			t.Errorf("%s: check at %v, before its %v", name, got[0], at)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range []*connActor{a, b, cancelled, moved, m} {
		if a.wheelDue != 0 {
			t.Errorf("a socket is still in the wheel after its check (due %d)", a.wheelDue)
		}
	}
}

// TestIdleWheelLaps: a check due after more than a lap (the default activity
// timeout, 120 s, is longer than the wheel's 102.4 s) waits in its slot
// while the wheel passes it on earlier laps, and comes at its own tick.
func TestIdleWheelLaps(t *testing.T) {
	w := &idleWheel{start: time.Now()} // driven by hand: no ticker
	a := &connActor{pid: actor.NewPID("test", "a")}
	w.schedule(a, 150*time.Second)
	due := a.wheelDue
	if due <= idleSlots {
		t.Fatalf("due at tick %d, want more than a lap (%d)", due, idleSlots)
	}
	if got := w.expire(due-1, nil); len(got) != 0 {
		t.Fatal("the check came on an earlier lap through its slot, before its tick")
	}
	if got := w.expire(due, nil); len(got) != 1 || got[0] != a.pid {
		t.Fatalf("at its tick: %v, want the socket's check", got)
	}
	if a.wheelDue != 0 || len(w.slots[due%idleSlots]) != 0 {
		t.Fatal("the socket is still in the wheel after its check")
	}
}
