// Package config reads and validates Parley's configuration: flags override
// environment variables, which override the defaults. Every setting is one
// row of the settings table (settings.go), from which Load, `parley serve
// --help` and the documentation's table all come.
package config

import (
	"fmt"
	"net"
	"net/url"
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

// Config is everything `parley serve` needs. The settings table
// (settings.go) fills it: each field's flag, environment variables and
// default are there, and nowhere else.
type Config struct {
	// Host is the listen address (PARLEY_HOST).
	Host string
	// Port is the listen port; 0 picks a free one (PARLEY_PORT).
	Port int
	// Apps are the configured applications; never empty after Load.
	Apps []App
	// AppsFile is the JSON file the apps came from, if any (PARLEY_APPS_FILE).
	AppsFile string
	// DataDir holds the embedded database and generated credentials (PARLEY_DATA_DIR).
	DataDir string
	// DatabaseURL selects PostgreSQL when set (DATABASE_URL); empty means the embedded database.
	DatabaseURL string
	// Debug logs every frame in and out (PARLEY_DEBUG).
	Debug bool
	// ShutdownTimeout bounds an orderly stop (PARLEY_SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// PongTimeout is how long a pinged socket has to answer before it is
	// closed with 4201 (PARLEY_PONG_TIMEOUT).
	PongTimeout time.Duration
	// MaxPendingBytes is how many outbound bytes may wait for one slow socket
	// before it is disconnected with 4101 (PARLEY_MAX_PENDING_BYTES).
	MaxPendingBytes int
	// EventNamespace prefixes chat event names; empty for bare names
	// (PARLEY_EVENT_NAMESPACE).
	EventNamespace string
	// MaxMessageLength is the longest chat message in characters (PARLEY_MAX_MESSAGE_LENGTH).
	MaxMessageLength int
	// APIRateLimit is chat REST requests per minute per token; 0 = unlimited
	// (PARLEY_API_RATE_LIMIT).
	APIRateLimit int
	// AuthRateLimit is channel authorizations (/api/broadcasting/auth) per
	// minute per token, counted apart from APIRateLimit: a client joins two
	// channels per matter and again after every reconnect; 0 = unlimited
	// (PARLEY_AUTH_RATE_LIMIT).
	AuthRateLimit int
	// MinPasswordLength is the shortest password, in characters, that the
	// admin API and the admin commands accept; at most 72
	// (PARLEY_MIN_PASSWORD_LENGTH).
	MinPasswordLength int
	// Chat turns the chat backend on (REST API under /api, database)
	// (PARLEY_CHAT). Off, Parley is only a Pusher server.
	Chat bool

	// MaxConnections caps the sockets this node holds, all apps together;
	// zero derives it from the open-files limit, which serve raises to its
	// hard limit at start (PARLEY_MAX_CONNECTIONS).
	MaxConnections int
	// MaxConnectionsPerIP caps the sockets one client address may hold on
	// this node; 0 = no cap (PARLEY_MAX_CONNECTIONS_PER_IP). Behind a
	// proxy every client shares its address: leave it off there.
	MaxConnectionsPerIP int
	// MaxPublishBacklog is how many publishes may wait to be fanned out
	// before the HTTP API answers 503 (PARLEY_MAX_PUBLISH_BACKLOG).
	MaxPublishBacklog int
	// HTTPReadTimeout bounds reading one HTTP request body; a slower client
	// is cut off (PARLEY_HTTP_READ_TIMEOUT).
	HTTPReadTimeout time.Duration
	// MaxBodyBytes is the largest HTTP request body (PARLEY_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// SocketSendBuffer is the kernel send buffer asked for each socket
	// (SO_SNDBUF, which the kernel doubles; PARLEY_SOCKET_SEND_BUFFER). It
	// bounds the kernel memory a client that never reads can hold, beside
	// MaxPendingBytes in user space.
	SocketSendBuffer int

	// LoginAttemptsPerMinute is failed chat logins per minute per email and
	// client address before 429; 0 takes the chat's own default
	// (PARLEY_LOGIN_ATTEMPTS_PER_MINUTE).
	LoginAttemptsPerMinute int
	// LoginIPAttemptsPerMinute is failed chat logins per minute per client
	// address across emails; 0 takes the chat's own default
	// (PARLEY_LOGIN_IP_ATTEMPTS_PER_MINUTE).
	LoginIPAttemptsPerMinute int
	// PasswordHashConcurrency bounds bcrypt work running at once; 0 means
	// max(1, GOMAXPROCS/2) (PARLEY_PASSWORD_HASH_CONCURRENCY).
	PasswordHashConcurrency int
	// UnreadWindow is the coalescing window of UnreadCountUpdated: at most
	// one per user per window, the last carrying the final counts
	// (PARLEY_UNREAD_WINDOW).
	UnreadWindow time.Duration
	// UnreadReconcile is how often a running unread counter reloads its
	// counts from the database (PARLEY_UNREAD_RECONCILE).
	UnreadReconcile time.Duration
	// TrustedProxies are reverse proxies (addresses or CIDRs) whose
	// X-Forwarded-For names the client (PARLEY_TRUSTED_PROXIES).
	TrustedProxies []string

	// TLSCert and TLSKey are PEM files; set both to serve HTTPS and wss://
	// on the listen port (PARLEY_TLS_CERT, PARLEY_TLS_KEY). SIGHUP reloads
	// them without dropping a socket.
	TLSCert, TLSKey string

	// ClusterAddress is this node's cluster endpoint, host:port, as the
	// other nodes reach it; setting it turns clustering on
	// (PARLEY_CLUSTER_ADDRESS).
	ClusterAddress string
	// ClusterPeers are the other nodes' cluster addresses, a static list
	// (PARLEY_CLUSTER_PEERS).
	ClusterPeers []string
	// ClusterEtcd are etcd endpoints for dynamic membership instead of a
	// static list (PARLEY_CLUSTER_ETCD).
	ClusterEtcd []string
	// WebhookVacateDelay is how long channel_vacated and member_removed
	// wait so that a quick reconnect sends neither (nor the re-join)
	// (PARLEY_WEBHOOK_VACATE_DELAY).
	WebhookVacateDelay time.Duration

	// generatedWebhooks are PARLEY_WEBHOOK_URL's for an app EnsureApp generates.
	generatedWebhooks []Webhook

	// ClusterName keeps clusters apart: nodes of different names never join
	// (PARLEY_CLUSTER_NAME).
	ClusterName string
	// ClusterForwardKeep is how long a node keeps what it forwarded to the
	// other nodes, to send it again to one that missed it (a partition, a
	// frozen node; PARLEY_CLUSTER_FORWARD_KEEP). A node that missed older
	// forwards closes its subscribed sockets with 4210 so their clients
	// catch up.
	ClusterForwardKeep time.Duration

	// PprofAddr, when set, serves Go's pprof on its own listener
	// (PARLEY_PPROF_ADDR); keep it on loopback.
	PprofAddr string

	// Observability: logs and metrics (config/observability.go).
	Observability

	// Push: push notifications (config/push.go).
	Push Push
}

// Clustered reports whether this node joins a cluster.
func (c *Config) Clustered() bool { return c.ClusterAddress != "" }

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
