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
// stack has grown once already.
//
// Without a queue, handing work over never waits: a worker takes it only
// when it is idle, so a busy or blocked actor never holds up another (for
// ChannelActors, which wait for their fan-out). With a queue, up to that
// many mailboxes wait for a worker when none is idle, and only past it does
// work get a goroutine of its own: for actors that never block
// (ConnectionActors), whose work a worker finishes soon. In a connect storm
// without a queue, more than half of them got a new goroutine: no worker was
// parked at that instant, those just handed work not being back yet.
type WorkerDispatcher struct {
	work       chan func() // a send succeeds to an idle worker, or into the queue
	done       chan struct{}
	throughput int
}

var _ actor.Dispatcher = (*WorkerDispatcher)(nil)

// NewWorkerDispatcher starts workers goroutines and returns once each runs
// (on a busy machine a new goroutine may wait long for a turn, and until
// then no work lands on it); throughput is protoactor's (messages a mailbox
// handles before it yields); queue is how many mailboxes may wait for a
// worker (0: none, work never waits).
func NewWorkerDispatcher(workers, throughput, queue int) *WorkerDispatcher {
	d := &WorkerDispatcher{work: make(chan func(), queue), done: make(chan struct{}), throughput: throughput}
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
			d.drain()
			return
		}
	}
}

func (d *WorkerDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
		if cap(d.work) > 0 {
			select {
			case <-d.done: // stopped: the workers may be gone already
				d.drain()
			default:
			}
		}
	default:
		go fn()
	}
}

// drain gives the work still queued a goroutine each.
func (d *WorkerDispatcher) drain() {
	for {
		select {
		case fn := <-d.work:
			go fn()
		default:
			return
		}
	}
}

func (d *WorkerDispatcher) Throughput() int { return d.throughput }

// stop ends the workers; work scheduled afterwards gets its own goroutine.
func (d *WorkerDispatcher) Stop() { close(d.done) }
