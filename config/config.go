// Package config reads and validates Parley's configuration: flags override
// environment variables, which override the documented defaults.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// App is one Pusher application: a key/secret pair and its per-app options.
type App struct {
	// ID is the app id used in the HTTP API path (/apps/{id}/...).
	ID string `json:"id"`
	// Key is the public key clients put in the WebSocket URL (/app/{key}).
	Key string `json:"key"`
	// Secret signs channel auth and HTTP API requests; never logged.
	Secret string `json:"secret"`
	// ClientEvents allows client-* events on private and presence channels.
	// Default true: typing indicators need them.
	ClientEvents bool `json:"enable_client_events"`
	// UserAuthentication allows pusher:signin and server-to-user events. Default true.
	UserAuthentication bool `json:"enable_user_authentication"`
	// MaxConnections caps concurrent sockets for this app, across the whole
	// cluster; zero means unlimited (the node-wide limit still applies).
	MaxConnections int `json:"max_connections"`
	// MaxChannelsPerConnection caps the channels one socket may be in;
	// default 1000 (PARLEY_MAX_CHANNELS_PER_CONNECTION for the single app).
	MaxChannelsPerConnection int `json:"max_channels_per_connection"`
	// MaxPresenceMembers caps the distinct users of one presence channel;
	// default 100, Pusher's limit (PARLEY_MAX_PRESENCE_MEMBERS for the
	// single app). Every join sends member_added to every member, so the
	// cost of filling a channel grows as the square of this.
	MaxPresenceMembers int `json:"max_presence_members"`
	// AllowedOrigins lists the Origin values accepted on upgrade ("*" or empty
	// accepts all; "*.example.com" matches subdomains).
	AllowedOrigins []string `json:"allowed_origins"`
	// ActivityTimeout is the idle time in seconds after which the server pings
	// a socket; default 120 (pusher-js uses the smaller of its own and ours).
	ActivityTimeout int `json:"activity_timeout"`
	// MaxEventSize is the largest event data in bytes, for client events and the
	// HTTP API; default 10240 (Pusher's 10 KB).
	MaxEventSize int `json:"max_event_size"`
	// Webhooks are where this app's webhooks go, each with the event types
	// it wants (PARLEY_WEBHOOK_URL and PARLEY_WEBHOOK_EVENTS for the single app).
	Webhooks []Webhook `json:"webhooks,omitempty"`
	// Generated is true when Parley made up these credentials itself.
	Generated bool `json:"-"`
	// GeneratedNow is true when they were made up by this start (not read
	// back from the credentials file).
	GeneratedNow bool `json:"-"`
}

// Webhook is one webhook endpoint of an app, as soketi configures them.
type Webhook struct {
	// URL receives the POSTed batches (http or https).
	URL string `json:"url"`
	// EventTypes are the events sent there; default channel_occupied,
	// channel_vacated, member_added and member_removed.
	EventTypes []string `json:"event_types,omitempty"`
	// Filter limits the channels whose events are sent (both must match).
	Filter WebhookFilter `json:"filter,omitempty"`
}

// WebhookFilter limits a webhook to channels by name.
type WebhookFilter struct {
	ChannelNameStartsWith string `json:"channel_name_starts_with,omitempty"`
	ChannelNameEndsWith   string `json:"channel_name_ends_with,omitempty"`
}

// WebhookEventTypes are the webhook events Parley sends (Pusher's names).
var WebhookEventTypes = []string{"channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss", "subscription_count"}

// DefaultWebhookEventTypes are sent when a webhook names none.
var DefaultWebhookEventTypes = []string{"channel_occupied", "channel_vacated", "member_added", "member_removed"}

// Wants reports whether the webhook takes events of this type on this channel.
func (w *Webhook) Wants(eventType, channel string) bool {
	if !strings.HasPrefix(channel, w.Filter.ChannelNameStartsWith) || !strings.HasSuffix(channel, w.Filter.ChannelNameEndsWith) {
		return false
	}
	for _, t := range w.EventTypes {
		if t == eventType {
			return true
		}
	}
	return false
}

// Defaults applied to apps that leave an option unset.
const (
	DefaultActivityTimeout          = 120
	DefaultMaxEventSize             = 10 * 1024
	DefaultMaxChannelsPerConnection = 1000
	DefaultMaxPresenceMembers       = 100
)

// Config is everything `parley serve` needs.
type Config struct {
	// Host is the listen address; default 0.0.0.0 (PARLEY_HOST, REVERB_SERVER_HOST).
	Host string
	// Port is the listen port; default 8080; 0 picks a free one (PARLEY_PORT, REVERB_SERVER_PORT).
	Port int
	// Apps are the configured applications; never empty after Load.
	Apps []App
	// AppsFile is the JSON file the apps came from, if any (PARLEY_APPS_FILE).
	AppsFile string
	// DataDir holds the embedded database and generated credentials; default ./data.
	DataDir string
	// DatabaseURL selects PostgreSQL when set (DATABASE_URL); empty means the embedded database.
	DatabaseURL string
	// Debug logs every frame in and out.
	Debug bool
	// ShutdownTimeout bounds an orderly stop; default 10s (PARLEY_SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// PongTimeout is how long a pinged socket has to answer before it is
	// closed with 4201; default 30s (PARLEY_PONG_TIMEOUT).
	PongTimeout time.Duration
	// MaxPendingBytes is how many outbound bytes may wait for one slow socket
	// before it is disconnected with 4101; default 4 MiB (PARLEY_MAX_PENDING_BYTES).
	MaxPendingBytes int
	// EventNamespace prefixes chat event names; default `App\Events` (PARLEY_EVENT_NAMESPACE,
	// set to an empty string for bare names).
	EventNamespace string
	// MaxMessageLength is the longest chat message in characters; default 5000.
	MaxMessageLength int
	// APIRateLimit is chat REST requests per minute per token; default 60, 0 = unlimited.
	APIRateLimit int
	// AuthRateLimit is channel authorizations (/api/broadcasting/auth) per
	// minute per token, counted apart from APIRateLimit: a client joins two
	// channels per matter and again after every reconnect; default 600,
	// 0 = unlimited (PARLEY_AUTH_RATE_LIMIT).
	AuthRateLimit int
	// MinPasswordLength is the shortest password, in characters, that the
	// admin API and the admin commands accept; default 8, at most 72
	// (PARLEY_MIN_PASSWORD_LENGTH).
	MinPasswordLength int
	// Chat turns the chat backend on (REST API under /api, database); default
	// true (PARLEY_CHAT, --chat). Off, Parley is only a Pusher server.
	Chat bool

	// MaxConnections caps the sockets this node holds, all apps together;
	// zero (the default) derives it from the open-files limit, which serve
	// raises to its hard limit at start (PARLEY_MAX_CONNECTIONS).
	MaxConnections int
	// MaxConnectionsPerIP caps the sockets one client address may hold on
	// this node; default 0, no cap (PARLEY_MAX_CONNECTIONS_PER_IP). Behind a
	// proxy every client shares its address: leave it off there.
	MaxConnectionsPerIP int
	// MaxPublishBacklog is how many publishes may wait to be fanned out
	// before the HTTP API answers 503; default 100000 (PARLEY_MAX_PUBLISH_BACKLOG).
	MaxPublishBacklog int
	// HTTPReadTimeout bounds reading one HTTP request body; a slower client
	// is cut off; default 10s (PARLEY_HTTP_READ_TIMEOUT).
	HTTPReadTimeout time.Duration
	// MaxBodyBytes is the largest HTTP request body; default 1 MiB (PARLEY_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// SocketSendBuffer is the kernel send buffer asked for each socket
	// (SO_SNDBUF, which the kernel doubles); default 128 KiB
	// (PARLEY_SOCKET_SEND_BUFFER). It bounds the kernel memory a client that
	// never reads can hold, beside MaxPendingBytes in user space.
	SocketSendBuffer int

	// LoginAttemptsPerMinute is failed chat logins per minute per email and
	// client address before 429; default 0 means 5 (PARLEY_LOGIN_ATTEMPTS_PER_MINUTE).
	LoginAttemptsPerMinute int
	// LoginIPAttemptsPerMinute is failed chat logins per minute per client
	// address across emails; default 0 means 20 (PARLEY_LOGIN_IP_ATTEMPTS_PER_MINUTE).
	LoginIPAttemptsPerMinute int
	// PasswordHashConcurrency bounds bcrypt work running at once; default 0
	// means max(1, GOMAXPROCS/2) (PARLEY_PASSWORD_HASH_CONCURRENCY).
	PasswordHashConcurrency int
	// UnreadWindow is the coalescing window of UnreadCountUpdated: at most
	// one per user per window, the last carrying the final counts; default
	// 0 means 50 ms (PARLEY_UNREAD_WINDOW).
	UnreadWindow time.Duration
	// UnreadReconcile is how often a running unread counter reloads its
	// counts from the database; default 0 means 30 s (PARLEY_UNREAD_RECONCILE).
	UnreadReconcile time.Duration
	// TrustedProxies are reverse proxies (addresses or CIDRs) whose
	// X-Forwarded-For names the client; default none (PARLEY_TRUSTED_PROXIES).
	TrustedProxies []string

	// TLSCert and TLSKey are PEM files; set both to serve HTTPS and wss://
	// on the listen port (PARLEY_TLS_CERT, PARLEY_TLS_KEY, --tls-cert,
	// --tls-key). SIGHUP reloads them without dropping a socket.
	TLSCert, TLSKey string

	// Cluster: ClusterAddress (PARLEY_CLUSTER_ADDRESS, --cluster-address) is
	// this node's cluster endpoint, host:port, as the other nodes reach it;
	// setting it turns clustering on.
	ClusterAddress string
	// ClusterPeers are the other nodes' cluster addresses, a static list
	// (PARLEY_CLUSTER_PEERS, --cluster-peers).
	ClusterPeers []string
	// ClusterEtcd are etcd endpoints for dynamic membership instead of a
	// static list (PARLEY_CLUSTER_ETCD, --cluster-etcd).
	ClusterEtcd []string
	// WebhookVacateDelay is how long channel_vacated and member_removed
	// wait so that a quick reconnect sends neither (nor the re-join);
	// default 3s, Pusher's (PARLEY_WEBHOOK_VACATE_DELAY).
	WebhookVacateDelay time.Duration

	// generatedWebhooks are PARLEY_WEBHOOK_URL's for an app EnsureApp generates.
	generatedWebhooks []Webhook

	// ClusterName keeps clusters apart: nodes of different names never join;
	// default parley (PARLEY_CLUSTER_NAME, --cluster-name).
	ClusterName string
	// ClusterForwardKeep is how long a node keeps what it forwarded to the
	// other nodes, to send it again to one that missed it (a partition, a
	// frozen node); default 2m (PARLEY_CLUSTER_FORWARD_KEEP,
	// --cluster-forward-keep). A node that missed older forwards closes its
	// subscribed sockets with 4210 so their clients catch up.
	ClusterForwardKeep time.Duration

	// Observability: logs and metrics (config/observability.go).
	Observability
}

// Clustered reports whether this node joins a cluster.
func (c *Config) Clustered() bool { return c.ClusterAddress != "" }

// Getenv looks up an environment variable; os.LookupEnv in production.
type Getenv func(string) (string, bool)

// Load builds the configuration from command-line args (after the subcommand)
// and the environment. It returns every problem at once.
func Load(args []string, getenv Getenv, stderr io.Writer) (*Config, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	env := func(names ...string) (string, string, bool) {
		for _, n := range names {
			if v, ok := getenv(n); ok && v != "" {
				return v, n, true
			}
		}
		return "", "", false
	}
	envInt := func(def int, names ...string) int {
		v, name, ok := env(names...)
		if !ok {
			return def
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			bad("%s=%q is not a whole number", name, v)
			return def
		}
		return n
	}

	cfg := &Config{
		Host:             "0.0.0.0",
		Port:             8080,
		DataDir:          "./data",
		ShutdownTimeout:  10 * time.Second,
		PongTimeout:      30 * time.Second,
		MaxPendingBytes:  4 << 20,
		EventNamespace:   `App\Events`,
		MaxMessageLength: 5000,
		APIRateLimit:     60,
		AuthRateLimit:    600,
		Chat:             true,

		MaxPublishBacklog:  100000,
		MinPasswordLength:  8,
		HTTPReadTimeout:    10 * time.Second,
		MaxBodyBytes:       1 << 20,
		SocketSendBuffer:   128 << 10,
		ClusterName:        "parley",
		ClusterForwardKeep: 2 * time.Minute,

		WebhookVacateDelay: 3 * time.Second,
	}
	if v, _, ok := env("PARLEY_HOST", "REVERB_SERVER_HOST"); ok {
		cfg.Host = v
	}
	cfg.Port = envInt(cfg.Port, "PARLEY_PORT", "REVERB_SERVER_PORT")
	if v, _, ok := env("PARLEY_DATA_DIR"); ok {
		cfg.DataDir = v
	}
	if v, _, ok := env("DATABASE_URL", "PARLEY_DATABASE_URL"); ok {
		cfg.DatabaseURL = v
	}
	if v, name, ok := env("PARLEY_DEBUG"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("%s=%q is not true or false", name, v)
		}
		cfg.Debug = b
	}
	if v, name, ok := env("PARLEY_SHUTDOWN_TIMEOUT"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			bad("%s=%q is not a duration such as 10s", name, v)
		} else {
			cfg.ShutdownTimeout = d
		}
	}
	if v, name, ok := env("PARLEY_PONG_TIMEOUT"); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad("%s=%q is not a positive duration such as 30s", name, v)
		} else {
			cfg.PongTimeout = d
		}
	}
	cfg.MaxPendingBytes = envInt(cfg.MaxPendingBytes, "PARLEY_MAX_PENDING_BYTES")
	if v, ok := getenv("PARLEY_EVENT_NAMESPACE"); ok {
		cfg.EventNamespace = v // empty is meaningful: bare event names
	}
	cfg.MaxMessageLength = envInt(cfg.MaxMessageLength, "PARLEY_MAX_MESSAGE_LENGTH")
	cfg.APIRateLimit = envInt(cfg.APIRateLimit, "PARLEY_API_RATE_LIMIT")
	cfg.AuthRateLimit = envInt(cfg.AuthRateLimit, "PARLEY_AUTH_RATE_LIMIT")
	cfg.MinPasswordLength = envInt(cfg.MinPasswordLength, "PARLEY_MIN_PASSWORD_LENGTH")
	if v, name, ok := env("PARLEY_CHAT"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("%s=%q is not true or false", name, v)
		}
		cfg.Chat = b
	}
	cfg.MaxConnections = envInt(cfg.MaxConnections, "PARLEY_MAX_CONNECTIONS")
	cfg.MaxConnectionsPerIP = envInt(cfg.MaxConnectionsPerIP, "PARLEY_MAX_CONNECTIONS_PER_IP")
	cfg.MaxPublishBacklog = envInt(cfg.MaxPublishBacklog, "PARLEY_MAX_PUBLISH_BACKLOG")
	if v, name, ok := env("PARLEY_HTTP_READ_TIMEOUT"); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad("%s=%q is not a positive duration such as 10s", name, v)
		} else {
			cfg.HTTPReadTimeout = d
		}
	}
	cfg.MaxBodyBytes = int64(envInt(int(cfg.MaxBodyBytes), "PARLEY_MAX_BODY_BYTES"))
	cfg.SocketSendBuffer = envInt(cfg.SocketSendBuffer, "PARLEY_SOCKET_SEND_BUFFER")
	cfg.LoginAttemptsPerMinute = envInt(0, "PARLEY_LOGIN_ATTEMPTS_PER_MINUTE")
	cfg.LoginIPAttemptsPerMinute = envInt(0, "PARLEY_LOGIN_IP_ATTEMPTS_PER_MINUTE")
	cfg.PasswordHashConcurrency = envInt(0, "PARLEY_PASSWORD_HASH_CONCURRENCY")
	for _, d := range []struct {
		dst  *time.Duration
		name string
	}{{&cfg.UnreadWindow, "PARLEY_UNREAD_WINDOW"}, {&cfg.UnreadReconcile, "PARLEY_UNREAD_RECONCILE"}} {
		if v, name, ok := env(d.name); ok {
			if x, err := time.ParseDuration(v); err != nil || x <= 0 {
				bad("%s=%q is not a positive duration such as 50ms", name, v)
			} else {
				*d.dst = x
			}
		}
	}
	if v, _, ok := env("PARLEY_TRUSTED_PROXIES"); ok {
		cfg.TrustedProxies = splitList(v)
		for _, p := range cfg.TrustedProxies {
			if _, err := netip.ParsePrefix(p); err != nil {
				if _, err := netip.ParseAddr(p); err != nil {
					bad("PARLEY_TRUSTED_PROXIES: %q is not an address or CIDR prefix", p)
				}
			}
		}
	}
	if v, name, ok := env("PARLEY_WEBHOOK_VACATE_DELAY"); ok {
		if d, err := time.ParseDuration(v); err != nil || d < 0 {
			bad("%s=%q is not a duration such as 3s (0 sends at once)", name, v)
		} else {
			cfg.WebhookVacateDelay = d
		}
	}
	var clusterPeers, clusterEtcd string
	cfg.ClusterAddress, _, _ = env("PARLEY_CLUSTER_ADDRESS")
	clusterPeers, _, _ = env("PARLEY_CLUSTER_PEERS")
	clusterEtcd, _, _ = env("PARLEY_CLUSTER_ETCD")
	if v, _, ok := env("PARLEY_CLUSTER_NAME"); ok {
		cfg.ClusterName = v
	}
	if v, name, ok := env("PARLEY_CLUSTER_FORWARD_KEEP"); ok {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			bad("%s=%q is not a positive duration such as 2m", name, v)
		} else {
			cfg.ClusterForwardKeep = d
		}
	}

	single := App{}
	single.ID, _, _ = env("PARLEY_APP_ID", "REVERB_APP_ID")
	single.Key, _, _ = env("PARLEY_APP_KEY", "REVERB_APP_KEY")
	single.Secret, _, _ = env("PARLEY_APP_SECRET", "REVERB_APP_SECRET")
	single.MaxConnections = envInt(0, "PARLEY_APP_MAX_CONNECTIONS")
	single.MaxChannelsPerConnection = envInt(0, "PARLEY_MAX_CHANNELS_PER_CONNECTION")
	single.MaxPresenceMembers = envInt(0, "PARLEY_MAX_PRESENCE_MEMBERS")
	webhookURL, _, _ := env("PARLEY_WEBHOOK_URL")
	webhookEvents, _, _ := env("PARLEY_WEBHOOK_EVENTS")
	if webhookURL != "" {
		single.Webhooks = []Webhook{{URL: webhookURL, EventTypes: splitList(webhookEvents)}}
	} else if webhookEvents != "" {
		bad("PARLEY_WEBHOOK_EVENTS is set but PARLEY_WEBHOOK_URL is not")
	}
	cfg.AppsFile, _, _ = env("PARLEY_APPS_FILE")
	cfg.TLSCert, _, _ = env("PARLEY_TLS_CERT")
	cfg.TLSKey, _, _ = env("PARLEY_TLS_KEY")

	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	if stderr != nil {
		fs.SetOutput(stderr)
	} else {
		fs.SetOutput(io.Discard)
	}
	fs.StringVar(&cfg.Host, "host", cfg.Host, "listen address (PARLEY_HOST)")
	fs.IntVar(&cfg.Port, "port", cfg.Port, "listen port, 0 picks a free one (PARLEY_PORT)")
	// The app flags default to empty so that --help never prints a secret
	// taken from the environment; they are merged after parsing.
	var flagID, flagKey, flagSecret string
	fs.StringVar(&flagID, "app-id", "", "app id (PARLEY_APP_ID)")
	fs.StringVar(&flagKey, "app-key", "", "app key (PARLEY_APP_KEY)")
	fs.StringVar(&flagSecret, "app-secret", "", "app secret (PARLEY_APP_SECRET)")
	fs.StringVar(&cfg.AppsFile, "apps-file", cfg.AppsFile, "JSON file with several apps (PARLEY_APPS_FILE)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the embedded database and generated credentials (PARLEY_DATA_DIR)")
	fs.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "PostgreSQL URL; empty uses the embedded database (DATABASE_URL)")
	fs.BoolVar(&cfg.Debug, "debug", cfg.Debug, "log every frame in and out (PARLEY_DEBUG)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "deadline for an orderly stop (PARLEY_SHUTDOWN_TIMEOUT)")
	fs.IntVar(&cfg.APIRateLimit, "api-rate-limit", cfg.APIRateLimit, "chat API requests per minute per token, 0 = unlimited (PARLEY_API_RATE_LIMIT)")
	fs.BoolVar(&cfg.Chat, "chat", cfg.Chat, "chat backend: REST API under /api and its database; false = Pusher server only (PARLEY_CHAT)")
	fs.IntVar(&cfg.MaxConnections, "max-connections", cfg.MaxConnections, "sockets this node holds, all apps; 0 = derived from the open-files limit (PARLEY_MAX_CONNECTIONS)")
	fs.IntVar(&cfg.MaxConnectionsPerIP, "max-connections-per-ip", cfg.MaxConnectionsPerIP, "sockets one client address may hold on this node, 0 = no cap (PARLEY_MAX_CONNECTIONS_PER_IP)")
	fs.StringVar(&cfg.ClusterAddress, "cluster-address", cfg.ClusterAddress, "this node's cluster endpoint host:port as other nodes reach it; turns clustering on (PARLEY_CLUSTER_ADDRESS)")
	fs.StringVar(&clusterPeers, "cluster-peers", clusterPeers, "other nodes' cluster addresses host:port,... (PARLEY_CLUSTER_PEERS)")
	fs.StringVar(&clusterEtcd, "cluster-etcd", clusterEtcd, "etcd endpoints URL,... for dynamic membership instead of --cluster-peers (PARLEY_CLUSTER_ETCD)")
	fs.StringVar(&cfg.ClusterName, "cluster-name", cfg.ClusterName, "cluster name; nodes of different names never join (PARLEY_CLUSTER_NAME)")
	fs.DurationVar(&cfg.ClusterForwardKeep, "cluster-forward-keep", cfg.ClusterForwardKeep, "how long forwards are kept to send again to a node that missed them (PARLEY_CLUSTER_FORWARD_KEEP)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "PEM certificate (chain) file; with --tls-key serves HTTPS and wss://, reloaded on SIGHUP (PARLEY_TLS_CERT)")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "PEM private key file for --tls-cert (PARLEY_TLS_KEY)")
	checkObservability := observabilityFlags(fs, cfg, getenv, bad)
	lenient(fs, bad)
	// A bad flag is one of the problems listed below, without the flag
	// package's own message and usage.
	out := fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			printUsage(fs)
			return nil, err
		}
		bad("%v", err) // an unknown flag: the arguments after it were not read
	}
	checkObservability()
	if err := CheckDatabaseURL(cfg.DatabaseURL); err != nil {
		bad("%v", err)
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{{&single.ID, flagID}, {&single.Key, flagKey}, {&single.Secret, flagSecret}} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	if fs.NArg() > 0 {
		bad("unexpected argument %q", fs.Arg(0))
	}
	cfg.ClusterPeers, cfg.ClusterEtcd = splitList(clusterPeers), splitList(clusterEtcd)
	validateCluster(cfg, bad)
	if cfg.MaxConnections < 0 {
		bad("PARLEY_MAX_CONNECTIONS/--max-connections must be 0 (derived) or more")
	}
	if cfg.MaxConnectionsPerIP < 0 {
		bad("PARLEY_MAX_CONNECTIONS_PER_IP/--max-connections-per-ip must be 0 (no cap) or more")
	}
	if cfg.MaxPublishBacklog < 1 {
		bad("PARLEY_MAX_PUBLISH_BACKLOG must be at least 1")
	}
	if cfg.MaxBodyBytes < 64<<10 {
		bad("PARLEY_MAX_BODY_BYTES %d is below 65536", cfg.MaxBodyBytes)
	}
	if cfg.SocketSendBuffer > 0 && cfg.SocketSendBuffer < 4096 {
		bad("PARLEY_SOCKET_SEND_BUFFER %d is below 4096 (use a negative value for the kernel's default)", cfg.SocketSendBuffer)
	}

	validateTLS(cfg, bad)

	if cfg.Host == "" {
		bad("PARLEY_HOST/--host is empty")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		bad("PARLEY_PORT/--port %d is not a port (0-65535)", cfg.Port)
	}
	if cfg.DataDir == "" {
		bad("PARLEY_DATA_DIR/--data-dir is empty")
	}
	if cfg.ShutdownTimeout <= 0 {
		bad("PARLEY_SHUTDOWN_TIMEOUT/--shutdown-timeout must be positive")
	}
	if cfg.MaxPendingBytes < 64*1024 {
		bad("PARLEY_MAX_PENDING_BYTES %d is below 65536", cfg.MaxPendingBytes)
	}
	if cfg.MaxMessageLength < 1 {
		bad("PARLEY_MAX_MESSAGE_LENGTH must be at least 1")
	}
	if cfg.MinPasswordLength < 1 || cfg.MinPasswordLength > 72 {
		bad("PARLEY_MIN_PASSWORD_LENGTH %d must be 1 to 72 (bcrypt reads at most 72 bytes)", cfg.MinPasswordLength)
	}
	if cfg.APIRateLimit < 0 {
		bad("PARLEY_API_RATE_LIMIT/--api-rate-limit must be 0 (unlimited) or more")
	}
	if cfg.AuthRateLimit < 0 {
		bad("PARLEY_AUTH_RATE_LIMIT must be 0 (unlimited) or more")
	}

	anySingle := single.ID != "" || single.Key != "" || single.Secret != ""
	switch {
	case cfg.AppsFile != "":
		if anySingle {
			bad("set either PARLEY_APPS_FILE or PARLEY_APP_ID/KEY/SECRET, not both")
		}
		if webhookURL != "" {
			bad("PARLEY_WEBHOOK_URL is for the single app: with PARLEY_APPS_FILE give each app its \"webhooks\"")
		}
		apps, err := readAppsFile(cfg.AppsFile)
		if err != nil {
			bad("%v", err)
		}
		cfg.Apps = apps
	case anySingle:
		if single.ID == "" {
			bad("PARLEY_APP_ID (or REVERB_APP_ID, --app-id) is missing")
		}
		if single.Key == "" {
			bad("PARLEY_APP_KEY (or REVERB_APP_KEY, --app-key) is missing")
		}
		if single.Secret == "" {
			bad("PARLEY_APP_SECRET (or REVERB_APP_SECRET, --app-secret) is missing")
		}
		single.ClientEvents = true
		single.UserAuthentication = true
		cfg.Apps = []App{single}
	}
	if len(cfg.Apps) == 0 {
		cfg.generatedWebhooks = single.Webhooks
		problems = append(problems, validateWebhooks("PARLEY_WEBHOOK_URL", single.Webhooks)...)
	}
	for i := range cfg.Apps {
		applyAppDefaults(&cfg.Apps[i])
	}
	problems = append(problems, validateApps(cfg.Apps)...)

	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return cfg, nil
}

// Error lists every configuration problem found.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "invalid configuration:\n  - " + strings.Join(e.Problems, "\n  - ")
}

func applyAppDefaults(a *App) {
	if a.ActivityTimeout == 0 {
		a.ActivityTimeout = DefaultActivityTimeout
	}
	if a.MaxEventSize == 0 {
		a.MaxEventSize = DefaultMaxEventSize
	}
	if a.MaxChannelsPerConnection == 0 {
		a.MaxChannelsPerConnection = DefaultMaxChannelsPerConnection
	}
	if a.MaxPresenceMembers == 0 {
		a.MaxPresenceMembers = DefaultMaxPresenceMembers
	}
	for i := range a.Webhooks {
		if len(a.Webhooks[i].EventTypes) == 0 {
			a.Webhooks[i].EventTypes = append([]string(nil), DefaultWebhookEventTypes...)
		}
	}
}

func validateApps(apps []App) []string {
	var problems []string
	ids, keys := map[string]bool{}, map[string]bool{}
	for i, a := range apps {
		where := fmt.Sprintf("app #%d (id %q)", i+1, a.ID)
		if a.ID == "" {
			problems = append(problems, where+": id is empty")
		}
		if a.Key == "" {
			problems = append(problems, where+": key is empty")
		}
		if a.Secret == "" {
			problems = append(problems, where+": secret is empty")
		}
		if strings.ContainsAny(a.ID, "/?#") {
			problems = append(problems, where+": id may not contain / ? or #")
		}
		if strings.ContainsAny(a.Key, "/?#") {
			problems = append(problems, where+": key may not contain / ? or #")
		}
		if a.ID != "" && ids[a.ID] {
			problems = append(problems, where+": duplicate id")
		}
		if a.Key != "" && keys[a.Key] {
			problems = append(problems, where+": duplicate key")
		}
		ids[a.ID], keys[a.Key] = true, true
		if a.MaxConnections < 0 {
			problems = append(problems, where+": max_connections must be 0 (unlimited) or more")
		}
		if a.ActivityTimeout < 1 || a.ActivityTimeout > 3600 {
			problems = append(problems, where+": activity_timeout must be 1-3600 seconds")
		}
		if a.MaxChannelsPerConnection < 1 {
			problems = append(problems, where+": max_channels_per_connection must be 1 or more")
		}
		if a.MaxPresenceMembers < 1 {
			problems = append(problems, where+": max_presence_members must be 1 or more")
		}
		if a.MaxEventSize < 1 || a.MaxEventSize > 1<<20 {
			problems = append(problems, where+": max_event_size must be 1-1048576 bytes")
		}
		problems = append(problems, validateWebhooks(where, a.Webhooks)...)
		for _, o := range a.AllowedOrigins {
			if o == "" || strings.ContainsAny(o, " ,") {
				problems = append(problems, fmt.Sprintf("%s: allowed origin %q is not a host pattern", where, o))
			}
		}
	}
	return problems
}

func validateWebhooks(where string, hooks []Webhook) []string {
	var problems []string
	for j, w := range hooks {
		wh := fmt.Sprintf("%s: webhook #%d", where, j+1)
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, fmt.Sprintf("%s: url %q is not an http:// or https:// URL", wh, w.URL))
		}
		for _, t := range w.EventTypes {
			if !slices.Contains(WebhookEventTypes, t) {
				problems = append(problems, fmt.Sprintf("%s: unknown event type %q (known: %s)", wh, t, strings.Join(WebhookEventTypes, ", ")))
			}
		}
	}
	return problems
}

// ListenAddr is host:port for net.Listen.
func (c *Config) ListenAddr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// AppByKey finds an app by its public key.
func (c *Config) AppByKey(key string) (*App, bool) {
	for i := range c.Apps {
		if c.Apps[i].Key == key {
			return &c.Apps[i], true
		}
	}
	return nil, false
}

// AppByID finds an app by its id.
func (c *Config) AppByID(id string) (*App, bool) {
	for i := range c.Apps {
		if c.Apps[i].ID == id {
			return &c.Apps[i], true
		}
	}
	return nil, false
}

// CredentialsFile is where generated credentials are kept.
func (c *Config) CredentialsFile() string {
	return filepath.Join(c.DataDir, "credentials.json")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validateCluster checks the cluster settings. A cluster node with the chat
// backend needs a shared database: each node's embedded one would split the
// chat's data between nodes.
func validateCluster(cfg *Config, bad func(string, ...any)) {
	if !cfg.Clustered() {
		if len(cfg.ClusterPeers) > 0 || len(cfg.ClusterEtcd) > 0 {
			bad("PARLEY_CLUSTER_PEERS/PARLEY_CLUSTER_ETCD need PARLEY_CLUSTER_ADDRESS/--cluster-address, this node's own cluster endpoint")
		}
		return
	}
	host, port, err := net.SplitHostPort(cfg.ClusterAddress)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		bad("PARLEY_CLUSTER_ADDRESS/--cluster-address %q is not host:port", cfg.ClusterAddress)
	}
	for _, p := range cfg.ClusterPeers {
		if h, port, err := net.SplitHostPort(p); err != nil || h == "" || port == "" {
			bad("PARLEY_CLUSTER_PEERS/--cluster-peers: %q is not host:port", p)
		}
	}
	if len(cfg.ClusterPeers) > 0 && len(cfg.ClusterEtcd) > 0 {
		bad("set either PARLEY_CLUSTER_PEERS or PARLEY_CLUSTER_ETCD, not both")
	}
	if cfg.ClusterName == "" || strings.ContainsAny(cfg.ClusterName, "/ ") {
		bad("PARLEY_CLUSTER_NAME/--cluster-name %q must be a non-empty name without / or spaces", cfg.ClusterName)
	}
	if cfg.Chat && cfg.DatabaseURL == "" {
		bad("a cluster node with the chat backend needs a shared PostgreSQL database: set DATABASE_URL (every node the same), or PARLEY_CHAT=false/--chat=false to run only the Pusher server")
	}
}
