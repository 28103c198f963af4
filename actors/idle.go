package actors

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// idleWheel wakes ConnectionActors for their activity checks (checkIdle):
// one ticker per node and a slot entry per socket, instead of a runtime
// timer and its callback per socket (~130 B of heap each). Checks run at
// most idleTickEvery late.
type idleWheel struct {
	root  *actor.RootContext
	start time.Time
	stop  chan struct{}
	once  sync.Once

	mu    sync.Mutex
	slots [idleSlots][]*connActor // guarded by mu; a socket is in slot due % idleSlots
	tick  int64                   // the last tick handled; guarded by mu
}

const (
	idleTickEvery = 100 * time.Millisecond
	// idleSlots ticks make a lap (102.4 s); a check due later waits in its
	// slot for its lap.
	idleSlots = 1024
)

func newIdleWheel(root *actor.RootContext) *idleWheel {
	w := &idleWheel{root: root, start: time.Now(), stop: make(chan struct{})}
	go w.run()
	return w
}

// schedule asks for an idleTick to a in d (rounded up to a tick),
// replacing the one a had asked for. Called from a's Receive.
func (w *idleWheel) schedule(a *connActor, d time.Duration) {
	due := int64((time.Since(w.start) + d + idleTickEvery - 1) / idleTickEvery)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(a)
	if due <= w.tick {
		due = w.tick + 1
	}
	s := &w.slots[due%idleSlots]
	a.wheelDue, a.wheelPos = due, int32(len(*s))
	*s = append(*s, a)
}

// cancel forgets a's check: a stopped socket is not kept by the wheel.
func (w *idleWheel) cancel(a *connActor) {
	w.mu.Lock()
	w.removeLocked(a)
	w.mu.Unlock()
}

func (w *idleWheel) removeLocked(a *connActor) {
	if a.wheelDue == 0 {
		return
	}
	s := &w.slots[a.wheelDue%idleSlots]
	last := len(*s) - 1
	moved := (*s)[last]
	(*s)[a.wheelPos] = moved
	moved.wheelPos = a.wheelPos
	(*s)[last] = nil
	*s = (*s)[:last]
	a.wheelDue, a.wheelPos = 0, 0
}

func (w *idleWheel) run() {
	t := time.NewTicker(idleTickEvery)
	defer t.Stop()
	var due []*actor.PID
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		due = w.expire(int64(time.Since(w.start)/idleTickEvery), due[:0])
		for _, pid := range due {
			w.root.Send(pid, idleTick)
		}
		clear(due)
	}
}

// expire handles every tick up to now (all of them, if the ticker dropped
// some) and appends to due the sockets whose check has come, taking them
// out of the wheel.
func (w *idleWheel) expire(now int64, due []*actor.PID) []*actor.PID {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.tick < now {
		w.tick++
		s := &w.slots[w.tick%idleSlots]
		for i := 0; i < len(*s); {
			a := (*s)[i]
			if a.wheelDue > w.tick {
				i++ // a later lap
				continue
			}
			due = append(due, a.pid)
			w.removeLocked(a) // moves the last entry to i
		}
	}
	return due
}

// close stops the wheel's goroutine.
func (w *idleWheel) close() { w.once.Do(func() { close(w.stop) }) }
