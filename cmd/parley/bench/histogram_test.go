package bench

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// within reports whether got is within rel of want.
func within(got, want int64, rel float64) bool {
	return math.Abs(float64(got-want)) <= rel*float64(want)
}

func TestHistogramUniform(t *testing.T) {
	h := newHistogram()
	for us := int64(1); us <= 10000; us++ {
		h.RecordDuration(time.Duration(us) * time.Microsecond)
	}
	const precision = 1.0 / histSub // bucket width relative to its value, at most
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 5000_000}, {0.9, 9000_000}, {0.99, 9900_000}, {0.999, 9990_000}} {
		if got := h.Quantile(c.q); !within(got, c.want, precision) {
			t.Errorf("p%g = %dns, want %dns ± %.2f%%", c.q*100, got, c.want, precision*100)
		}
	}
	if h.Max() != 10_000_000 || h.Quantile(1) != 10_000_000 {
		t.Errorf("max = %d, Quantile(1) = %d, want exactly 10000µs", h.Max(), h.Quantile(1))
	}
	if h.Min() != 1000 || h.Quantile(0) != 1000 {
		t.Errorf("min = %d, want exactly 1µs", h.Min())
	}
	if h.Count() != 10000 || math.Abs(h.Mean()-5000.5e3) > 1e-6 {
		t.Errorf("count %d mean %f", h.Count(), h.Mean())
	}
}

func TestHistogramAllEqualAndSingle(t *testing.T) {
	h := newHistogram()
	for range 1000 {
		h.Record(123_456_789)
	}
	for _, q := range []float64{0, 0.5, 0.99, 0.999, 1} {
		if got := h.Quantile(q); got != 123_456_789 {
			t.Errorf("all-equal: q%g = %d, want exact 123456789", q, got)
		}
	}
	s := newHistogram()
	s.Record(42_000)
	if s.Quantile(0.5) != 42_000 || s.Quantile(0.999) != 42_000 || s.Max() != 42_000 {
		t.Errorf("single value: p50 %d p99.9 %d max %d", s.Quantile(0.5), s.Quantile(0.999), s.Max())
	}
	e := newHistogram()
	if e.Quantile(0.5) != 0 || e.Max() != 0 || e.Count() != 0 {
		t.Error("an empty histogram should report zeros")
	}
}

func TestHistogramNegativeIsZero(t *testing.T) {
	h := newHistogram()
	h.Record(-5)
	if h.Max() != 0 || h.Min() != 0 {
		t.Errorf("min %d max %d, want 0", h.Min(), h.Max())
	}
}

// Every value must fall inside its bucket's range, and neighbouring
// buckets must neither overlap nor leave gaps.
func TestHistogramBuckets(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := []int64{0, 1, 255, 256, 257, 511, 512, 1<<20 - 1, 1 << 20, math.MaxInt64}
	for range 10000 {
		vals = append(vals, r.Int64N(1<<uint(r.IntN(62)+1)))
	}
	for _, v := range vals {
		i := bucketOf(v)
		lo, hi := bucketRange(i)
		if v < lo || v > hi || i >= histBuckets {
			t.Fatalf("value %d in bucket %d [%d, %d]", v, i, lo, hi)
		}
		if hi > lo && float64(hi-lo) > float64(lo)/histSub {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d", i, lo, hi, histSub)
		}
	}
	for i := 1; i < histBuckets; i++ {
		_, prevHi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
	}
}

func TestHistogramConcurrent(t *testing.T) {
	h := newHistogram()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				h.Record(int64(g*1000 + i))
			}
		}()
	}
	wg.Wait()
	if h.Count() != 8000 || h.Max() != 7999 || h.Min() != 0 {
		t.Errorf("count %d min %d max %d", h.Count(), h.Min(), h.Max())
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := newHistogram()
	b.ReportAllocs()
	for i := range b.N {
		h.Record(int64(i) * 997)
	}
}
