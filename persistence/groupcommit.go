package persistence

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrBusy is a send refused because too many sends are already waiting
// for their group commit (or the Sender is closed); nothing was stored.
var ErrBusy = errors.New("persistence: too many sends waiting")

// SenderOptions tune a Sender; zero fields take their defaults.
type SenderOptions struct {
	// MaxGroup bounds the sends stored in one transaction (default 256).
	MaxGroup int
	// Queue bounds the sends waiting for a group (default 8192); past it
	// Send answers ErrBusy at once.
	Queue int
	// Timeout bounds one group's transaction (default 10 s).
	Timeout time.Duration
	// Lanes is how many groups may commit at once (default 1). A matter's
	// sends always take the same lane (matter id mod Lanes), so they stay
	// in order; other matters' groups need not wait for its commit. One
	// lane suits the embedded database, whose one writer serialises
	// everything anyway.
	Lanes int
}

func (o SenderOptions) withDefaults() SenderOptions {
	if o.MaxGroup <= 0 {
		o.MaxGroup = 256
	}
	if o.Queue <= 0 {
		o.Queue = 8192
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Lanes <= 0 {
		o.Lanes = 1
	}
	return o
}

// Sender is a group commit of sends. Concurrent Send calls queue; one
// goroutine per lane takes whatever queued while its previous group
// committed (up to MaxGroup) and stores it with Store.SendMessages in one
// transaction.
// There is no gather window: a lone send commits at once, and under load
// the groups grow by themselves, so one commit (one fsync, one matter lock)
// serves many sends. Each Send returns only after its own group committed,
// and the after hooks of a group run in the order of its sends, after the
// commit and before the lane stores its next group: events broadcast from
// them go out in id order per matter.
type Sender struct {
	st    Store
	o     SenderOptions
	lanes []*lane

	mu     sync.RWMutex // guards closed against enqueues
	closed bool
	stop   chan struct{}
}

// lane is one committer: a queue and the goroutine that drains it.
type lane struct {
	g     *Sender
	queue chan *pendingSend
	done  chan struct{}
}

type pendingSend struct {
	send   Send
	after  func(SendResult)
	result chan SendResult
}

// NewSender starts a Sender on st; Close stops it.
func NewSender(st Store, o SenderOptions) *Sender {
	o = o.withDefaults()
	g := &Sender{st: st, o: o, stop: make(chan struct{})}
	for range o.Lanes {
		l := &lane{g: g, queue: make(chan *pendingSend, max(1, o.Queue/o.Lanes)), done: make(chan struct{})}
		g.lanes = append(g.lanes, l)
		go l.loop()
	}
	return g
}

// Send queues s for the next group and waits for that group to commit (or
// fail: the group's transaction is bounded by Timeout, so the wait is).
// after, if not nil, runs once the send is stored, in commit order, before
// Send returns; it must not block. ctx is not consulted while waiting: a
// send that was queued is stored or refused, and its caller learns which.
func (g *Sender) Send(s Send, after func(SendResult)) SendResult {
	p := &pendingSend{send: s, after: after, result: make(chan SendResult, 1)}
	l := g.lanes[uint64(s.MatterID)%uint64(len(g.lanes))]
	g.mu.RLock()
	ok := !g.closed
	if ok {
		select {
		case l.queue <- p:
		default:
			ok = false
		}
	}
	g.mu.RUnlock()
	if !ok {
		return SendResult{Err: ErrBusy}
	}
	return <-p.result
}

// Close stores what is queued, then stops; later sends get ErrBusy.
func (g *Sender) Close() {
	g.mu.Lock()
	already := g.closed
	g.closed = true
	g.mu.Unlock()
	if !already {
		close(g.stop)
	}
	for _, l := range g.lanes {
		<-l.done
	}
}

func (l *lane) loop() {
	defer close(l.done)
	g := l.g
	group := make([]*pendingSend, 0, g.o.MaxGroup)
	for {
		var first *pendingSend
		select {
		case first = <-l.queue:
		case <-g.stop:
			// No enqueue can happen any more: store what is left.
			for {
				select {
				case p := <-l.queue:
					g.commit(append(group[:0], p))
				default:
					return
				}
			}
		}
		group = append(group[:0], first)
	gather:
		for len(group) < g.o.MaxGroup {
			select {
			case p := <-l.queue:
				group = append(group, p)
			default:
				break gather
			}
		}
		g.commit(group)
	}
}

func (g *Sender) commit(group []*pendingSend) {
	sends := make([]Send, len(group))
	for i, p := range group {
		sends[i] = p.send
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.o.Timeout)
	res := g.st.SendMessages(ctx, sends)
	cancel()
	for i, p := range group {
		if res[i].Err == nil && p.after != nil {
			p.after(res[i])
		}
		p.result <- res[i]
	}
}
