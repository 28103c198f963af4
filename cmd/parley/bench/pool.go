package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// joinFunc subscribes socket i (already connected) and returns the handler
// for the frames its read loop will see from then on.
type joinFunc func(i int, s *socket) (frameHandler, error)

// pool connects and holds many sockets, each with one read goroutine.
type pool struct {
	// Set at construction.
	urls    []string        // one per node
	place   func(i int) int // socket i dials urls[place(i)]
	dialer  *websocket.Dialer
	timeout time.Duration // per socket: handshake, and then subscribe
	errs    *errorLog

	// sockets[i] is written once by the worker that connected socket i,
	// before connect returns; read only after that.
	sockets []*socket

	connected   atomic.Int64 // subscribed sockets
	failed      atomic.Int64 // sockets that did not get that far
	disconnects atomic.Int64 // read loops that ended before close

	// connectLat: dial start → connection_established.
	// subscribeLat: dial start → subscription_succeeded.
	connectLat, subscribeLat *histogram

	readers sync.WaitGroup
}

func newPool(t target, n int, timeout time.Duration, errs *errorLog) *pool {
	return newNodePool([]target{t}, func(int) int { return 0 }, n, timeout, errs)
}

// newNodePool spreads n sockets over nodes: socket i goes to nodes[place(i)].
func newNodePool(nodes []target, place func(i int) int, n int, timeout time.Duration, errs *errorLog) *pool {
	urls := make([]string, len(nodes))
	for i, t := range nodes {
		urls[i] = t.wsURL()
	}
	return &pool{
		urls:         urls,
		place:        place,
		dialer:       newDialer(timeout),
		timeout:      timeout,
		errs:         errs,
		sockets:      make([]*socket, n),
		connectLat:   newHistogram(),
		subscribeLat: newHistogram(),
	}
}

// giveUpFailures is how many failures in a row, with no success at all,
// end the connect phase early: the server is down or refuses the key, and
// waiting for thousands more refusals tells nothing new.
const giveUpFailures = 50

// connect opens len(p.sockets) sockets with at most concurrency
// handshakes in flight, at rate sockets/s (0 = no pacing), calling join on
// each. It returns how long the ramp took. It fails only when no socket
// connected at all.
func (p *pool) connect(parent context.Context, concurrency int, rate float64, join joinFunc) (time.Duration, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	loop := openLoop{rate: rate, count: int64(len(p.sockets)), workers: concurrency}
	st := loop.run(ctx, func(ctx context.Context, i int64, _ time.Time) {
		if err := p.connectOne(ctx, int(i), join); err != nil {
			p.errs.add("connect", err)
			if p.failed.Add(1) >= giveUpFailures && p.connected.Load() == 0 {
				cancel()
			}
		}
	})
	if err := parent.Err(); err != nil {
		return st.elapsed, fmt.Errorf("connecting (%d of %d sockets up): %w", p.connected.Load(), len(p.sockets), err)
	}
	if p.connected.Load() == 0 {
		return st.elapsed, fmt.Errorf("no socket could connect to %s: %s", strings.Join(p.urls, ", "), p.errs.any())
	}
	return st.elapsed, nil
}

func (p *pool) connectOne(ctx context.Context, i int, join joinFunc) error {
	start := time.Now()
	s, err := dialSocket(ctx, p.dialer, p.urls[p.place(i)], p.timeout)
	if err != nil {
		return err
	}
	p.connectLat.RecordDuration(time.Since(start))
	h, err := join(i, s)
	if err != nil {
		s.close()
		return err
	}
	p.subscribeLat.RecordDuration(time.Since(start))
	p.sockets[i] = s
	p.connected.Add(1)
	p.readers.Add(1)
	go func() {
		defer p.readers.Done()
		err := s.run(h)
		if !s.closing.Load() {
			p.disconnects.Add(1)
			p.errs.add("read", err)
		}
	}()
	return nil
}

// nodeFor places socket i of a run with channels channels (socket i is
// on channel i mod channels) on one of nodes nodes. Plain round-robin,
// i mod nodes, deals the sockets evenly; but when channels and nodes share
// a factor it keeps each channel on some nodes only (2 nodes, 100
// channels: channel c only on node c mod 2), and the case a cluster must
// route, one channel with subscribers on every node, would never occur.
// So every lcm(channels, nodes) sockets the deal moves on by one node: the
// nodes' counts still differ by one at most, and once every channel has
// nodes subscribers, every channel has one on every node.
func nodeFor(i, channels, nodes int) int {
	if g := gcd(channels, nodes); g > 1 {
		return (i + i/(channels/g*nodes)) % nodes
	}
	return i % nodes
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// nodeCounts is how many of n sockets nodeFor puts on each node.
func nodeCounts(n, channels, nodes int) []int {
	c := make([]int, nodes)
	for i := range n {
		c[nodeFor(i, channels, nodes)]++
	}
	return c
}

// closeAll closes every socket and waits for the read loops to end, after
// which per-socket state may be read without synchronisation.
func (p *pool) closeAll() {
	for _, s := range p.sockets {
		if s != nil {
			s.close()
		}
	}
	p.readers.Wait()
}
