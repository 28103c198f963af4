package bench

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestOpenLoopKeepsTheSchedule(t *testing.T) {
	var mu sync.Mutex
	due := map[int64]time.Time{}
	start := time.Now()
	st := openLoop{rate: 500, count: 50, workers: 4}.run(context.Background(), func(_ context.Context, i int64, d time.Time) {
		mu.Lock()
		due[i] = d
		mu.Unlock()
	})
	if st.issued != 50 || len(due) != 50 {
		t.Fatalf("issued %d, saw %d", st.issued, len(due))
	}
	// Item i is due 2 ms after item i−1, whatever the workers do.
	for i := int64(1); i < 50; i++ {
		if gap := due[i].Sub(due[i-1]); gap < 1900*time.Microsecond || gap > 2100*time.Microsecond {
			t.Fatalf("due[%d]−due[%d] = %s, want 2ms", i, i-1, gap)
		}
	}
	if el := time.Since(start); el < 95*time.Millisecond {
		t.Errorf("50 items at 500/s took %s, want about 98ms", el)
	}
}

// A stalled call must not push back the due times of later items: they
// keep their schedule and the lag shows up in maxLag.
func TestOpenLoopChargesStalls(t *testing.T) {
	var mu sync.Mutex
	due := map[int64]time.Time{}
	st := openLoop{rate: 1000, count: 20, workers: 1}.run(context.Background(), func(_ context.Context, i int64, d time.Time) {
		mu.Lock()
		due[i] = d
		mu.Unlock()
		if i == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	})
	if got := due[19].Sub(due[0]); got != 19*time.Millisecond {
		t.Errorf("item 19 due %s after item 0, want 19ms", got)
	}
	if st.maxLag < 40*time.Millisecond {
		t.Errorf("maxLag %s, want ≥ 40ms", st.maxLag)
	}
}

func TestOpenLoopGivesUp(t *testing.T) {
	st := openLoop{rate: 1000, count: 1000, workers: 1, giveUp: 50 * time.Millisecond}.run(context.Background(), func(context.Context, int64, time.Time) {
		time.Sleep(10 * time.Millisecond)
	})
	if st.issued >= 1000 || st.issued < 3 || st.elapsed > 500*time.Millisecond {
		t.Errorf("issued %d in %s; want a handful, stopped near 50ms", st.issued, st.elapsed)
	}
}

func TestOpenLoopStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	st := openLoop{rate: 10, count: 100, workers: 2}.run(ctx, func(context.Context, int64, time.Time) {})
	if st.issued > 2 || st.elapsed > time.Second {
		t.Errorf("issued %d in %s after the context ended", st.issued, st.elapsed)
	}
}

func TestItemsFor(t *testing.T) {
	for _, c := range []struct {
		rate float64
		d    time.Duration
		want int64
	}{{200, time.Second, 200}, {0.5, 3 * time.Second, 2}, {3, 500 * time.Millisecond, 2}, {100, 0, 0}} {
		if got := itemsFor(c.rate, c.d); got != c.want {
			t.Errorf("itemsFor(%v, %s) = %d, want %d", c.rate, c.d, got, c.want)
		}
	}
}
