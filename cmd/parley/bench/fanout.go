package bench

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"sort"
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

Several nodes: give --port more than once (--port 8080,8081). Sockets are
dealt to the nodes in turn (their counts differ by one at most) so that
each channel has subscribers on every node once it has as many as there
are nodes; events are published through the first node's HTTP API, or
with --publish-all-nodes event k through node k mod N's (so that no one
node's HTTP API carries every publish, as in a scale-out test), and the
report counts subscribers per node.

Slow consumers: --slow-consumers N opens N more sockets (spread over the
channels and nodes the same way) that subscribe and then never read. They
are not measured; the healthy subscribers are, as usual. At the end the
bench reads what the server queued for each and reports how many the
server still held open (a server should drop them; Parley closes them
with 4101). The report always shows the host's TCP memory from
/proc/net/sockstat at the start, at its peak and at the end.

Example:
  parley bench fanout --subscribers 10000 --channels 100 --rate 2000 --duration 30s`,
	newCommand: func(c *commonConfig) command { return &fanoutCmd{common: c} },
}

// fanoutCmd is the fanout scenario's configuration.
type fanoutCmd struct {
	common        *commonConfig
	Subscribers   int // sockets; default 1000
	SlowConsumers int // sockets that subscribe and never read; default 0
	// PublishAllNodes publishes event k through node k mod N's HTTP API
	// instead of the first node's.
	PublishAllNodes bool
	publicChannels
	deliveryConfig
}

// multiNode: fanout spreads its sockets over every --port.
func (f *fanoutCmd) multiNode() bool { return true }

func (f *fanoutCmd) register(fs *flag.FlagSet) {
	fs.IntVar(&f.Subscribers, "subscribers", 1000, fmt.Sprintf("subscriber sockets (at most %d)", maxSockets))
	fs.IntVar(&f.Subscribers, "n", 1000, "short for --subscribers")
	f.publicChannels.register(fs, "subscriber", "subscribers")
	fs.IntVar(&f.SlowConsumers, "slow-consumers", 0, "extra sockets that subscribe (slow consumer j to channel j mod channels) and then never read; not measured")
	fs.BoolVar(&f.PublishAllNodes, "publish-all-nodes", false, "with several --port: publish event k through node k mod N's HTTP API, not only the first node's")
	registerDelivery(fs, &f.deliveryConfig, "rate", "duration", 1000, 10*time.Second)
}

// publishTargets are the nodes whose HTTP API the events go through, in turn.
func (f *fanoutCmd) publishTargets(e *env) []target {
	if f.PublishAllNodes {
		return e.nodes
	}
	return []target{e.target}
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

func (f *fanoutCmd) sockets() int { return f.Subscribers + f.SlowConsumers + f.Publishers }

func (f *fanoutCmd) validate() []string {
	var probs []string
	probs = checkRange(probs, "--subscribers", f.Subscribers, 1, maxSockets)
	probs = checkRange(probs, "--slow-consumers", f.SlowConsumers, 0, maxSockets)
	if f.Subscribers+f.SlowConsumers > maxSockets && f.Subscribers <= maxSockets && f.SlowConsumers <= maxSockets {
		probs = append(probs, fmt.Sprintf("--subscribers plus --slow-consumers must be at most %d (got %d)", maxSockets, f.Subscribers+f.SlowConsumers))
	}
	probs = f.publicChannels.validate(probs, f.Subscribers)
	probs = f.deliveryConfig.validate(probs, "--rate", "--duration", false)
	if len(probs) == 0 {
		if _, err := expectedDeliveries(f.Subscribers, f.Channels, itemsFor(f.Rate, f.Duration)); err != nil {
			probs = append(probs, err.Error())
		}
	}
	return probs
}

// publicChannels are --channels and --channel-prefix of the scenarios
// whose sockets each join one public channel: socket i joins channel i mod
// Channels.
type publicChannels struct {
	Channels      int    // zero means min(100, sockets)
	ChannelPrefix string // default "bench-"
}

// register defines the flags; socket names a socket in their usage and
// countFlag the flag that counts them.
func (p *publicChannels) register(fs *flag.FlagSet, socket, countFlag string) {
	fs.IntVar(&p.Channels, "channels", 0, fmt.Sprintf("public channels; %s i joins channel i mod channels (default min(100, %s))", socket, countFlag))
	fs.StringVar(&p.ChannelPrefix, "channel-prefix", "bench-", "channel name prefix")
}

// validate fills in an unset --channels for that many sockets and adds the
// flags' problems to probs.
func (p *publicChannels) validate(probs []string, sockets int) []string {
	p.Channels = defaultChannels(p.Channels, sockets)
	probs = checkRange(probs, "--channels", p.Channels, 1, max(sockets, 1))
	return checkChannelPrefix(probs, p.ChannelPrefix)
}

// channel is channel c's name.
func (p *publicChannels) channel(c int) string { return p.ChannelPrefix + strconv.Itoa(c) }

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
	b := connectBudget(f.Subscribers) + publishBudget(f.Duration, f.Drain)
	if f.SlowConsumers > 0 {
		b += connectBudget(f.SlowConsumers) + slowCheckBudget
	}
	return b
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
	Nodes            []nodeReport   `json:"nodes"` // one per --port

	// Slow consumers (--slow-consumers); zero without.
	SlowConsumers    int              `json:"slow_consumers"`
	SlowConnected    int64            `json:"slow_connected"`     // subscribed, then never read
	SlowOpenAtEnd    int64            `json:"slow_open_at_end"`   // the server had not closed them
	SlowClosed       int64            `json:"slow_closed"`        // closed by the server
	SlowCloseCodes   map[string]int64 `json:"slow_close_codes"`   // close code ("none": no close frame) → sockets
	SlowDrainedBytes int64            `json:"slow_drained_bytes"` // queued for them, read at the end

	TCPMem *tcpMemReport `json:"tcp_memory"` // null where /proc/net/sockstat is unreadable
	deliveryReport
}

// nodeReport is one node's share of the sockets.
type nodeReport struct {
	Target        string `json:"target"`
	Subscribers   int    `json:"subscribers"`    // assigned (see nodeFor)
	Connected     int64  `json:"connected"`      // of them, subscribed
	SlowConsumers int    `json:"slow_consumers"` // assigned
	SlowConnected int64  `json:"slow_connected"`
}

func (r *fanoutReport) rows() []row {
	rows := []row{
		{"subscribers", fmt.Sprintf("%d of %d connected (%d failed, %d disconnected)", r.Connected, r.Subscribers, r.ConnectErrors, r.Disconnects)},
		{"channels", strconv.Itoa(r.Channels)},
		{"connect", fmt.Sprintf("%.2fs; subscribed %s", r.ConnectSeconds, r.SubscribeLatency)},
	}
	if len(r.Nodes) > 1 {
		for _, n := range r.Nodes {
			v := fmt.Sprintf("%d of %d subscribers connected", n.Connected, n.Subscribers)
			if n.SlowConsumers > 0 {
				v += fmt.Sprintf(", %d of %d slow consumers", n.SlowConnected, n.SlowConsumers)
			}
			rows = append(rows, row{"node " + n.Target, v})
		}
	}
	if r.SlowConsumers > 0 {
		rows = append(rows, row{"slow consumers", fmt.Sprintf("%d of %d subscribed; at the end %d still open, %d closed by the server%s; %s queued for them read at the end",
			r.SlowConnected, r.SlowConsumers, r.SlowOpenAtEnd, r.SlowClosed, fmtCodes(r.SlowCloseCodes), fmtBytes(r.SlowDrainedBytes))})
	}
	if r.TCPMem != nil {
		rows = append(rows, row{"TCP memory", r.TCPMem.String()})
	}
	return append(rows, r.deliveryReport.rows()...)
}

// fmtCodes renders close codes as " (4101 ×3, none ×1)".
func fmtCodes(codes map[string]int64) string {
	if len(codes) == 0 {
		return ""
	}
	keys := make([]string, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, codes[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func (f *fanoutCmd) run(ctx context.Context, e *env) (report, error) {
	rep := &fanoutReport{runInfo: e.newInfo(), Subscribers: f.Subscribers, Channels: f.Channels, SlowConsumers: f.SlowConsumers}
	rep.Server = e.newServerReport()
	mem, err := startTCPMem()
	if err != nil {
		rep.note("no TCP memory figures: %v", err)
	}
	// Taken at the end of every path, so a failed run still shows it.
	defer func() {
		if mem != nil {
			rep.TCPMem = mem.end()
		}
	}()
	tr := newTracker(f.Channels, itemsFor(f.Rate, f.Duration))
	subs := make([]*subscriber, f.Subscribers)
	place := func(i int) int { return nodeFor(i, f.Channels, len(e.nodes)) }
	p := newNodePool(e.nodes, place, f.Subscribers, socketTimeout, e.errs)
	perNode := make([]atomic.Int64, len(e.nodes))
	var slow *slowSet

	var sent atomic.Int64
	prog := startProgress(e.progress, "fanout", func() string {
		s := fmt.Sprintf("sockets %d/%d", p.connected.Load(), f.Subscribers)
		if slow != nil {
			s += fmt.Sprintf("  slow %d/%d", slow.connected.Load(), f.SlowConsumers)
		}
		return s + fmt.Sprintf("  sent %d  received %d  p99 %s", sent.Load(), tr.frames.Load(), fmtMS(tr.latency.Quantile(0.99)))
	})
	defer prog.stop()

	held, err := connectSubscribers(ctx, e, rep.Server, p, func(i int, s *socket) (frameHandler, error) {
		ch := i % f.Channels
		if _, err := s.subscribe(f.channel(ch), "", "", socketTimeout, nil); err != nil {
			return nil, err
		}
		perNode[place(i)].Add(1)
		sub := tr.newSubscriber(ch)
		subs[i] = sub // read only after the pool is closed
		return tr.handler(sub), nil
	})
	rep.Connected, rep.ConnectErrors = p.connected.Load(), p.failed.Load()
	rep.ConnectSeconds = round(held.Seconds(), 3)
	rep.SubscribeLatency = summarize(p.subscribeLat)
	defer func() { rep.Nodes = f.nodeReports(e.nodes, perNode, slow) }()
	if err != nil {
		p.closeAll()
		return rep, err
	}

	if f.SlowConsumers > 0 {
		// The slow consumers come after the measured sockets so that the
		// connect figures are the same with and without them.
		slow = connectSlow(ctx, e.nodes, place, f.SlowConsumers, e.cfg.DialConcurrency, func(j int) string { return f.channel(j % f.Channels) }, e.errs)
		rep.SlowConnected = slow.connected.Load()
		if err := ctx.Err(); err != nil {
			slow.closeAll()
			p.closeAll()
			return rep, err
		}
	}

	rep.deliveryReport = deliveryPhase(ctx, e, &rep.runInfo, p, tr, subs, f.deliveryConfig, f.publishTargets(e), f.channel, &sent)
	rep.Disconnects = p.disconnects.Load()
	if slow != nil {
		// "End" is now: after the drain, slow consumers as the server left them.
		rep.TCPMem, mem = mem.end(), nil
		o := slow.finishAll(ctx)
		rep.SlowOpenAtEnd, rep.SlowClosed, rep.SlowCloseCodes, rep.SlowDrainedBytes = o.open, o.closed, o.codes, o.drained
		if o.open > 0 {
			rep.note("the server still held %d of %d slow consumers open at the end", o.open, rep.SlowConnected)
		}
		if rep.Server != nil {
			rep.note("server CPU per delivery divides by the measured deliveries only; the server also wrote to the slow consumers")
		}
	}
	prog.stop()
	rep.Completed = ctx.Err() == nil
	return rep, ctx.Err()
}

// nodeReports is each node's share of the sockets.
func (f *fanoutCmd) nodeReports(nodes []target, connected []atomic.Int64, slow *slowSet) []nodeReport {
	out := make([]nodeReport, len(nodes))
	subs, slows := nodeCounts(f.Subscribers, f.Channels, len(nodes)), nodeCounts(f.SlowConsumers, f.Channels, len(nodes))
	for k, t := range nodes {
		out[k] = nodeReport{Target: t.String(), Subscribers: subs[k], Connected: connected[k].Load(), SlowConsumers: slows[k]}
		if slow != nil {
			out[k].SlowConnected = slow.perNode[k].Load()
		}
	}
	return out
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
