// Package metrics is Parley's Prometheus registry: what the WebSocket server,
// the HTTP API, the chat backend and the database do, per app. Counters on
// the delivery path are resolved once per app (AppMeter) and bumped with
// atomic adds, so counting allocates nothing.
package metrics

import (
	"context"
	"crypto/subtle"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name.
const Namespace = "parley"

// AppStats is a snapshot of one app's state on this node, read at scrape time.
type AppStats struct {
	Connections   int // open sockets
	Channels      int // occupied channels
	Subscriptions int // socket-channel subscriptions
}

// Source reports the node's state at scrape time (the actors' Node).
type Source interface {
	// AppStats returns the state of every configured app, by app id.
	AppStats() map[string]AppStats
	// PublishBacklog is the publishes waiting to be fanned out.
	PublishBacklog() int64
	// ClusterForwards counts the forwards (publishes, client events,
	// terminations sent to every other node) this node sent again to a peer
	// that missed them, and those it missed and gave up.
	ClusterForwards() (resent, lost int64)
	// PublishesRefused counts the publishes and chat writes refused with
	// 503 because the fan-out backlog was full, or because the node had no
	// quorum of its cluster.
	PublishesRefused() (busy, noQuorum int64)
	// ClusterState is whether the node is in a cluster, serves (has a
	// quorum), the members it hears (itself included) and those counted
	// for the quorum.
	ClusterState() (clustered, serving bool, members, counted int)
}

// Metrics is the registry and every Parley metric. A nil *Metrics counts
// nothing.
type Metrics struct {
	reg *prometheus.Registry

	opened     *prometheus.CounterVec
	closed     *prometheus.CounterVec
	slowDrops  *prometheus.CounterVec
	recvMsgs   *prometheus.CounterVec
	recvBytes  *prometheus.CounterVec
	sentMsgs   *prometheus.CounterVec
	sentBytes  *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	httpReqs   *prometheus.CounterVec
	httpDur    *prometheus.HistogramVec
	chatSends  *prometheus.CounterVec
	dbDuration *prometheus.HistogramVec
	dbErrors   *prometheus.CounterVec

	mu   sync.Mutex
	apps map[string]*AppMeter // guarded by mu
}

// New makes the registry with Go runtime and process metrics, and
// parley_build_info carrying version.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), apps: map[string]*AppMeter{}}
	app := []string{"app"}
	m.opened = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "connections_opened_total",
		Help: "WebSocket connections accepted (past the app, protocol, origin and capacity checks)."}, app)
	m.closed = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "connections_closed_total",
		Help: "WebSocket connections ended, refused ones included, by the close code that ended them (1006: dropped without a close handshake). app is empty for an unknown app key."}, []string{"app", "code"})
	m.slowDrops = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "slow_consumer_drops_total",
		Help: "Sockets closed with 4101 because their outbound queue overflowed."}, app)
	m.recvMsgs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "ws_messages_received_total",
		Help: "WebSocket messages received from clients."}, app)
	m.recvBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "ws_received_bytes_total",
		Help: "Payload bytes of the WebSocket messages received from clients."}, app)
	m.sentMsgs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "ws_messages_sent_total",
		Help: "WebSocket frames written to clients (events, errors, pongs, closes)."}, app)
	m.sentBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "ws_sent_bytes_total",
		Help: "Bytes written to clients' sockets, WebSocket framing included."}, app)
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "delivery_latency_seconds",
		Help:    "From a publish accepted on this node (HTTP API, chat event, or a publish forwarded by another cluster node) to its frame written to a socket.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, app)
	m.httpReqs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "http_requests_total",
		Help: "HTTP requests by route pattern (\"unmatched\" for no route) and status. app is the Pusher API's app id, or the chat's app for /api."}, []string{"app", "method", "route", "status"})
	m.httpDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "http_request_duration_seconds",
		Help:    "HTTP request handling time by route pattern (WebSocket upgrades: the handshake only).",
		Buckets: prometheus.DefBuckets}, []string{"method", "route"})
	m.chatSends = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "chat_messages_sent_total",
		Help: "Chat messages stored (POST /api/messages/send acknowledged)."}, app)
	m.dbDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "db_query_duration_seconds",
		Help:    "Time of each chat store operation (one or a few SQL statements), by operation.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"op"})
	m.dbErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "db_errors_total",
		Help: "Chat store operations that failed for a reason other than not found or conflict (database down, timeout)."}, []string{"op"})

	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info",
		Help: "Always 1; the labels name the running build."}, []string{"version", "goversion"})
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	build.WithLabelValues(version, goVersion).Set(1)

	m.reg.MustRegister(m.opened, m.closed, m.slowDrops, m.recvMsgs, m.recvBytes, m.sentMsgs, m.sentBytes,
		m.latency, m.httpReqs, m.httpDur, m.chatSends, m.dbDuration, m.dbErrors, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the Prometheus registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Watch registers the node's gauges, read from src at each scrape:
// parley_connections, parley_channels, parley_subscriptions per app and
// parley_publish_backlog.
func (m *Metrics) Watch(src Source) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&sourceCollector{src: src})
}

var (
	descConnections = prometheus.NewDesc(Namespace+"_connections", "Open WebSocket connections on this node.", []string{"app"}, nil)
	descChannels    = prometheus.NewDesc(Namespace+"_channels", "Occupied channels on this node (sockets of this node in them).", []string{"app"}, nil)
	descSubs        = prometheus.NewDesc(Namespace+"_subscriptions", "Channel subscriptions of this node's sockets.", []string{"app"}, nil)
	descBacklog     = prometheus.NewDesc(Namespace+"_publish_backlog", "Publishes accepted and not yet fanned out by the channel actors (their mailboxes); past PARLEY_MAX_PUBLISH_BACKLOG the HTTP API answers 503.", nil, nil)
	descResent      = prometheus.NewDesc(Namespace+"_cluster_forwards_resent_total", "Cluster forwards (publishes, client events, terminations) this node sent again to a node that missed them.", nil, nil)
	descLost        = prometheus.NewDesc(Namespace+"_cluster_forwards_lost_total", "Cluster forwards from other nodes this node missed and could not get again (too old, or the sender gone); each loss closes the node's subscribed sockets with 4210.", nil, nil)
	descRefused     = prometheus.NewDesc(Namespace+"_publishes_refused_total", "Publishes (HTTP API) and chat writes refused with 503 before anything was done: reason busy (the fan-out backlog was full) or no_quorum (the node could not reach a majority of its cluster).", []string{"reason"}, nil)
	descServing     = prometheus.NewDesc(Namespace+"_cluster_serving", "1 while this cluster node has a quorum and serves, 0 while it does not (absent on a single node).", nil, nil)
	descMembers     = prometheus.NewDesc(Namespace+"_cluster_members", "Cluster members this node hears, itself included (absent on a single node).", nil, nil)
	descCounted     = prometheus.NewDesc(Namespace+"_cluster_members_counted", "Cluster members counted for the quorum: the configured or registered ones less those removed or gone (absent on a single node).", nil, nil)
)

type sourceCollector struct{ src Source }

func (s *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConnections
	ch <- descChannels
	ch <- descSubs
	ch <- descBacklog
	ch <- descResent
	ch <- descLost
	ch <- descRefused
	ch <- descServing
	ch <- descMembers
	ch <- descCounted
}

func (s *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	for id, st := range s.src.AppStats() {
		ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(st.Connections), id)
		ch <- prometheus.MustNewConstMetric(descChannels, prometheus.GaugeValue, float64(st.Channels), id)
		ch <- prometheus.MustNewConstMetric(descSubs, prometheus.GaugeValue, float64(st.Subscriptions), id)
	}
	ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(s.src.PublishBacklog()))
	resent, lost := s.src.ClusterForwards()
	ch <- prometheus.MustNewConstMetric(descResent, prometheus.CounterValue, float64(resent))
	ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(lost))
	busy, noQuorum := s.src.PublishesRefused()
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(busy), "busy")
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(noQuorum), "no_quorum")
	if clustered, serving, members, counted := s.src.ClusterState(); clustered {
		ch <- prometheus.MustNewConstMetric(descServing, prometheus.GaugeValue, map[bool]float64{true: 1}[serving])
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(members))
		ch <- prometheus.MustNewConstMetric(descCounted, prometheus.GaugeValue, float64(counted))
	}
}

// App returns the app's meter, made once; nil on a nil Metrics. appID ""
// is for sockets refused before their app is known.
func (m *Metrics) App(appID string) *AppMeter {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a, ok := m.apps[appID]; ok {
		return a
	}
	a := &AppMeter{
		m: m, app: appID,
		opened: m.opened.WithLabelValues(appID), slow: m.slowDrops.WithLabelValues(appID),
		recvMsgs: m.recvMsgs.WithLabelValues(appID), recvBytes: m.recvBytes.WithLabelValues(appID),
		sentMsgs: m.sentMsgs.WithLabelValues(appID), sentBytes: m.sentBytes.WithLabelValues(appID),
		latency: m.latency.WithLabelValues(appID), chatSends: m.chatSends.WithLabelValues(appID),
	}
	m.apps[appID] = a
	return a
}

// AppMeter is one app's pre-resolved counters; it is the wsconn.Meter of
// the app's sockets. Methods on a nil AppMeter do nothing.
type AppMeter struct {
	m         *Metrics
	app       string
	opened    prometheus.Counter
	slow      prometheus.Counter
	recvMsgs  prometheus.Counter
	recvBytes prometheus.Counter
	sentMsgs  prometheus.Counter
	sentBytes prometheus.Counter
	latency   prometheus.Observer
	chatSends prometheus.Counter

	closedMu sync.Mutex
	closed   map[int]prometheus.Counter // guarded by closedMu
}

var _ wsconn.Meter = (*AppMeter)(nil)

// Opened counts an accepted connection.
func (a *AppMeter) Opened() {
	if a != nil {
		a.opened.Inc()
	}
}

// Received implements wsconn.Meter.
func (a *AppMeter) Received(bytes int) {
	a.recvMsgs.Inc()
	a.recvBytes.Add(float64(bytes))
}

// Sent implements wsconn.Meter.
func (a *AppMeter) Sent(frames, bytes int) {
	if frames > 0 {
		a.sentMsgs.Add(float64(frames))
	}
	a.sentBytes.Add(float64(bytes))
}

// closeCodeLabel names a close status for metrics with a bounded set of
// values: every code Parley sends, the standard statuses clients and the
// transport send, and "other".
func closeCodeLabel(code int) string {
	if pusher.Code(code).Known() {
		return strconv.Itoa(code)
	}
	switch code {
	case 1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1012, 1013, 1015:
		return strconv.Itoa(code)
	}
	return "other"
}

// Delivered implements wsconn.Meter.
func (a *AppMeter) Delivered(latency time.Duration) { a.latency.Observe(latency.Seconds()) }

// Closed implements wsconn.Meter.
func (a *AppMeter) Closed(code int) {
	if code == int(pusher.CodeSlowConsumer) {
		a.slow.Inc()
	}
	a.closedMu.Lock()
	c, ok := a.closed[code]
	if !ok {
		c = a.m.closed.WithLabelValues(a.app, closeCodeLabel(code))
		if a.closed == nil {
			a.closed = map[int]prometheus.Counter{}
		}
		if len(a.closed) < 64 {
			a.closed[code] = c
		}
	}
	a.closedMu.Unlock()
	c.Inc()
}

// ChatSent counts a stored chat message.
func (a *AppMeter) ChatSent() {
	if a != nil {
		a.chatSends.Inc()
	}
}

// HTTPRequest counts one HTTP request; route is the pattern ("" = no route).
func (m *Metrics) HTTPRequest(app, method, route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead, http.MethodOptions:
	default:
		method = "other" // bounded label values
	}
	m.httpReqs.WithLabelValues(app, method, route, strconv.Itoa(status)).Inc()
	m.httpDur.WithLabelValues(method, route).Observe(d.Seconds())
}

// DBQuery records one store operation's time; failed counts it in
// parley_db_errors_total too.
func (m *Metrics) DBQuery(op string, d time.Duration, failed bool) {
	if m == nil {
		return
	}
	m.dbDuration.WithLabelValues(op).Observe(d.Seconds())
	if failed {
		m.dbErrors.WithLabelValues(op).Inc()
	}
}

// Handler serves the registry in Prometheus' text format. A non-empty
// token must come as "Authorization: Bearer <token>" (else 401).
func (m *Metrics) Handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			http.Error(w, "metrics need Authorization: Bearer <PARLEY_METRICS_TOKEN>", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Serve runs a separate metrics listener until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr, token string) (stop func(), bound string, err error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler(token))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := listen(ctx, addr)
	if err != nil {
		return nil, "", err
	}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, ln.Addr().String(), nil
}
