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
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/unread"
	"github.com/parley-chat/parley/cluster"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/httpapi"
	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/metrics"
	"github.com/parley-chat/parley/persistence"
)

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(args, os.LookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "parley:", err)
		return 2
	}
	log := newLogger(stderr, cfg.Observability)
	if os.Getenv("GOGC") == "" {
		// The delivery path does not allocate, so collecting more often is
		// cheap, and it keeps the garbage of connection handshakes from
		// inflating memory per socket (measured: 6.8 → 5.6 KB RSS each).
		debug.SetGCPercent(50)
	}
	if err := cfg.EnsureApp(); err != nil {
		fmt.Fprintln(stderr, "parley:", err)
		return 1
	}
	for _, a := range cfg.Apps {
		switch {
		case a.GeneratedNow:
			fmt.Fprintf(stdout, "No app configured: generated credentials (kept in %s)\n  PARLEY_APP_ID=%s\n  PARLEY_APP_KEY=%s\n  PARLEY_APP_SECRET=%s\n",
				cfg.CredentialsFile(), a.ID, a.Key, a.Secret)
		case a.Generated:
			// The secret was printed when it was generated; it is in the file.
			fmt.Fprintf(stdout, "No app configured: using saved credentials from %s (app id %s, key %s)\n",
				cfg.CredentialsFile(), a.ID, a.Key)
		}
	}

	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = connectionsFromFileLimit(log)
	}
	node := actors.NewNode(cfg, log)
	api := httpapi.New(cfg, node, log)
	var met *metrics.Metrics
	if cfg.Metrics {
		met = metrics.New(buildVersion())
		node.SetMetrics(met)
		api.SetMetrics(met, cfg.MetricsAddr == "", cfg.MetricsToken)
	}
	stopCore := func() { node.Stop() }
	var chatSvc *chat.Service
	if cfg.Chat {
		st, err := openStore(ctx, cfg)
		if err != nil {
			fmt.Fprintln(stderr, "parley:", err)
			node.Stop()
			return 1
		}
		defer st.Close()
		log.Info("database ready", "dialect", st.Dialect(), "database", describeDatabase(cfg))
		chatSvc = chat.Mount(api.Engine(), chat.Deps{Config: cfg, Store: met.Store(st, cfg.Apps[0].ID), Node: node, App: &cfg.Apps[0], Log: log,
			Login: chat.LoginOptions{
				AttemptsPerMinute:   cfg.LoginAttemptsPerMinute,
				IPAttemptsPerMinute: cfg.LoginIPAttemptsPerMinute,
				HashConcurrency:     cfg.PasswordHashConcurrency,
				TrustedProxies:      cfg.TrustedProxies,
			},
			Unread: unread.Options{Window: cfg.UnreadWindow, ReconcileEvery: cfg.UnreadReconcile, Log: log},
			Signed: api.Signed(),
		})
		api.AddReadinessCheck("database", chatSvc.Ping)
		stopCore = func() {
			chatSvc.Stop()
			node.Stop()
		}
	} else {
		log.Info("chat backend off: Pusher server only, no database")
	}
	if cfg.Clustered() {
		opts := cluster.Options{Name: cfg.ClusterName, Address: cfg.ClusterAddress, Peers: cfg.ClusterPeers, Etcd: cfg.ClusterEtcd}
		if chatSvc != nil {
			opts.Kinds = append(opts.Kinds, chatSvc.UnreadKind())
		}
		cl, err := cluster.Join(node, opts)
		if err != nil {
			fmt.Fprintln(stderr, "parley:", err)
			stopCore()
			return 1
		}
		if chatSvc != nil {
			chatSvc.UseCluster(cl)
		}
	}
	// No TCP keep-alive probes: the Pusher protocol's own ping/pong finds dead
	// peers, and skipping the setsockopt calls makes each connect cheaper.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", cfg.ListenAddr())
	if err != nil {
		fmt.Fprintf(stderr, "parley: cannot listen on %s: %v\n", cfg.ListenAddr(), err)
		stopCore()
		return 1
	}
	scheme := "http"
	var certs *certReloader // nil without TLS: SIGHUP then only logs
	if cfg.TLS() {
		if certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey); err != nil {
			fmt.Fprintln(stderr, "parley:", err)
			ln.Close()
			stopCore()
			return 1
		}
		ln = tlsListener(ln, certs)
		scheme = "https"
	}
	defer onSIGHUP(certs, log)()
	const readHeaderTimeout = 10 * time.Second
	if !cfg.TLS() {
		// WebSocket connects are answered before net/http (see httpapi.Front).
		ln = api.Front(ln, readHeaderTimeout)
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	for _, a := range cfg.Apps {
		log.Info("app", "id", a.ID, "key", a.Key, "client_events", a.ClientEvents, "user_authentication", a.UserAuthentication)
	}
	log.Info("parley listening", "addr", ln.Addr().String(), "scheme", scheme, "version", buildVersion(), "debug", cfg.Debug)
	if met != nil && cfg.MetricsAddr != "" {
		stopMetrics, bound, err := met.Serve(ctx, cfg.MetricsAddr, cfg.MetricsToken)
		if err != nil {
			fmt.Fprintf(stderr, "parley: cannot listen on --metrics-addr %s: %v\n", cfg.MetricsAddr, err)
			stopCore()
			return 1
		}
		defer stopMetrics()
		log.Info("metrics listening", "addr", bound, "token", cfg.MetricsToken != "")
	} else if met != nil {
		log.Info("metrics at /metrics on the main port", "token", cfg.MetricsToken != "")
	}
	if addr := os.Getenv("PARLEY_PPROF_ADDR"); addr != "" {
		// Profiling for operators, on its own listener (keep it on loopback).
		go func() { log.Warn("pprof stopped", slog.Any("error", http.ListenAndServe(addr, pprofMux()))) }()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		log.Error("server stopped", slog.Any("error", err))
		stopCore()
		return 1
	case <-ctx.Done():
	}

	log.Info("shutting down", "deadline", cfg.ShutdownTimeout)
	// Leave the cluster first: the other nodes drop this node's presence at
	// once instead of when the membership provider notices.
	node.LeaveCluster()
	deadline := time.Now().Add(cfg.ShutdownTimeout)
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("http shutdown", slog.Any("error", err))
		}
	}()
	go func() {
		defer wg.Done()
		if err := node.Drain(sctx); err != nil {
			log.Warn("sockets still open at the deadline", slog.Any("error", err))
		}
	}()
	wg.Wait()
	// Webhooks still held back (the vacate delay) go now; what is queued
	// gets until the deadline, and at least a second, to be sent.
	wctx, wcancel := context.WithTimeout(context.Background(), max(time.Until(deadline), time.Second))
	node.CloseWebhooks(wctx)
	wcancel()
	stopCore()
	log.Info("stopped")
	return 0
}

// openStore opens the configured database and applies pending migrations.
func openStore(ctx context.Context, cfg *config.Config) (persistence.Store, error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := persistence.Open(octx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		if cfg.DatabaseURL != "" {
			return nil, fmt.Errorf("cannot open the PostgreSQL database in DATABASE_URL: %w", err)
		}
		return nil, fmt.Errorf("cannot open the embedded database in %s: %w", cfg.DataDir, err)
	}
	if err := st.Migrate(octx); err != nil {
		st.Close()
		return nil, fmt.Errorf("database migration failed: %w", err)
	}
	return st, nil
}

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
