package config

import (
	"flag"
	"fmt"
)

// envOnly are the settings with no flag, listed by `parley serve --help`.
var envOnly = [][2]string{
	{"PARLEY_APP_MAX_CONNECTIONS", "the single app's concurrent sockets, cluster-wide; 0 = unlimited"},
	{"PARLEY_MAX_CHANNELS_PER_CONNECTION", "channels one socket may be in (default 1000)"},
	{"PARLEY_MAX_PRESENCE_MEMBERS", "distinct users of one presence channel (default 100, Pusher's limit)"},
	{"PARLEY_PONG_TIMEOUT", "pong wait after the server's ping, then close 4201 (default 30s)"},
	{"PARLEY_MAX_PENDING_BYTES", "outbound bytes queued per socket before it is dropped with 4101 (default 4194304)"},
	{"PARLEY_SOCKET_SEND_BUFFER", "kernel send buffer per socket; negative = kernel autotuning (default 131072)"},
	{"PARLEY_MAX_PUBLISH_BACKLOG", "publishes waiting for fan-out before the HTTP API answers 503 (default 100000)"},
	{"PARLEY_HTTP_READ_TIMEOUT", "time for an HTTP request body to arrive (default 10s)"},
	{"PARLEY_MAX_BODY_BYTES", "largest HTTP request body (default 1048576)"},
	{"PARLEY_EVENT_NAMESPACE", `chat event name prefix; empty = bare names (default App\Events)`},
	{"PARLEY_MAX_MESSAGE_LENGTH", "longest chat message in characters (default 5000)"},
	{"PARLEY_AUTH_RATE_LIMIT", "channel authorizations (/api/broadcasting/auth) per minute per token, apart from the API limit; 0 = unlimited (default 600)"},
	{"PARLEY_MIN_PASSWORD_LENGTH", "shortest password the admin API and CLI accept (default 8)"},
	{"PARLEY_WEBHOOK_URL", "the single app's webhook URL (several apps: \"webhooks\" in the apps file)"},
	{"PARLEY_WEBHOOK_EVENTS", "its event types, comma-separated (default channel_occupied,channel_vacated,member_added,member_removed)"},
	{"PARLEY_WEBHOOK_VACATE_DELAY", "wait before channel_vacated/member_removed webhooks (default 3s)"},
	{"PARLEY_LOGIN_ATTEMPTS_PER_MINUTE", "failed chat logins per email and address before 429 (default 5)"},
	{"PARLEY_LOGIN_IP_ATTEMPTS_PER_MINUTE", "failed chat logins per address before 429 (default 20)"},
	{"PARLEY_PASSWORD_HASH_CONCURRENCY", "bcrypt checks at once (default max(1, cores/2))"},
	{"PARLEY_TRUSTED_PROXIES", "reverse proxies (addresses, CIDRs) whose X-Forwarded-For names the client"},
	{"PARLEY_UNREAD_WINDOW", "UnreadCountUpdated coalescing window (default 50ms)"},
	{"PARLEY_UNREAD_RECONCILE", "unread counters reload from the database this often (default 30s)"},
	{"PARLEY_LOG_LEVEL", "debug, info, warn or error (default info; debug with --debug)"},
	{"PARLEY_METRICS", "false turns /metrics off (default true)"},
	{"PARLEY_METRICS_TOKEN", "bearer token /metrics requires (default none)"},
	{"PARLEY_PPROF_ADDR", "serve Go's pprof on this host:port (keep it on loopback; default off)"},
	{"GOGC", "Go's GC target (Parley sets 50 unless GOGC is set)"},
}

// printUsage is `parley serve --help`: the flags, then the settings that
// only the environment sets.
func printUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintln(w, "Usage: parley serve [flags]\n\nFlags override environment variables, which override defaults.\n\nFlags:")
	fs.PrintDefaults()
	fmt.Fprintln(w, "\nEnvironment only:")
	for _, e := range envOnly {
		fmt.Fprintf(w, "  %s\n    \t%s\n", e[0], e[1])
	}
	fmt.Fprintln(w, "\nREVERB_APP_ID, REVERB_APP_KEY, REVERB_APP_SECRET, REVERB_SERVER_HOST and REVERB_SERVER_PORT\nare read when the PARLEY_ equivalents are unset.")
}
