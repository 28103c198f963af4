package bench

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/pusher"
)

var connectionsScenario = scenario{
	name:    "connections",
	summary: "ramp to N idle subscribed sockets and hold them: connect rate, subscribe time, server memory",
	details: `Opens --connections sockets (socket i subscribes to channel PREFIX(i mod C)),
with at most --dial-concurrency handshakes in flight and, with --ramp-rate,
at most that many new sockets per second. Then holds them for --hold and
reports the connect rate and the time from dial to subscription_succeeded.
With --private each socket then also subscribes to private-PREFIX(i mod C),
its auth signed with the app secret as an auth endpoint would sign it; the
subscribe time is then until the second subscription_succeeded.

With --server-pid: server RSS per connection ((RSS with all held − RSS
before) ÷ connections) and CPU per connection. With --publish-duration the
bench then publishes for that long at --publish-rate, like fanout, and also
reports the server's CPU time per delivery.

Example:
  parley bench connections --connections 10000 --hold 30s --server-pid $(pidof parley)`,
	newCommand: func(c *commonConfig) command { return &connectionsCmd{common: c} },
}

// connectionsCmd is the connections scenario's configuration.
type connectionsCmd struct {
	common      *commonConfig
	Connections int           // default 1000
	Private     bool          // each socket also joins a private channel
	RampRate    float64       // new sockets per second; 0 = as fast as dialing allows
	Hold        time.Duration // default 5s
	publicChannels
	deliveryConfig
}

func (k *connectionsCmd) register(fs *flag.FlagSet) {
	fs.IntVar(&k.Connections, "connections", 1000, fmt.Sprintf("sockets to open and hold (at most %d)", maxSockets))
	fs.IntVar(&k.Connections, "n", 1000, "short for --connections")
	k.publicChannels.register(fs, "socket", "connections")
	fs.BoolVar(&k.Private, "private", false, "each socket also subscribes to private-PREFIX(i mod channels), signed with --secret")
	fs.Float64Var(&k.RampRate, "ramp-rate", 0, "new sockets per second (0 = as fast as --dial-concurrency allows)")
	fs.DurationVar(&k.Hold, "hold", 5*time.Second, fmt.Sprintf("how long to hold the sockets open (at most %s)", maxHold))
	registerDelivery(fs, &k.deliveryConfig, "publish-rate", "publish-duration", 1000, 0)
}

func (k *connectionsCmd) publishes() bool { return k.Duration > 0 }

func (k *connectionsCmd) credentials() credentials {
	return credentials{key: true, appID: k.publishes(), secret: k.publishes() || k.Private}
}

func (k *connectionsCmd) sockets() int { return k.Connections + k.Publishers }

func (k *connectionsCmd) validate() []string {
	var probs []string
	probs = checkRange(probs, "--connections", k.Connections, 1, maxSockets)
	probs = k.publicChannels.validate(probs, k.Connections)
	probs = checkRange(probs, "--ramp-rate", k.RampRate, 0, maxSockets)
	probs = checkDuration(probs, "--hold", k.Hold, 0, maxHold)
	probs = k.deliveryConfig.validate(probs, "--publish-rate", "--publish-duration", true)
	if len(probs) == 0 && k.publishes() {
		if _, err := expectedDeliveries(k.Connections, k.Channels, itemsFor(k.Rate, k.Duration)); err != nil {
			probs = append(probs, err.Error())
		}
	}
	return probs
}

func (k *connectionsCmd) budget() time.Duration {
	b := connectBudget(k.Connections) + k.Hold + 30*time.Second
	if k.RampRate > 0 {
		b += time.Duration(float64(k.Connections) / k.RampRate * float64(time.Second))
	}
	if k.publishes() {
		b += publishBudget(k.Duration, k.Drain)
	}
	return b
}

// connectionsReport is the connections scenario's result.
type connectionsReport struct {
	runInfo
	Connections      int             `json:"connections"`
	Connected        int64           `json:"connected"`
	ConnectErrors    int64           `json:"connect_errors"`
	Disconnects      int64           `json:"disconnects"`
	StillConnected   int64           `json:"still_connected"` // at the end of the hold
	Channels         int             `json:"channels"`
	Private          bool            `json:"private"`         // each socket also joined a private channel
	RampRateLimit    float64         `json:"ramp_rate_limit"` // 0 = unpaced
	RampSeconds      float64         `json:"ramp_seconds"`
	ConnectRate      float64         `json:"connect_rate_per_second"`
	HoldSeconds      float64         `json:"hold_seconds"`
	ConnectLatency   latencySummary  `json:"connect_latency"`   // dial → connection_established
	SubscribeLatency latencySummary  `json:"subscribe_latency"` // dial → subscription_succeeded
	Publish          *deliveryReport `json:"publish"`           // null without --publish-duration
}

func (r *connectionsReport) rows() []row {
	rows := []row{
		{"connections", fmt.Sprintf("%d of %d connected (%d failed)", r.Connected, r.Connections, r.ConnectErrors)},
		{"channels", channelsRow(r.Channels, r.Private)},
		{"ramp", fmt.Sprintf("%.2fs, %.0f connections/s", r.RampSeconds, r.ConnectRate)},
		{"connected in", r.ConnectLatency.String()},
		{"subscribed in", r.SubscribeLatency.String()},
		{"hold", fmt.Sprintf("%gs, %d still connected, %d disconnected", r.HoldSeconds, r.StillConnected, r.Disconnects)},
	}
	if r.Publish != nil {
		rows = append(rows, r.Publish.rows()...)
	}
	return rows
}

func channelsRow(channels int, private bool) string {
	if private {
		return fmt.Sprintf("%d public + %d private (each socket joins one of each)", channels, channels)
	}
	return strconv.Itoa(channels)
}

func (k *connectionsCmd) run(ctx context.Context, e *env) (report, error) {
	rep := &connectionsReport{runInfo: e.newInfo(), Connections: k.Connections, Channels: k.Channels, Private: k.Private, RampRateLimit: k.RampRate, HoldSeconds: k.Hold.Seconds()}
	rep.Server = e.newServerReport()
	p := newPool(e.target, k.Connections, socketTimeout, e.errs)
	// The tracker exists even without a publish phase; it is tiny then.
	tr := newTracker(k.Channels, itemsFor(k.Rate, k.Duration))
	subs := make([]*subscriber, k.Connections)

	var sent atomic.Int64
	prog := startProgress(e.progress, "connections", func() string {
		s := fmt.Sprintf("sockets %d/%d  failed %d  disconnected %d", p.connected.Load(), k.Connections, p.failed.Load(), p.disconnects.Load())
		if k.publishes() {
			s += fmt.Sprintf("  sent %d  received %d  p99 %s", sent.Load(), tr.frames.Load(), fmtMS(tr.latency.Quantile(0.99)))
		}
		return s
	})
	defer prog.stop()

	meter := startCPU()
	took, err := connectRamp(ctx, e, rep.Server, p, k.RampRate, func(i int, s *socket) (frameHandler, error) {
		ch := i % k.Channels
		if _, err := s.subscribe(k.channel(ch), "", "", socketTimeout, nil); err != nil {
			return nil, err
		}
		if k.Private {
			name := "private-" + k.channel(ch)
			auth := pusher.ChannelAuth(e.target.key, e.target.secret, s.socketID, name, "")
			if _, err := s.subscribe(name, auth, "", socketTimeout, nil); err != nil {
				return nil, err
			}
		}
		sub := tr.newSubscriber(ch)
		subs[i] = sub
		return tr.handler(sub), nil
	})
	rep.Bench = meter.stop()
	rep.Connected, rep.ConnectErrors = p.connected.Load(), p.failed.Load()
	rep.RampSeconds = round(took.Seconds(), 3)
	if took > 0 {
		rep.ConnectRate = round(float64(rep.Connected)/took.Seconds(), 1)
	}
	rep.ConnectLatency, rep.SubscribeLatency = summarize(p.connectLat), summarize(p.subscribeLat)
	if err != nil {
		p.closeAll()
		return rep, err
	}

	sleepCtx(ctx, k.Hold)
	rep.Disconnects = p.disconnects.Load()
	rep.StillConnected = rep.Connected - rep.Disconnects
	if rep.Server != nil {
		// RSS "with N held" is read after the hold, once the server settled.
		rep.Server.setRSS(rep.Server.RSSBeforeBytes, e.server.rss(), rep.Connected)
	}

	if k.publishes() && ctx.Err() == nil {
		d := deliveryPhase(ctx, e, &rep.runInfo, p, tr, subs, k.deliveryConfig, []target{e.target}, k.channel, &sent)
		rep.Publish = &d
		rep.Disconnects = p.disconnects.Load()
	} else {
		p.closeAll()
	}
	prog.stop()
	rep.Completed = ctx.Err() == nil
	return rep, ctx.Err()
}
