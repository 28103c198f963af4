package actors

import "github.com/asynkron/protoactor-go/actor"

// workerDispatcher runs actors' mailboxes on long-lived goroutines where one
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
type workerDispatcher struct {
	work       chan func() // unbuffered: a send succeeds only to an idle worker
	done       chan struct{}
	throughput int
}

var _ actor.Dispatcher = (*workerDispatcher)(nil)

// newWorkerDispatcher starts workers goroutines; throughput is protoactor's
// (messages a mailbox handles before it yields).
func newWorkerDispatcher(workers, throughput int) *workerDispatcher {
	d := &workerDispatcher{work: make(chan func()), done: make(chan struct{}), throughput: throughput}
	for range workers {
		go d.run()
	}
	return d
}

func (d *workerDispatcher) run() {
	for {
		select {
		case fn := <-d.work:
			fn()
		case <-d.done:
			return
		}
	}
}

func (d *workerDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		go fn()
	}
}

func (d *workerDispatcher) Throughput() int { return d.throughput }

// stop ends the workers; work scheduled afterwards gets its own goroutine.
func (d *workerDispatcher) stop() { close(d.done) }
