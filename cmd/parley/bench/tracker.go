package bench

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"sync/atomic"
	"time"
)

// tracker counts the deliveries of published events. Event seq goes to
// channel seq mod channels, so a subscriber of channel c expects the
// events c, c+C, c+2C, … and keeps one bit per expected event: that is
// enough to tell unique deliveries from duplicates without a map and
// without locks, since each subscriber is touched by one read loop only.
type tracker struct {
	// Set at construction.
	channels int
	events   int64 // events scheduled
	latency  *histogram

	// acked has bit seq set once the server acknowledged event seq; set by
	// the publishers with atomic ORs, read after publishing ends.
	acked []uint64

	// frames counts every bench event frame received, for the progress line.
	frames atomic.Int64
}

// subscriber is one socket's view of the deliveries.
type subscriber struct {
	channel int
	// Owned by the socket's read loop until the pool is closed.
	seen                 []uint64 // bit k: event k*channels+channel arrived
	unique, dups, strays int64
	lastDelivery         int64 // unix nanos
}

func newTracker(channels int, events int64) *tracker {
	return &tracker{
		channels: channels,
		events:   events,
		latency:  newHistogram(),
		acked:    make([]uint64, (events+63)/64),
	}
}

func (t *tracker) newSubscriber(channel int) *subscriber {
	perChannel := (t.events + int64(t.channels) - 1) / int64(t.channels)
	return &subscriber{channel: channel, seen: make([]uint64, (perChannel+63)/64)}
}

// ack records that the server accepted event seq.
func (t *tracker) ack(seq int64) {
	atomic.OrUint64(&t.acked[seq/64], 1<<(uint(seq)%64))
}

func (t *tracker) isAcked(seq int64) bool {
	return atomic.LoadUint64(&t.acked[seq/64])&(1<<(uint(seq)%64)) != 0
}

// handler is the read-loop callback for sub. Latency is measured from the
// time the event was due, not sent, so publisher delays count against
// the server (see openLoop).
func (t *tracker) handler(sub *subscriber) frameHandler {
	return func(name, msg []byte) {
		if string(name) != benchEvent {
			return // a pusher:error is followed by a close, which the pool logs
		}
		now := time.Now().UnixNano()
		t.frames.Add(1)
		seq, ok1 := intAfter(msg, keySeq)
		due, ok2 := intAfter(msg, keyTS)
		if !ok1 || !ok2 || seq >= t.events || int(seq%int64(t.channels)) != sub.channel {
			sub.strays++
			return
		}
		k := seq / int64(t.channels)
		w, bit := k/64, uint64(1)<<(uint(k)%64)
		if sub.seen[w]&bit != 0 {
			sub.dups++
			return
		}
		sub.seen[w] |= bit
		sub.unique++
		sub.lastDelivery = now
		t.latency.Record(now - due)
	}
}

// deliveryCounts is the outcome of a publish phase.
type deliveryCounts struct {
	expected, delivered, lost, dups, strays, unacked int64
	lastDelivery                                     time.Time
}

// count totals the subscribers' bits against the acknowledged events. It
// must run after the read loops ended. subs may hold nils (sockets that
// never subscribed); they expect nothing.
func (t *tracker) count(subs []*subscriber) deliveryCounts {
	var c deliveryCounts
	perChannel := make([]int64, t.channels)
	for _, s := range subs {
		if s != nil {
			perChannel[s.channel]++
		}
	}
	allAcked := true
	for seq := int64(0); seq < t.events; seq++ {
		if t.isAcked(seq) {
			c.expected += perChannel[seq%int64(t.channels)]
		} else {
			allAcked = false
		}
	}
	var last int64
	for _, s := range subs {
		if s == nil {
			continue
		}
		c.dups += s.dups
		c.strays += s.strays
		last = max(last, s.lastDelivery)
		if allAcked {
			c.delivered += s.unique
			continue
		}
		// Deliveries of events whose publish failed are not expected, so
		// they are neither delivered nor lost.
		for w, word := range s.seen {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &= word - 1
				seq := (int64(w)*64+int64(b))*int64(t.channels) + int64(s.channel)
				if t.isAcked(seq) {
					c.delivered++
				} else {
					c.unacked++
				}
			}
		}
	}
	c.lost = c.expected - c.delivered
	if last > 0 {
		c.lastDelivery = time.Unix(0, last)
	}
	return c
}

// publishStats is what the publishers saw.
type publishStats struct {
	loopStats
	acked, errors, rateLimited int64
	requestLat                 *histogram // HTTP round trip of each publish
}

// publishPhase publishes t.events events open-loop as cfg says, event seq
// to channel channelName(seq mod C) through pubs[seq mod len(pubs)].
func publishPhase(ctx context.Context, t *tracker, pubs []*publisher, cfg deliveryConfig, channelName func(int) string, errs *errorLog, onAck func()) publishStats {
	lat := newHistogram()
	var acked, failed, limited atomic.Int64
	loop := openLoop{rate: cfg.Rate, count: t.events, workers: cfg.Publishers, giveUp: giveUpAfter(cfg.Duration)}
	ls := loop.run(ctx, func(ctx context.Context, seq int64, due time.Time) {
		data := eventPayload(seq, due.UnixNano(), cfg.Payload)
		start := time.Now()
		pub := pubs[seq%int64(len(pubs))]
		err := pub.trigger(ctx, channelName(int(seq%int64(t.channels))), data)
		lat.RecordDuration(time.Since(start))
		if err != nil {
			if ctx.Err() != nil {
				return // interrupted, not a server error
			}
			failed.Add(1)
			var se *statusError
			if errors.As(err, &se) && se.Status == http.StatusTooManyRequests {
				limited.Add(1)
			}
			errs.add("publish", err)
			return
		}
		t.ack(seq)
		acked.Add(1)
		if onAck != nil {
			onAck()
		}
	})
	return publishStats{loopStats: ls, acked: acked.Load(), errors: failed.Load(), rateLimited: limited.Load(), requestLat: lat}
}

// expectedDeliveries is subscribers × events / channels, the number the
// tracker keeps a bit for, checked against maxExpectedDeliveries.
func expectedDeliveries(subscribers, channels int, events int64) (int64, error) {
	perChannel := (events + int64(channels) - 1) / int64(channels)
	subsPerChannel := (int64(subscribers) + int64(channels) - 1) / int64(channels)
	total := perChannel * subsPerChannel * int64(channels)
	if total > maxExpectedDeliveries {
		return total, fmt.Errorf("the run would expect %d deliveries (subscribers × rate × duration ÷ channels), over the cap of %d; lower --rate, --duration or --subscribers", total, int64(maxExpectedDeliveries))
	}
	return total, nil
}
