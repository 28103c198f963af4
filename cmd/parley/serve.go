package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lib/pq"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/unread"
	"github.com/parley-chat/parley/cluster"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/httpapi"
	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/metrics"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/push"
)

// serve is `parley serve`: build the server, join the cluster, listen,
// and on SIGINT or SIGTERM shut down in order.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s, code := build(ctx, args, stdout, stderr)
	if s == nil {
		return code
	}
	defer s.close()
	if err := s.join(); err != nil {
		return s.fail(err)
	}
	if err := s.listen(ctx); err != nil {
		return s.fail(err)
	}
	return s.run(ctx)
}

// server is one run of `parley serve`, step by step: build makes it, join
// connects it to the cluster, listen opens its ports, run serves until
// the context ends and shutdown stops it in order.
type server struct {
	cfg    *config.Config
	log    *slog.Logger
	stderr io.Writer
	node   *actors.Node
	api    *httpapi.Server
	met    *metrics.Metrics // nil with PARLEY_METRICS=false
	chat   *chat.Service    // nil with the chat backend off
	ln     net.Listener
	srv    *http.Server
	// closers run last to first when serve returns, after the core stopped.
	closers []func()
}

// build reads the configuration and makes the logger, the node, the HTTP
// API and the chat service. It returns nil and the exit code when serve
// ends here.
func build(ctx context.Context, args []string, stdout, stderr io.Writer) (*server, int) {
	cfg, err := config.Load(args, os.LookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil, 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "parley:", err)
		return nil, 2
	}
	log := newLogger(stderr, cfg.Observability)
	if os.Getenv("GOGC") == "" {
		// The delivery path does not allocate, so collecting more often is
		// cheap, and it keeps the garbage of connection handshakes from
		// inflating memory per socket (measured: 6.8 → 5.6 KB RSS each).
		debug.SetGCPercent(config.DefaultGCPercent)
	}
	if err := cfg.EnsureApp(); err != nil {
		fmt.Fprintln(stderr, "parley:", err)
		return nil, 1
	}
	announceCredentials(cfg, log, stdout)
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = connectionsFromFileLimit(log)
	}
	s := &server{cfg: cfg, log: log, stderr: stderr}
	s.node = actors.NewNode(cfg, log)
	s.api = httpapi.New(cfg, s.node, log)
	if cfg.Metrics {
		s.met = metrics.New(buildVersion())
		s.node.SetMetrics(s.met)
		s.api.SetMetrics(s.met, cfg.MetricsAddr == "", cfg.MetricsToken)
	}
	if !cfg.Chat {
		log.Info("chat backend off: Pusher server only, no database")
		return s, 0
	}
	if err := s.mountChat(ctx); err != nil {
		s.fail(err)
		s.close()
		return nil, 1
	}
	return s, 0
}

// mountChat opens the database and mounts the chat backend on the API.
func (s *server) mountChat(ctx context.Context) error {
	cfg := s.cfg
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, func() { st.Close() })
	s.log.Info("database ready", "dialect", st.Dialect(), "database", describeDatabase(cfg))
	pushDeps, err := s.pushDeps()
	if err != nil {
		return err
	}
	s.chat = chat.Mount(s.api.Engine(), chat.Deps{Config: cfg, Store: s.met.Store(st, cfg.Apps[0].ID), Node: s.node, App: &cfg.Apps[0], Log: s.log,
		Login: chat.LoginOptions{
			AttemptsPerMinute:   cfg.LoginAttemptsPerMinute,
			IPAttemptsPerMinute: cfg.LoginIPAttemptsPerMinute,
			HashConcurrency:     cfg.PasswordHashConcurrency,
			TrustedProxies:      cfg.TrustedProxies,
		},
		Unread: unread.Options{Window: cfg.UnreadWindow, ReconcileEvery: cfg.UnreadReconcile, Log: s.log},
		Signed: s.api.Signed(),
		Push:   pushDeps,
	})
	s.api.AddReadinessCheck("database", s.chat.Ping)
	return nil
}

// pushDeps makes the push providers the settings turn on; nil when none is.
func (s *server) pushDeps() (*chat.PushDeps, error) {
	cfg := s.cfg
	setup, err := push.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	if setup.Generated {
		s.log.Info("Web Push: generated VAPID keys (every node of a cluster needs the same: copy the file or set PARLEY_VAPID_*)", "file", cfg.VAPIDFile())
	}
	if len(setup.Providers) == 0 {
		s.log.Info("push notifications off: no provider configured")
		return nil, nil
	}
	var platforms []string
	for _, p := range setup.Providers {
		platforms = append(platforms, p.Platform())
	}
	s.log.Info("push notifications on", "platforms", strings.Join(platforms, ","), "window", cfg.Push.Window.String(), "text_length", cfg.Push.TextLength)
	d := &chat.PushDeps{Providers: setup.Providers, VAPIDPublicKey: setup.VAPID.Public, Window: cfg.Push.Window, TextLength: cfg.Push.TextLength,
		Dispatch: push.Options{Queue: cfg.Push.Queue, Concurrency: cfg.Push.Concurrency}}
	if s.met != nil {
		d.Registerer = s.met.Registry()
	}
	return d, nil
}

// announceCredentials says which generated credentials the app uses: on
// stdout, or as a log line with --log-format json so that the output stays
// JSON. The secret is shown only when it was generated now.
func announceCredentials(cfg *config.Config, log *slog.Logger, stdout io.Writer) {
	for _, a := range cfg.Apps {
		switch {
		case a.GeneratedNow && cfg.LogFormat == "json":
			log.Info("no app configured: generated credentials", "file", cfg.CredentialsFile(), "app_id", a.ID, "key", a.Key, "secret", a.Secret)
		case a.GeneratedNow:
			fmt.Fprintf(stdout, "No app configured: generated credentials (kept in %s)\n  PARLEY_APP_ID=%s\n  PARLEY_APP_KEY=%s\n  PARLEY_APP_SECRET=%s\n",
				cfg.CredentialsFile(), a.ID, a.Key, a.Secret)
		case a.Generated && cfg.LogFormat == "json":
			log.Info("no app configured: using saved credentials", "file", cfg.CredentialsFile(), "app_id", a.ID, "key", a.Key)
		case a.Generated:
			// The secret was printed when it was generated; it is in the file.
			fmt.Fprintf(stdout, "No app configured: using saved credentials from %s (app id %s, key %s)\n",
				cfg.CredentialsFile(), a.ID, a.Key)
		}
	}
}

// join connects the node to its cluster, when it is one of a cluster.
func (s *server) join() error {
	cfg := s.cfg
	if !cfg.Clustered() {
		return nil
	}
	opts := cluster.Options{Name: cfg.ClusterName, Address: cfg.ClusterAddress, Peers: cfg.ClusterPeers, Etcd: cfg.ClusterEtcd}
	if s.chat != nil {
		opts.Kinds = append(opts.Kinds, s.chat.UnreadKind())
	}
	cl, err := cluster.Join(s.node, opts)
	if err != nil {
		return err
	}
	if s.chat != nil {
		s.chat.UseCluster(cl)
	}
	return nil
}

// listen opens the main port (with TLS when configured), the metrics
// listener and pprof, and makes the HTTP server.
func (s *server) listen(ctx context.Context) error {
	cfg, log := s.cfg, s.log
	// No TCP keep-alive probes: the Pusher protocol's own ping/pong finds dead
	// peers, and skipping the setsockopt calls makes each connect cheaper.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", cfg.ListenAddr())
	if err != nil {
		return listenError(cfg.ListenAddr(), "--port or PARLEY_PORT", err)
	}
	scheme := "http"
	var certs *certReloader // nil without TLS: SIGHUP then only logs
	if cfg.TLS() {
		if certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey); err != nil {
			ln.Close()
			return err
		}
		ln = tlsListener(ln, certs)
		scheme = "https"
	}
	s.closers = append(s.closers, onSIGHUP(certs, log))
	const readHeaderTimeout = 10 * time.Second
	if !cfg.TLS() {
		// WebSocket connects are answered before net/http (see httpapi.Front).
		ln = s.api.Front(ln, readHeaderTimeout)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.api.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	for _, a := range cfg.Apps {
		log.Info("app", "id", a.ID, "key", a.Key, "client_events", a.ClientEvents, "user_authentication", a.UserAuthentication)
	}
	log.Info("parley listening", "addr", ln.Addr().String(), "scheme", scheme, "version", buildVersion(), "debug", cfg.Debug)
	if err := s.listenMetrics(ctx); err != nil {
		ln.Close()
		return err
	}
	if addr := cfg.PprofAddr; addr != "" {
		// Profiling for operators, on its own listener (keep it on loopback).
		go func() { log.Warn("pprof stopped", slog.Any("error", http.ListenAndServe(addr, pprofMux()))) }()
	}
	return nil
}

// listenMetrics serves /metrics on its own address when one is set.
func (s *server) listenMetrics(ctx context.Context) error {
	cfg := s.cfg
	switch {
	case s.met == nil:
	case cfg.MetricsAddr != "":
		stop, bound, err := s.met.Serve(ctx, cfg.MetricsAddr, cfg.MetricsToken)
		if err != nil {
			return listenError("--metrics-addr "+cfg.MetricsAddr, "--metrics-addr or PARLEY_METRICS_ADDR", err)
		}
		s.closers = append(s.closers, stop)
		s.log.Info("metrics listening", "addr", bound, "token", cfg.MetricsToken != "")
	default:
		s.log.Info("metrics at /metrics on the main port", "token", cfg.MetricsToken != "")
	}
	return nil
}

// listenError is a listener that could not open, in one line; an address
// in use says which setting picks another.
func listenError(what, setting string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("cannot listen on %s: the address is already in use (another process has it); choose another with %s", what, setting)
	}
	return fmt.Errorf("cannot listen on %s: %v", what, err)
}

// run serves until the context ends (SIGINT, SIGTERM), then shuts down.
func (s *server) run(ctx context.Context) int {
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.srv.Serve(s.ln) }()
	select {
	case err := <-serveErr:
		s.log.Error("server stopped", slog.Any("error", err))
		s.stopCore()
		return 1
	case <-ctx.Done():
	}
	s.shutdown()
	return 0
}

// shutdown stops in order: leave the cluster, stop accepting and drain the
// sockets by the deadline, send the webhooks held back, stop the core.
func (s *server) shutdown() {
	cfg, log := s.cfg, s.log
	log.Info("shutting down", "deadline", cfg.ShutdownTimeout)
	// Leave the cluster first: the other nodes drop this node's presence at
	// once instead of when the membership provider notices.
	s.node.LeaveCluster()
	deadline := time.Now().Add(cfg.ShutdownTimeout)
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := s.srv.Shutdown(sctx); err != nil {
			log.Warn("http shutdown", slog.Any("error", err))
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.node.Drain(sctx); err != nil {
			log.Warn("sockets still open at the deadline", slog.Any("error", err))
		}
	}()
	wg.Wait()
	// Webhooks still held back (the vacate delay) go now; what is queued
	// gets until the deadline, and at least a second, to be sent.
	wctx, wcancel := context.WithTimeout(context.Background(), max(time.Until(deadline), time.Second))
	s.node.CloseWebhooks(wctx)
	wcancel()
	s.stopCore()
	log.Info("stopped")
}

// stopCore stops the chat service, then the node.
func (s *server) stopCore() {
	if s.chat != nil {
		s.chat.Stop()
	}
	s.node.Stop()
}

// fail reports a start-up error, stops the core and gives the exit code.
func (s *server) fail(err error) int {
	fmt.Fprintln(s.stderr, "parley:", err)
	s.stopCore()
	return 1
}

// close runs the closers, last to first: the metrics listener, the SIGHUP
// handler, the database.
func (s *server) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// openStore opens the configured database and applies pending migrations.
func openStore(ctx context.Context, cfg *config.Config) (persistence.Store, error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := persistence.Open(octx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		if cfg.DatabaseURL != "" {
			return nil, fmt.Errorf("cannot open the PostgreSQL database in DATABASE_URL: %w%s", err, createDatabaseHint(err, cfg.DatabaseURL))
		}
		return nil, fmt.Errorf("cannot open the embedded database in %s: %w", cfg.DataDir, err)
	}
	if err := st.Migrate(octx); err != nil {
		st.Close()
		return nil, fmt.Errorf("database migration failed: %w", err)
	}
	return st, nil
}

// createDatabaseHint says how to create the database when the server
// answered that it does not exist, else nothing.
func createDatabaseHint(err error, databaseURL string) string {
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) || pqErr.Code != "3D000" { // invalid_catalog_name
		return ""
	}
	name := ""
	if u, perr := url.Parse(databaseURL); perr == nil {
		name = strings.TrimPrefix(u.Path, "/")
	}
	if _, quoted, ok := strings.Cut(pqErr.Message, `"`); name == "" && ok {
		name, _, _ = strings.Cut(quoted, `"`)
	}
	if name == "" {
		return "; create the database first"
	}
	shell, sql := name, name
	if !plainIdentifier.MatchString(name) {
		shell = "'" + strings.ReplaceAll(name, "'", `'\''`) + "'"
		sql = `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	}
	return fmt.Sprintf("; create it with: createdb %s (or in psql: CREATE DATABASE %s;)", shell, sql)
}

// plainIdentifier is a database name that needs no quotes in a shell or
// in SQL.
var plainIdentifier = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// connectionsFromFileLimit is the default node-wide socket cap: the open-files
// limit (which Go raises to the hard limit at start) less room for the
// listener, HTTP API clients, the database and the cluster.
func connectionsFromFileLimit(log *slog.Logger) int {
	const reserve = 1024
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<24 {
		return 0 // no usable limit: no cap
	}
	n := int(rl.Cur) - reserve
	if n < int(rl.Cur)/2 {
		n = int(rl.Cur) / 2
	}
	log.Info("socket limit", "max_connections", n, "open_files_limit", rl.Cur)
	return n
}

// newLogger is the server's log: text (key=value) or JSON lines on stderr.
func newLogger(w io.Writer, o config.Observability) *slog.Logger {
	opts := &slog.HandlerOptions{Level: o.LogLevel}
	if o.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
