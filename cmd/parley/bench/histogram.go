package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram is a log-linear histogram of non-negative int64 values (we
// record nanoseconds). Values below 2*histSub are counted exactly; above
// that, every power-of-two range is split into histSub equal buckets, so a
// reported percentile is within 1/(2*histSub) ≈ 0.4% of the true value.
// It is small (about 58 KB), needs no configuration of the range, and
// Record is lock-free so many socket read loops can share one instance.
//
// A hand-written histogram is used instead of an HDR module because the
// bench needs only Record and Quantile, and this is about 100 lines.
type histogram struct {
	// counts, count, sum, min and max are only touched with atomics.
	counts [histBuckets]uint64
	count  uint64
	sum    uint64
	min    int64 // math.MaxInt64 while empty
	max    int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // buckets per power of two
	// The largest index comes from bits.Len64 = 63 (the biggest int64):
	// shift 55, mantissa 255 → 55*128 + 255.
	histBuckets = (63-histSubBits)*histSub + 2*histSub
)

func newHistogram() *histogram {
	h := &histogram{}
	h.min = math.MaxInt64
	return h
}

// bucketOf maps v ≥ 0 to its bucket. The buckets are contiguous: the
// linear region [0, 2*histSub) maps to itself, and each later power of two
// [2^k, 2^(k+1)) maps to histSub buckets of width 2^(k-histSubBits).
func bucketOf(v int64) int {
	u := uint64(v)
	if u < 2*histSub {
		return int(u)
	}
	shift := bits.Len64(u) - (histSubBits + 1)
	return shift*histSub + int(u>>uint(shift))
}

// bucketRange returns the smallest and largest value that map to bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < 2*histSub {
		return int64(i), int64(i)
	}
	shift := i/histSub - 1
	mant := int64(i%histSub + histSub)
	lo = mant << uint(shift)
	hi = (mant+1)<<uint(shift) - 1
	return lo, hi
}

// Record adds one value; negative values (clock steps) count as zero.
func (h *histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	atomic.AddUint64(&h.counts[bucketOf(v)], 1)
	atomic.AddUint64(&h.count, 1)
	atomic.AddUint64(&h.sum, uint64(v))
	for {
		cur := atomic.LoadInt64(&h.min)
		if v >= cur || atomic.CompareAndSwapInt64(&h.min, cur, v) {
			break
		}
	}
	for {
		cur := atomic.LoadInt64(&h.max)
		if v <= cur || atomic.CompareAndSwapInt64(&h.max, cur, v) {
			break
		}
	}
}

// RecordDuration records d in nanoseconds.
func (h *histogram) RecordDuration(d time.Duration) { h.Record(int64(d)) }

// Count is the number of recorded values.
func (h *histogram) Count() int64 { return int64(atomic.LoadUint64(&h.count)) }

// Max is the exact largest recorded value (0 when empty).
func (h *histogram) Max() int64 {
	if h.Count() == 0 {
		return 0
	}
	return atomic.LoadInt64(&h.max)
}

// Min is the exact smallest recorded value (0 when empty).
func (h *histogram) Min() int64 {
	if h.Count() == 0 {
		return 0
	}
	return atomic.LoadInt64(&h.min)
}

// Mean is the exact arithmetic mean (0 when empty).
func (h *histogram) Mean() float64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	return float64(atomic.LoadUint64(&h.sum)) / float64(n)
}

// Quantile returns the value at quantile q in [0, 1]: the midpoint of the
// bucket holding the ceil(q*count)-th smallest value, clamped to the exact
// min and max so that Quantile(0) and Quantile(1) are exact. It may run
// while other goroutines Record; the answer is then approximate.
func (h *histogram) Quantile(q float64) int64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	lo, hi := h.Min(), h.Max()
	if q <= 0 {
		return lo
	}
	if q >= 1 {
		return hi
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += atomic.LoadUint64(&h.counts[i])
		if seen >= rank {
			blo, bhi := bucketRange(i)
			v := blo + (bhi-blo)/2
			return min(max(v, lo), hi)
		}
	}
	return hi // counts raced ahead of count; fall back to the max
}
