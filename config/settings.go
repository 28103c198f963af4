package config

import (
	"net"
	"strconv"
	"strings"
)

// Setting is one row of the settings table: where the setting is read
// from, its default, how its value is parsed and checked, and what it
// means. Load reads the settings, `parley serve --help` lists them and the
// documentation's table shows them, all from this one description.
type Setting struct {
	// Group is the heading the setting is listed under.
	Group string
	// Flag is the flag's name without dashes; empty when only the
	// environment sets the setting.
	Flag string
	// Env are its environment variables: the primary name first, then the
	// aliases read when it is unset.
	Env []string
	// Default is the value when neither a flag nor the environment sets
	// it, as it would be typed; empty for none.
	Default string
	// Shown describes the default where Default alone would mislead: a
	// value derived at start, or what "none" means. Marked as Help is.
	Shown string
	// Help says what the setting means, with its unit; `code` is marked
	// for the documentation, and --help drops the backquotes.
	Help string
	// Arg names a flag's value in --help (HOST:PORT, FILE); empty for the
	// kind's own (N, DURATION, VALUE).
	Arg string
	// Secret settings are credentials, or may hold one: they have no
	// default and their value is never repeated.
	Secret bool
	// KeepEmpty makes an empty environment variable a value (an empty
	// event namespace) rather than unset.
	KeepEmpty bool

	// value parses into the configuration; nil for a setting that
	// something else reads (the Go runtime, the admin commands).
	value value
}

// Settings is the settings table, in the order --help and the
// documentation list it.
func Settings() []Setting { return table(&pending{Config: &Config{}}) }

// DefaultOf is the default, as shown, of the setting whose primary
// environment variable is env; empty for no such setting.
func DefaultOf(env string) string {
	for _, s := range Settings() {
		if s.Env[0] == env {
			return s.DefaultText()
		}
	}
	return ""
}

// pending is what Load fills in: the configuration, and the settings that
// join it only once every source has been read.
type pending struct {
	*Config
	// single is the app PARLEY_APP_* describe.
	single App
	// webhookURL and webhookEvents are the single app's webhook.
	webhookURL, webhookEvents string
	// logLevel is PARLEY_LOG_LEVEL, already checked; empty when unset.
	logLevel string
}

// Names of settings that code outside Load reads or names.
const (
	// EnvAdminPassword is the password the admin commands read.
	EnvAdminPassword = "PARLEY_ADMIN_PASSWORD"
	// DefaultDataDir is where the embedded database and the generated
	// credentials are kept unless PARLEY_DATA_DIR says otherwise.
	DefaultDataDir = "./data"
	// DefaultGCPercent is the GOGC Parley sets when GOGC is unset.
	DefaultGCPercent = 50
)

// table is the settings table, bound to the fields of p.
func table(p *pending) []Setting {
	var t []Setting
	for _, group := range []func(*pending) []Setting{serverSettings, appSettings, connectionSettings, chatSettings, pushSettings, tlsSettings, clusterSettings, observabilitySettings} {
		t = append(t, group(p)...)
	}
	for i := range t {
		if d, ok := t[i].value.(*durationValue); ok {
			d.example = t[i].Default
		}
	}
	return t
}

func env(names ...string) []string { return names }

func serverSettings(p *pending) []Setting {
	const g = "Server"
	return []Setting{
		{Group: g, Flag: "host", Env: env("PARLEY_HOST", "REVERB_SERVER_HOST"), Default: "0.0.0.0", Arg: "ADDRESS",
			Help: "listen address", value: text(&p.Host, notEmpty)},
		{Group: g, Flag: "port", Env: env("PARLEY_PORT", "REVERB_SERVER_PORT"), Default: "8080",
			Help: "listen port; 0 picks a free one", value: number(&p.Port, between(0, 65535, "is not a port (0-65535)"))},
		{Group: g, Flag: "data-dir", Env: env("PARLEY_DATA_DIR"), Default: DefaultDataDir, Arg: "DIR",
			Help: "directory of the embedded database and the generated credentials", value: text(&p.DataDir, notEmpty)},
		{Group: g, Flag: "database-url", Env: env("DATABASE_URL", "PARLEY_DATABASE_URL"), Shown: "none: the embedded database", Arg: "URL", Secret: true,
			Help:  "PostgreSQL database, a `postgres://` or `postgresql://` URL (anything else is refused at start); unset uses the embedded SQLite database in the data directory",
			value: text(&p.DatabaseURL, databaseURLProblem)},
		{Group: g, Flag: "chat", Env: env("PARLEY_CHAT"), Default: "true",
			Help: "chat backend: the REST API under `/api` and its database; `false` = Pusher server only, no database opened, `/api` answers 404", value: boolean(&p.Chat)},
		{Group: g, Flag: "shutdown-timeout", Env: env("PARLEY_SHUTDOWN_TIMEOUT"), Default: "10s",
			Help: "deadline for an orderly stop", value: duration(&p.ShutdownTimeout, anyDuration, positive)},
		{Group: g, Flag: "debug", Env: env("PARLEY_DEBUG"), Default: "false",
			Help: "log every frame in and out (and log at debug level)", value: boolean(&p.Debug)},
	}
}

func appSettings(p *pending) []Setting {
	const g = "Apps"
	generated := "generated once, kept in the data directory's `credentials.json`"
	return []Setting{
		{Group: g, Flag: "app-id", Env: env("PARLEY_APP_ID", "REVERB_APP_ID"), Shown: generated, Arg: "ID",
			Help: "the single app's id (the HTTP API's `/apps/ID`)", value: credential(&p.single.ID)},
		{Group: g, Flag: "app-key", Env: env("PARLEY_APP_KEY", "REVERB_APP_KEY"), Shown: generated, Arg: "KEY",
			Help: "the single app's key, the public one clients connect with", value: credential(&p.single.Key)},
		{Group: g, Flag: "app-secret", Env: env("PARLEY_APP_SECRET", "REVERB_APP_SECRET"), Shown: generated, Arg: "SECRET", Secret: true,
			Help: "the single app's secret, which signs channel authorizations and HTTP API requests", value: credential(&p.single.Secret)},
		{Group: g, Flag: "apps-file", Env: env("PARLEY_APPS_FILE"), Shown: "none: the single app", Arg: "FILE",
			Help: "JSON file of several apps, instead of the single app", value: text(&p.AppsFile, nil)},
		{Group: g, Env: env("PARLEY_APP_MAX_CONNECTIONS"), Default: "0",
			Help: "the single app's concurrent sockets, cluster-wide; 0 = unlimited", value: number(&p.single.MaxConnections, nil)},
		{Group: g, Env: env("PARLEY_MAX_CHANNELS_PER_CONNECTION"), Default: strconv.Itoa(DefaultMaxChannelsPerConnection),
			Help: "channels one socket of the single app may be in", value: number(&p.single.MaxChannelsPerConnection, nil)},
		{Group: g, Env: env("PARLEY_MAX_PRESENCE_MEMBERS"), Default: strconv.Itoa(DefaultMaxPresenceMembers),
			Help: "distinct users of one presence channel of the single app (Pusher's limit)", value: number(&p.single.MaxPresenceMembers, nil)},
		{Group: g, Env: env("PARLEY_WEBHOOK_URL"), Shown: "none",
			Help: "the single app's webhook URL (several apps: `\"webhooks\"` in the apps file)", value: text(&p.webhookURL, nil)},
		{Group: g, Env: env("PARLEY_WEBHOOK_EVENTS"), Shown: strings.Join(DefaultWebhookEventTypes, ","),
			Help: "its event types, comma-separated", value: text(&p.webhookEvents, nil)},
		{Group: g, Env: env("PARLEY_WEBHOOK_VACATE_DELAY"), Default: "3s",
			Help: "wait before `channel_vacated` and `member_removed` webhooks; a reconnect within it sends neither", value: duration(&p.WebhookVacateDelay, nonNegative, nil)},
	}
}

func connectionSettings(p *pending) []Setting {
	const g = "Connections and limits"
	return []Setting{
		{Group: g, Flag: "max-connections", Env: env("PARLEY_MAX_CONNECTIONS"), Default: "0", Shown: "0: the open-files limit less 1024",
			Help: "sockets this node holds, all apps together; 0 = derived from the open-files limit", value: number(&p.MaxConnections, atLeast(0, "must be 0 (derived) or more"))},
		{Group: g, Flag: "max-connections-per-ip", Env: env("PARLEY_MAX_CONNECTIONS_PER_IP"), Default: "0",
			Help:  "sockets one client address may hold on this node; 0 = no cap (behind a proxy every client shares its address)",
			value: number(&p.MaxConnectionsPerIP, atLeast(0, "must be 0 (no cap) or more"))},
		{Group: g, Env: env("PARLEY_PONG_TIMEOUT"), Default: "30s",
			Help: "wait for a pong after the server's ping, then close 4201", value: duration(&p.PongTimeout, positiveDuration, nil)},
		{Group: g, Env: env("PARLEY_MAX_PENDING_BYTES"), Default: strconv.Itoa(4 << 20),
			Help: "outbound bytes queued for one socket before it is dropped as a slow consumer (4101)", value: number(&p.MaxPendingBytes, atLeast(64<<10, "is below 65536"))},
		{Group: g, Env: env("PARLEY_SOCKET_SEND_BUFFER"), Default: strconv.Itoa(128 << 10),
			Help: "kernel send buffer per socket in bytes (SO_SNDBUF, which Linux doubles); negative = kernel autotuning", value: number(&p.SocketSendBuffer, sendBufferProblem)},
		{Group: g, Env: env("PARLEY_MAX_PUBLISH_BACKLOG"), Default: "100000",
			Help: "publishes waiting for fan-out before the HTTP API answers 503", value: number(&p.MaxPublishBacklog, atLeast(1, "must be at least 1"))},
		{Group: g, Env: env("PARLEY_HTTP_READ_TIMEOUT"), Default: "10s",
			Help: "time for an HTTP request body to arrive", value: duration(&p.HTTPReadTimeout, positiveDuration, nil)},
		{Group: g, Env: env("PARLEY_MAX_BODY_BYTES"), Default: strconv.Itoa(1 << 20),
			Help: "largest HTTP request body in bytes (413 past it)", value: number(&p.MaxBodyBytes, atLeast[int64](64<<10, "is below 65536"))},
		{Group: g, Env: env("PARLEY_TRUSTED_PROXIES"), Shown: "none: the TCP peer is the client",
			Help: "reverse proxies (addresses or CIDRs, comma-separated) whose `X-Forwarded-For` names the client", value: list(&p.TrustedProxies, addressOrPrefix)},
	}
}

func chatSettings(p *pending) []Setting {
	const g = "Chat"
	return []Setting{
		{Group: g, Env: env("PARLEY_EVENT_NAMESPACE"), Default: `App\Events`, KeepEmpty: true,
			Help: "prefix of chat event names; set it empty for bare names", value: text(&p.EventNamespace, nil)},
		{Group: g, Env: env("PARLEY_MAX_MESSAGE_LENGTH"), Default: "5000",
			Help: "longest chat message in characters", value: number(&p.MaxMessageLength, atLeast(1, "must be at least 1"))},
		{Group: g, Flag: "api-rate-limit", Env: env("PARLEY_API_RATE_LIMIT"), Default: "60",
			Help: "chat REST requests per minute per token; 0 = unlimited", value: number(&p.APIRateLimit, atLeast(0, "must be 0 (unlimited) or more"))},
		{Group: g, Env: env("PARLEY_AUTH_RATE_LIMIT"), Default: "600",
			Help:  "channel authorizations (`/api/broadcasting/auth`) per minute per token, counted apart from the REST limit; 0 = unlimited",
			value: number(&p.AuthRateLimit, atLeast(0, "must be 0 (unlimited) or more"))},
		{Group: g, Env: env("PARLEY_MIN_PASSWORD_LENGTH"), Default: "8",
			Help:  "shortest password, in characters, the admin API and admin commands accept (1-72)",
			value: number(&p.MinPasswordLength, between(1, 72, "must be 1 to 72 (bcrypt reads at most 72 bytes)"))},
		{Group: g, Env: env(EnvAdminPassword), Shown: "none", Secret: true,
			Help: "password for `parley users create/update`, instead of `--password` (admin commands only)"},
		{Group: g, Env: env("PARLEY_LOGIN_ATTEMPTS_PER_MINUTE"), Default: "5",
			Help: "failed chat logins per minute per email and client address before 429", value: number(&p.LoginAttemptsPerMinute, nil)},
		{Group: g, Env: env("PARLEY_LOGIN_IP_ATTEMPTS_PER_MINUTE"), Default: "20",
			Help: "failed chat logins per minute per client address (IPv6: per /64) before 429", value: number(&p.LoginIPAttemptsPerMinute, nil)},
		{Group: g, Env: env("PARLEY_PASSWORD_HASH_CONCURRENCY"), Default: "0", Shown: "0: max(1, cores / 2)",
			Help: "password hashes (bcrypt) computed at once; 0 = half the cores", value: number(&p.PasswordHashConcurrency, nil)},
		{Group: g, Env: env("PARLEY_UNREAD_WINDOW"), Default: "50ms",
			Help: "`UnreadCountUpdated` coalescing window: at most one per user per window", value: duration(&p.UnreadWindow, positiveDuration, nil)},
		{Group: g, Env: env("PARLEY_UNREAD_RECONCILE"), Default: "30s",
			Help: "how often a running unread counter reloads its counts from the database", value: duration(&p.UnreadReconcile, positiveDuration, nil)},
	}
}

func tlsSettings(p *pending) []Setting {
	const g = "TLS"
	return []Setting{
		{Group: g, Flag: "tls-cert", Env: env("PARLEY_TLS_CERT"), Shown: "none: plain HTTP", Arg: "FILE",
			Help: "PEM certificate (chain); with `--tls-key` the port speaks HTTPS and `wss://` only; reloaded on SIGHUP", value: text(&p.TLSCert, nil)},
		{Group: g, Flag: "tls-key", Env: env("PARLEY_TLS_KEY"), Shown: "none", Arg: "FILE",
			Help: "PEM private key of `--tls-cert`", value: text(&p.TLSKey, nil)},
	}
}

func clusterSettings(p *pending) []Setting {
	const g = "Cluster"
	return []Setting{
		{Group: g, Flag: "cluster-address", Env: env("PARLEY_CLUSTER_ADDRESS"), Shown: "none: one node", Arg: "HOST:PORT",
			Help: "this node's cluster endpoint as the other nodes reach it; setting it turns clustering on", value: text(&p.ClusterAddress, nil)},
		{Group: g, Flag: "cluster-peers", Env: env("PARLEY_CLUSTER_PEERS"), Shown: "none", Arg: "HOST:PORT,...",
			Help: "the other nodes' cluster addresses, a static list", value: list(&p.ClusterPeers, nil)},
		{Group: g, Flag: "cluster-etcd", Env: env("PARLEY_CLUSTER_ETCD"), Shown: "none", Arg: "URL,...",
			Help: "etcd endpoints for dynamic membership, instead of `--cluster-peers`", value: list(&p.ClusterEtcd, nil)},
		{Group: g, Flag: "cluster-name", Env: env("PARLEY_CLUSTER_NAME"), Default: "parley", Arg: "NAME",
			Help: "cluster name; nodes of different names never join", value: text(&p.ClusterName, nil)},
		{Group: g, Flag: "cluster-forward-keep", Env: env("PARLEY_CLUSTER_FORWARD_KEEP"), Default: "2m",
			Help:  "how long a node keeps what it forwarded, to send it again to a node that missed it (a partition, a frozen node)",
			value: duration(&p.ClusterForwardKeep, positiveDuration, nil)},
	}
}

func observabilitySettings(p *pending) []Setting {
	const g = "Logs, metrics and profiling"
	return []Setting{
		{Group: g, Flag: "log-format", Env: env("PARLEY_LOG_FORMAT"), Default: "text", Arg: "FORMAT",
			Help: "`text` (key=value) or `json` (one object a line)", value: text(&p.LogFormat, oneOf("must be text or json", "text", "json"))},
		{Group: g, Env: env("PARLEY_LOG_LEVEL"), Shown: "`info`; `debug` with `--debug`",
			Help: "least level logged: `debug`, `info`, `warn` or `error`", value: custom(&p.logLevel, parseLogLevel, nil, "LEVEL")},
		{Group: g, Env: env("PARLEY_METRICS"), Default: "true",
			Help: "Prometheus `/metrics` on or off", value: custom(&p.Metrics, parseSwitch, nil, "")},
		{Group: g, Flag: "metrics-addr", Env: env("PARLEY_METRICS_ADDR"), Shown: "none: the main port", Arg: "HOST:PORT",
			Help: "serve `/metrics` on its own listener instead of the main port", value: text(&p.MetricsAddr, hostPort("is not host:port (e.g. 127.0.0.1:9100)"))},
		{Group: g, Env: env("PARLEY_METRICS_TOKEN"), Shown: "none", Secret: true,
			Help: "bearer token `/metrics` requires (environment only, so that `ps` never shows it)", value: text(&p.MetricsToken, nil)},
		{Group: g, Env: env("PARLEY_PPROF_ADDR"), Shown: "none: off",
			Help: "serve Go's pprof profiler on this `host:port` (keep it on loopback)", value: text(&p.PprofAddr, nil)},
		{Group: g, Env: env("GOGC"), Default: strconv.Itoa(DefaultGCPercent),
			Help: "Go's GC target, read by the Go runtime; Parley sets this default only when `GOGC` is unset"},
	}
}

// databaseURLProblem is what CheckDatabaseURL finds, without the name.
func databaseURLProblem(raw string) string {
	if err := CheckDatabaseURL(raw); err != nil {
		return strings.TrimPrefix(err.Error(), "DATABASE_URL ")
	}
	return ""
}

func sendBufferProblem(n int) string {
	if n > 0 && n < 4096 {
		return "is below 4096 (use a negative value for the kernel's default)"
	}
	return ""
}

func hostPort(what string) func(string) string {
	return func(s string) string {
		if _, port, err := net.SplitHostPort(s); s != "" && (err != nil || port == "") {
			return what
		}
		return ""
	}
}
