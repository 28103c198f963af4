package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// benchmarkDeliverMetered is wsconn's BenchmarkDeliver with an app's meter
// on the socket and a stamped frame: counting frames, bytes and the
// delivery latency must not allocate per delivery.
func benchmarkDeliverMetered(b *testing.B, m *Metrics) {
	c, client := testkit.SocketPair(b, wsconn.Options{MaxPendingBytes: 1 << 34})
	c.SetMeter(m.App("bench"))
	c.Serve(func([]byte) {}, func() {}, nil)
	frame := wsconn.NewPrepared(pusher.EncodeEvent("bench", "channel", strings.Repeat("x", 200), ""))
	frame.Stamp()
	testkit.BenchDeliver(b, c, client, frame, (*wsconn.Conn).Send)
}

func BenchmarkDeliverMetered(b *testing.B) { benchmarkDeliverMetered(b, New("test")) }

// TestDeliverMeteredAllocatesNothing runs the benchmark and requires 0
// allocations per delivery, and the counters to have counted every frame.
func TestDeliverMeteredAllocatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	m := New("test")
	r := testing.Benchmark(func(b *testing.B) { benchmarkDeliverMetered(b, m) })
	if r.N == 0 {
		t.Fatal("the benchmark did not run")
	}
	if a := r.AllocsPerOp(); a != 0 {
		t.Fatalf("%d allocations per metered delivery, want 0", a)
	}
	// Every frame was stamped: once the writers have reported their last
	// writes (the client may read a write before it is counted), the
	// latencies observed equal the frames counted, over every run.
	a := m.App("bench")
	deadline := time.Now().Add(10 * time.Second)
	for {
		sent, delivered := value(t, a.sentMsgs), histCount(t, a.latency)
		if sent >= float64(r.N) && float64(delivered) == sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last run %d deliveries: %v frames counted, %d latencies observed", r.N, sent, delivered)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func histCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var d dto.Metric
	if err := o.(prometheus.Metric).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

func TestCloseCodeLabelsAreBounded(t *testing.T) {
	m := New("test")
	a := m.App("x")
	for _, code := range []int{1000, 4001, 4101, 4101, 3999, 4999, 1006} {
		a.Closed(code)
	}
	for label, want := range map[string]float64{"1000": 1, "4001": 1, "4101": 2, "other": 2, "1006": 1} {
		if got := value(t, m.closed.WithLabelValues("x", label)); got != want {
			t.Errorf("code %s: %v, want %v", label, got, want)
		}
	}
	if got := value(t, a.slow); got != 2 {
		t.Errorf("slow consumer drops %v, want 2", got)
	}
}
