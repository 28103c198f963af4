package push

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// dispatchMetrics are the dispatcher's series; every method is a no-op on
// a nil receiver (no registry).
type dispatchMetrics struct {
	sentTotal    *prometheus.CounterVec
	failedTotal  *prometheus.CounterVec
	removedTotal *prometheus.CounterVec
	duration     *prometheus.HistogramVec
}

func newDispatchMetrics(reg prometheus.Registerer, depth func() float64) *dispatchMetrics {
	if reg == nil {
		return nil
	}
	m := &dispatchMetrics{
		sentTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "parley", Name: "push_sent_total",
			Help: "Pushes a provider accepted, by platform."}, []string{"platform"}),
		failedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "parley", Name: "push_failed_total",
			Help: "Failed push attempts, by platform and class (dead_token, unavailable: retried, rejected, dropped)."}, []string{"platform", "class"}),
		removedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "parley", Name: "push_tokens_removed_total",
			Help: "Devices removed because their provider said the token is dead, by platform."}, []string{"platform"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "parley", Name: "push_send_duration_seconds",
			Help: "Time of one request to a push provider, by platform.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"platform"}),
	}
	reg.MustRegister(m.sentTotal, m.failedTotal, m.removedTotal, m.duration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "parley", Name: "push_queue_depth",
			Help: "Pushes waiting for a provider on this node."}, depth))
	return m
}

func (m *dispatchMetrics) sent(platform string) {
	if m != nil {
		m.sentTotal.WithLabelValues(platform).Inc()
	}
}

func (m *dispatchMetrics) failed(platform string, c Class) {
	if m != nil {
		m.failedTotal.WithLabelValues(platform, string(c)).Inc()
	}
}

func (m *dispatchMetrics) removed(platform string) {
	if m != nil {
		m.removedTotal.WithLabelValues(platform).Inc()
	}
}

func (m *dispatchMetrics) latency(platform string, d time.Duration) {
	if m != nil {
		m.duration.WithLabelValues(platform).Observe(d.Seconds())
	}
}
