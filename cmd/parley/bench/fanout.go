package bench

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

var fanoutScenario = scenario{
	name:    "fanout",
	summary: "N subscribers on C public channels, events published over the HTTP API at a fixed rate",
	details: `Subscriber i joins channel PREFIX(i mod C). Event k goes to channel k mod C,
published over the signed HTTP API open-loop at --rate for --duration by
--publishers concurrent requests. Each event carries its sequence number and
the time it was due; latency is measured from that time. After the last
publish the bench waits --drain, then counts expected, delivered, lost and
duplicated deliveries. With --server-pid it also reports the server's CPU
time per delivery and RSS per connection.

Example:
  parley bench fanout --subscribers 10000 --channels 100 --rate 2000 --duration 30s`,
	define: func(fs *flag.FlagSet, c *commonConfig) command {
		f := &fanoutCmd{common: c}
		f.register(fs)
		return f
	},
}

// fanoutCmd is the fanout scenario's configuration.
type fanoutCmd struct {
	common        *commonConfig
	Subscribers   int    // sockets; default 1000
	Channels      int    // public channels; zero means min(100, Subscribers)
	ChannelPrefix string // default "bench-"
	deliveryConfig
}

func (f *fanoutCmd) register(fs *flag.FlagSet) {
	fs.IntVar(&f.Subscribers, "subscribers", 1000, fmt.Sprintf("subscriber sockets (at most %d)", maxSockets))
	fs.IntVar(&f.Subscribers, "n", 1000, "short for --subscribers")
	fs.IntVar(&f.Channels, "channels", 0, "public channels; subscriber i joins channel i mod channels (default min(100, subscribers))")
	fs.StringVar(&f.ChannelPrefix, "channel-prefix", "bench-", "channel name prefix")
	registerDelivery(fs, &f.deliveryConfig, "rate", "duration", 1000, 10*time.Second)
}

// registerDelivery defines the publish flags shared with connections,
// which names its rate and duration flags differently.
func registerDelivery(fs *flag.FlagSet, d *deliveryConfig, rateFlag, durFlag string, rate float64, dur time.Duration) {
	fs.Float64Var(&d.Rate, rateFlag, rate, fmt.Sprintf("events published per second (at most %d)", maxRate))
	fs.DurationVar(&d.Duration, durFlag, dur, fmt.Sprintf("how long to publish (at most %s)", maxDuration))
	fs.IntVar(&d.Payload, "payload", 200, "event data size in bytes")
	fs.DurationVar(&d.Drain, "drain", 2*time.Second, "grace period after the last publish before counting losses")
	fs.IntVar(&d.Publishers, "publishers", 32, "concurrent HTTP publish requests")
}

func (f *fanoutCmd) credentials() credentials {
	return credentials{appID: true, key: true, secret: true}
}

func (f *fanoutCmd) sockets() int { return f.Subscribers + f.Publishers }

func (f *fanoutCmd) validate() []string {
	var probs []string
	probs = checkRange(probs, "--subscribers", f.Subscribers, 1, maxSockets)
	f.Channels = defaultChannels(f.Channels, f.Subscribers)
	probs = checkRange(probs, "--channels", f.Channels, 1, max(f.Subscribers, 1))
	probs = checkChannelPrefix(probs, f.ChannelPrefix)
	probs = f.deliveryConfig.validate(probs, "--rate", "--duration", false)
	if len(probs) == 0 {
		if _, err := expectedDeliveries(f.Subscribers, f.Channels, itemsFor(f.Rate, f.Duration)); err != nil {
			probs = append(probs, err.Error())
		}
	}
	return probs
}

// defaultChannels fills in an unset --channels: 100, or one per socket
// when there are fewer, so that `-n 10` works without a second flag.
func defaultChannels(channels, sockets int) int {
	if channels == 0 {
		return max(min(100, sockets), 1)
	}
	return channels
}

var channelNameRE = regexp.MustCompile(`^[-a-zA-Z0-9_=@,.;]+$`)

// checkChannelPrefix keeps the channels public and their names valid.
func checkChannelPrefix(probs []string, prefix string) []string {
	switch {
	case !channelNameRE.MatchString(prefix) || len(prefix) > 180:
		return append(probs, fmt.Sprintf("--channel-prefix %q is not a valid channel name prefix", prefix))
	case strings.HasPrefix(prefix, "private-") || strings.HasPrefix(prefix, "presence-"):
		return append(probs, "--channel-prefix must name public channels (no private- or presence- prefix)")
	}
	return probs
}

// publishBudget bounds a publish phase: the schedule may slip to
// giveUpAfter, the last requests may then take their timeout, then drain.
func publishBudget(d, drain time.Duration) time.Duration {
	return giveUpAfter(d) + requestTimeout + drain + 30*time.Second
}

// connectBudget is a generous bound on connecting n sockets.
func connectBudget(n int) time.Duration { return 30*time.Second + time.Duration(n)*2*time.Millisecond }

func (f *fanoutCmd) budget() time.Duration {
	return connectBudget(f.Subscribers) + publishBudget(f.Duration, f.Drain)
}

// fanoutReport is the fanout scenario's result.
type fanoutReport struct {
	runInfo
	Subscribers      int            `json:"subscribers"`
	Connected        int64          `json:"subscribers_connected"`
	ConnectErrors    int64          `json:"connect_errors"`
	Disconnects      int64          `json:"disconnects"`
	Channels         int            `json:"channels"`
	ConnectSeconds   float64        `json:"connect_seconds"`
	SubscribeLatency latencySummary `json:"subscribe_latency"`
	deliveryReport
}

func (r *fanoutReport) rows() []row {
	rows := []row{
		{"subscribers", fmt.Sprintf("%d of %d connected (%d failed, %d disconnected)", r.Connected, r.Subscribers, r.ConnectErrors, r.Disconnects)},
		{"channels", strconv.Itoa(r.Channels)},
		{"connect", fmt.Sprintf("%.2fs; subscribed %s", r.ConnectSeconds, r.SubscribeLatency)},
	}
	return append(rows, r.deliveryReport.rows()...)
}

func (f *fanoutCmd) channel(c int) string { return f.ChannelPrefix + strconv.Itoa(c) }

func (f *fanoutCmd) run(ctx context.Context, e *env) (report, error) {
	rep := &fanoutReport{runInfo: e.newInfo(), Subscribers: f.Subscribers, Channels: f.Channels}
	rep.Server = e.newServerReport()
	tr := newTracker(f.Channels, itemsFor(f.Rate, f.Duration))
	subs := make([]*subscriber, f.Subscribers)
	p := newPool(e.target, f.Subscribers, socketTimeout, e.errs)

	var sent atomic.Int64
	prog := startProgress(e.progress, "fanout", func() string {
		return fmt.Sprintf("sockets %d/%d  sent %d  received %d  p99 %s",
			p.connected.Load(), f.Subscribers, sent.Load(), tr.frames.Load(), fmtMS(tr.latency.Quantile(0.99)))
	})
	defer prog.stop()

	held, err := connectSubscribers(ctx, e, rep.Server, p, func(i int, s *socket) (frameHandler, error) {
		ch := i % f.Channels
		if _, err := s.subscribe(f.channel(ch), "", "", socketTimeout, nil); err != nil {
			return nil, err
		}
		sub := tr.newSubscriber(ch)
		subs[i] = sub // read only after the pool is closed
		return tr.handler(sub), nil
	})
	rep.Connected, rep.ConnectErrors = p.connected.Load(), p.failed.Load()
	rep.ConnectSeconds = round(held.Seconds(), 3)
	rep.SubscribeLatency = summarize(p.subscribeLat)
	if err != nil {
		p.closeAll()
		return rep, err
	}

	rep.deliveryReport = deliveryPhase(ctx, e, &rep.runInfo, p, tr, subs, f.deliveryConfig, f.channel, &sent)
	rep.Disconnects = p.disconnects.Load()
	prog.stop()
	rep.Completed = ctx.Err() == nil
	return rep, ctx.Err()
}

// connectSubscribers runs the connect ramp as fast as --dial-concurrency
// allows and, with --server-pid, samples the server's RSS and CPU around
// it. It returns the ramp's duration.
func connectSubscribers(ctx context.Context, e *env, srv *serverReport, p *pool, join joinFunc) (time.Duration, error) {
	return connectRamp(ctx, e, srv, p, 0, join)
}

// connectRamp is connectSubscribers at a given rate (sockets/s, 0 = unpaced).
func connectRamp(ctx context.Context, e *env, srv *serverReport, p *pool, rate float64, join joinFunc) (time.Duration, error) {
	rss0, cpu0 := e.server.rss(), e.server.cpu()
	took, err := p.connect(ctx, e.cfg.DialConcurrency, rate, join)
	if srv != nil {
		srv.setConnectCPU(e.server.cpu()-cpu0, p.connected.Load())
		srv.setRSS(rss0, e.server.rss(), p.connected.Load())
	}
	return took, err
}
