package bench

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// socketTimeout bounds each socket's handshake and each subscribe.
const socketTimeout = 10 * time.Second

// deliveryConfig is a publish phase's shape, shared by fanout and the
// optional publish phase of connections.
type deliveryConfig struct {
	Rate       float64       // events/s
	Duration   time.Duration // publishing time
	Payload    int           // bytes of event data
	Drain      time.Duration // grace after the last publish before counting
	Publishers int           // concurrent HTTP publishers
}

func (d *deliveryConfig) validate(probs []string, rateFlag, durFlag string, optional bool) []string {
	if !(d.Rate > 0 && d.Rate <= maxRate) {
		probs = append(probs, fmt.Sprintf("%s must be > 0 and at most %d events/s (got %v)", rateFlag, maxRate, d.Rate))
	}
	lo := time.Nanosecond
	if optional {
		lo = 0
	}
	probs = checkDuration(probs, durFlag, d.Duration, lo, maxDuration)
	probs = checkRange(probs, "--payload", d.Payload, 0, maxPayload)
	probs = checkDuration(probs, "--drain", d.Drain, 0, maxDrain)
	probs = checkRange(probs, "--publishers", d.Publishers, 1, maxWorkers)
	return probs
}

// deliveryReport is the outcome of one publish phase.
type deliveryReport struct {
	RatePerSecond       float64        `json:"rate_per_second"`
	DurationSeconds     float64        `json:"duration_seconds"`
	PayloadBytes        int            `json:"payload_bytes"`
	Publishers          int            `json:"publishers"`
	PublishedThrough    []string       `json:"published_through"` // the nodes whose HTTP API took the publishes, in turn
	EventsScheduled     int64          `json:"events_scheduled"`  // rate × duration
	EventsSent          int64          `json:"events_sent"`       // publish requests started
	EventsPublished     int64          `json:"events_published"`  // answered 2xx
	PublishErrors       int64          `json:"publish_errors"`    // non-2xx or transport errors
	PublishRateLimited  int64          `json:"publish_rate_limited"`
	Expected            int64          `json:"expected"`   // Σ subscribers of each published event's channel
	Delivered           int64          `json:"delivered"`  // unique (socket, event) pairs of published events
	Lost                int64          `json:"lost"`       // expected − delivered, after the drain
	Duplicates          int64          `json:"duplicates"` // repeated (socket, event) pairs
	Unexpected          int64          `json:"unexpected"` // bench events a socket should not have got
	DeliveredUnacked    int64          `json:"delivered_unacked"`
	DeliveriesPerSecond float64        `json:"deliveries_per_second"`
	MaxSendLagMS        float64        `json:"max_send_lag_ms"` // how far publishers fell behind schedule
	Latency             latencySummary `json:"latency"`         // due time → frame read
	PublishLatency      latencySummary `json:"publish_request_latency"`
}

func (d *deliveryReport) rows() []row {
	rows := []row{
		{"rate", fmt.Sprintf("%g events/s", d.RatePerSecond)},
		{"duration", fmt.Sprintf("%gs", d.DurationSeconds)},
		{"payload", fmt.Sprintf("%d B", d.PayloadBytes)},
		{"published through", strings.Join(d.PublishedThrough, ", ")},
		{"events", fmt.Sprintf("%d scheduled, %d sent, %d published", d.EventsScheduled, d.EventsSent, d.EventsPublished)},
		{"publish errors", fmt.Sprintf("%d (%d rate-limited)", d.PublishErrors, d.PublishRateLimited)},
		{"expected", fmt.Sprint(d.Expected)},
		{"delivered", fmt.Sprint(d.Delivered)},
		{"lost", fmt.Sprint(d.Lost)},
		{"duplicates", fmt.Sprint(d.Duplicates)},
	}
	if d.Unexpected > 0 {
		rows = append(rows, row{"unexpected", fmt.Sprint(d.Unexpected)})
	}
	if d.DeliveredUnacked > 0 {
		rows = append(rows, row{"delivered unacked", fmt.Sprint(d.DeliveredUnacked)})
	}
	return append(rows,
		row{"deliveries/s", fmt.Sprintf("%.0f", d.DeliveriesPerSecond)},
		row{"latency", d.Latency.String()},
		row{"publish request", d.PublishLatency.String()},
		row{"max send lag", fmt.Sprintf("%.2fms", d.MaxSendLagMS)},
	)
}

// deliveryPhase publishes, drains and counts. It closes the pool, because
// counting needs the read loops to have ended. Event k goes through the
// HTTP API of through[k mod len(through)]. sent feeds the progress line.
func deliveryPhase(ctx context.Context, e *env, info *runInfo, p *pool, tr *tracker, subs []*subscriber, cfg deliveryConfig, through []target, channel func(int) string, sent *atomic.Int64) deliveryReport {
	pubs := make([]*publisher, len(through))
	names := make([]string, len(through))
	for i, t := range through {
		pubs[i] = newPublisher(t, cfg.Publishers)
		defer pubs[i].client.CloseIdleConnections()
		names[i] = t.String()
	}
	serverCPU0 := e.server.cpu()
	meter := startCPU()
	start := time.Now()
	ps := publishPhase(ctx, tr, pubs, cfg, channel, e.errs, func() { sent.Add(1) })
	info.Bench = meter.stop()
	// Deliveries still in flight when the last publish returns get the
	// drain period; what has not arrived by then is lost.
	sleepCtx(ctx, cfg.Drain)
	serverCPU := e.server.cpu() - serverCPU0
	p.closeAll()
	c := tr.count(subs)

	d := deliveryReport{
		RatePerSecond:      cfg.Rate,
		DurationSeconds:    cfg.Duration.Seconds(),
		PayloadBytes:       cfg.Payload,
		Publishers:         cfg.Publishers,
		PublishedThrough:   names,
		EventsScheduled:    tr.events,
		EventsSent:         ps.issued,
		EventsPublished:    ps.acked,
		PublishErrors:      ps.errors,
		PublishRateLimited: ps.rateLimited,
		Expected:           c.expected,
		Delivered:          c.delivered,
		Lost:               c.lost,
		Duplicates:         c.dups,
		Unexpected:         c.strays,
		DeliveredUnacked:   c.unacked,
		MaxSendLagMS:       round(float64(ps.maxLag)/1e6, 3),
		Latency:            summarize(tr.latency),
		PublishLatency:     summarize(ps.requestLat),
	}
	// Throughput over the span that deliveries actually took.
	span := ps.elapsed
	if !c.lastDelivery.IsZero() {
		span = max(span, c.lastDelivery.Sub(start))
	}
	if span > 0 {
		d.DeliveriesPerSecond = round(float64(c.delivered)/span.Seconds(), 1)
	}
	if info.Server != nil {
		info.Server.setPublishCPU(serverCPU, c.delivered+c.dups+c.strays)
	}

	if ps.maxLag > 100*time.Millisecond {
		info.note("publishers fell up to %s behind schedule; latency includes that wait (more --publishers helps if the server is not the limit)", ps.maxLag.Round(time.Millisecond))
	}
	if ctx.Err() == nil && ps.issued < tr.events {
		info.note("the server took publishes too slowly: %d of %d events were never sent (publishing stops %s after the start)", tr.events-ps.issued, tr.events, giveUpAfter(cfg.Duration))
	}
	if ps.rateLimited > 0 {
		info.note("%d publishes were rate-limited (HTTP 429) by the server", ps.rateLimited)
	}
	if n := p.disconnects.Load(); n > 0 && c.lost > 0 {
		info.note("%d sockets disconnected during the run; deliveries they missed count as lost", n)
	}
	if b := info.Bench; b.CPUPercent > 80*float64(b.Cores) {
		info.note("the bench used %.0f%% CPU on %d cores while publishing: it may have been the limit", b.CPUPercent, b.Cores)
	}
	return d
}
