package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// openLoop issues items 0, 1, 2, … at a fixed rate without a ticker: item i
// is due at start + i/rate. Workers claim the next index from a shared
// counter and sleep only until that item is due. A slow call delays its
// own worker, not the schedule, and an item that goes out late still
// carries the time it was due, so a stalling server is charged the whole
// wait (no coordinated omission).
type openLoop struct {
	rate    float64 // items per second; 0 = as fast as the workers go
	count   int64   // number of items
	workers int     // calls in flight at most
	// giveUp, when set, stops issuing items that late after the start, so
	// that a server far slower than the schedule cannot stretch the run
	// without bound; items not issued are reported, not hidden.
	giveUp time.Duration
}

// loopStats describes how well the schedule was kept.
type loopStats struct {
	issued  int64         // items whose call started
	elapsed time.Duration // from start to the last call returning
	maxLag  time.Duration // the latest any call started after it was due
}

// run calls fn for every item until count is reached, giveUp passes or
// ctx ends, and returns once all calls have returned.
func (o openLoop) run(ctx context.Context, fn func(ctx context.Context, i int64, due time.Time)) loopStats {
	var (
		next   atomic.Int64
		issued atomic.Int64
		maxLag atomic.Int64
		wg     sync.WaitGroup
	)
	start := time.Now()
	workers := max(o.workers, 1)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timer := time.NewTimer(time.Hour)
			timer.Stop()
			for ctx.Err() == nil {
				if o.giveUp > 0 && time.Since(start) > o.giveUp {
					return
				}
				i := next.Add(1) - 1
				if i >= o.count {
					return
				}
				due := start
				if o.rate > 0 {
					due = start.Add(time.Duration(float64(i) * float64(time.Second) / o.rate))
					if d := time.Until(due); d > 0 {
						timer.Reset(d)
						select {
						case <-ctx.Done():
							timer.Stop()
							return
						case <-timer.C:
						}
					}
				}
				if lag := int64(time.Since(due)); lag > 0 {
					storeMax(&maxLag, lag)
				}
				issued.Add(1)
				fn(ctx, i, due)
			}
		}()
	}
	wg.Wait()
	return loopStats{issued: issued.Load(), elapsed: time.Since(start), maxLag: time.Duration(maxLag.Load())}
}

// giveUpAfter is when an open loop meant to last d stops issuing: the
// schedule may slip by d plus a little, not more.
func giveUpAfter(d time.Duration) time.Duration { return 2*d + 5*time.Second }

// itemsFor is the number of items an open loop at rate issues in d: those
// due strictly before start+d.
func itemsFor(rate float64, d time.Duration) int64 {
	n := rate * d.Seconds()
	i := int64(n)
	if float64(i) < n {
		i++
	}
	return i
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// sleepCtx waits for d or until ctx ends, whichever comes first.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 || ctx.Err() != nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
