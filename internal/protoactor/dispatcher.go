package protoactor

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// WorkerDispatcher runs actors' mailboxes on long-lived goroutines where one
// is idle, and on a new goroutine otherwise (protoactor's default starts a
// goroutine every time a mailbox gets work).
//
// A new goroutine starts with a small stack, and an actor's message goes
// deep (the mailbox, the actor, the protocol, JSON, a write): in CPU
// profiles of a connect storm, copying grown stacks (runtime.copystack) took
// 11–15 % of the server's CPU, most of it on mailbox goroutines. A worker's
// stack has grown once already. Handing work over never waits: a worker
// takes it only when it is idle, so a busy or blocked actor never holds up
// another.
type WorkerDispatcher struct {
	work       chan func() // unbuffered: a send succeeds only to an idle worker
	done       chan struct{}
	throughput int
}

var _ actor.Dispatcher = (*WorkerDispatcher)(nil)

// NewWorkerDispatcher starts workers goroutines and returns once each runs
// (on a busy machine a new goroutine may wait long for a turn, and until
// then no work lands on it); throughput is protoactor's (messages a mailbox
// handles before it yields).
func NewWorkerDispatcher(workers, throughput int) *WorkerDispatcher {
	d := &WorkerDispatcher{work: make(chan func()), done: make(chan struct{}), throughput: throughput}
	var started sync.WaitGroup
	started.Add(workers)
	for range workers {
		go d.run(started.Done)
	}
	started.Wait()
	return d
}

func (d *WorkerDispatcher) run(started func()) {
	started()
	for {
		select {
		case fn := <-d.work:
			fn()
		case <-d.done:
			return
		}
	}
}

func (d *WorkerDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		go fn()
	}
}

func (d *WorkerDispatcher) Throughput() int { return d.throughput }

// stop ends the workers; work scheduled afterwards gets its own goroutine.
func (d *WorkerDispatcher) Stop() { close(d.done) }
