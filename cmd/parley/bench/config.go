package bench

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Hard caps. They keep a mistyped flag from turning the bench into
// something that exhausts the machine it shares with the server, and they
// bound every run in time.
const (
	maxSockets            = 50_000  // sockets per run (fanout, connections)
	maxPresenceMembers    = 5_000   // member_added frames grow as N²
	maxRate               = 100_000 // events/s published over HTTP
	maxChatRate           = 1_000   // messages/s through the chat API
	maxChatUsers          = 1_000   // matters × members
	maxDuration           = 10 * time.Minute
	maxHold               = 10 * time.Minute
	maxDrain              = time.Minute
	maxSettle             = 5 * time.Minute
	maxPayload            = 64 << 10 // bytes; most servers refuse > 10 KB anyway
	maxWorkers            = 1_000    // concurrent publishers / dialers
	maxTimeout            = 2 * time.Hour
	maxExpectedDeliveries = 1_000_000_000 // one bit each in the tracker: ≤ 125 MB
)

// commonConfig holds the flags every scenario shares.
type commonConfig struct {
	Host   string // default 127.0.0.1, like `parley serve`
	Port   int    // default 8080, like `parley serve`
	AppID  string // default $PARLEY_APP_ID, then $REVERB_APP_ID
	Key    string // default $PARLEY_APP_KEY, then $REVERB_APP_KEY
	Secret string // default $PARLEY_APP_SECRET, then $REVERB_APP_SECRET

	AllowRemote     bool          // permit a non-loopback --host
	JSONPath        string        // also write the report as JSON here
	ServerPID       int           // read the server's CPU and RSS from /proc/PID; 0 = off
	DialConcurrency int           // WebSocket handshakes in flight; default 200
	Quiet           bool          // no progress line
	Timeout         time.Duration // hard deadline for the whole run; zero = derived from the scenario
}

func (c *commonConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Host, "host", "127.0.0.1", "server host; loopback only (127.0.0.0/8, ::1, localhost) unless --allow-remote")
	fs.IntVar(&c.Port, "port", 8080, "server port (WebSocket and HTTP API)")
	// The environment is applied after parsing (applyEnv), so that --help
	// never prints a secret as a default.
	fs.StringVar(&c.AppID, "app-id", "", "app id (default $PARLEY_APP_ID, then $REVERB_APP_ID)")
	fs.StringVar(&c.Key, "key", "", "app key (default $PARLEY_APP_KEY, then $REVERB_APP_KEY)")
	fs.StringVar(&c.Secret, "secret", "", "app secret (default $PARLEY_APP_SECRET, then $REVERB_APP_SECRET)")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow a --host that is not a loopback address")
	fs.StringVar(&c.JSONPath, "json", "", "also write the report as JSON to `FILE`")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "server process id: report its RSS and CPU time from /proc (same machine only)")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 200, "WebSocket handshakes in flight at once")
	fs.BoolVar(&c.Quiet, "quiet", false, "do not print the progress line on stderr")
	fs.DurationVar(&c.Timeout, "timeout", 0, "hard deadline for the whole run (default: derived from the scenario's flags)")
}

// applyEnv fills the credentials not given as flags from the environment:
// Parley's variables first, then Reverb's, so an existing Reverb setup
// works as is.
func (c *commonConfig) applyEnv() {
	if c.AppID == "" {
		c.AppID = envDefault("PARLEY_APP_ID", "REVERB_APP_ID")
	}
	if c.Key == "" {
		c.Key = envDefault("PARLEY_APP_KEY", "REVERB_APP_KEY")
	}
	if c.Secret == "" {
		c.Secret = envDefault("PARLEY_APP_SECRET", "REVERB_APP_SECRET")
	}
}

// envDefault returns the first non-empty environment variable of names.
func envDefault(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// credentials says which of the app credentials a scenario needs.
type credentials struct{ appID, key, secret bool }

// validate returns every problem with the shared flags at once.
func (c *commonConfig) validate(need credentials) []string {
	var probs []string
	if c.Host == "" {
		probs = append(probs, "--host must not be empty")
	} else if !c.AllowRemote {
		if err := checkLoopback(c.Host); err != nil {
			probs = append(probs, err.Error())
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		probs = append(probs, fmt.Sprintf("--port must be between 1 and 65535 (got %d)", c.Port))
	}
	if need.appID && c.AppID == "" {
		probs = append(probs, "--app-id is required (or set PARLEY_APP_ID / REVERB_APP_ID)")
	}
	if need.key && c.Key == "" {
		probs = append(probs, "--key is required (or set PARLEY_APP_KEY / REVERB_APP_KEY)")
	}
	if need.secret && c.Secret == "" {
		probs = append(probs, "--secret is required (or set PARLEY_APP_SECRET / REVERB_APP_SECRET)")
	}
	if c.ServerPID < 0 {
		probs = append(probs, fmt.Sprintf("--server-pid must be a process id (got %d)", c.ServerPID))
	} else if c.ServerPID > 0 {
		if _, err := readProcStat(c.ServerPID); err != nil {
			probs = append(probs, fmt.Sprintf("--server-pid %d: %v", c.ServerPID, err))
		}
	}
	if c.JSONPath != "" {
		// Found out now rather than after a long run.
		if st, err := os.Stat(filepath.Dir(c.JSONPath)); err != nil || !st.IsDir() {
			probs = append(probs, fmt.Sprintf("--json %s: its directory does not exist", c.JSONPath))
		}
	}
	probs = checkRange(probs, "--dial-concurrency", c.DialConcurrency, 1, maxWorkers)
	if c.Timeout < 0 || c.Timeout > maxTimeout {
		probs = append(probs, fmt.Sprintf("--timeout must be between 0 and %s (got %s)", maxTimeout, c.Timeout))
	}
	return probs
}

// checkLoopback refuses anything but 127.0.0.0/8, ::1 and "localhost".
// Names are not resolved: a name that happens to resolve to loopback today
// is not a promise about where the traffic goes tomorrow.
func checkLoopback(host string) error {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return nil
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--host %s is not a loopback address (127.0.0.0/8, ::1, localhost); pass --allow-remote to load another machine", host)
}

func checkRange[T int | int64 | float64](probs []string, name string, v, lo, hi T) []string {
	if v < lo || v > hi {
		probs = append(probs, fmt.Sprintf("%s must be between %v and %v (got %v)", name, lo, hi, v))
	}
	return probs
}

func checkDuration(probs []string, name string, v, lo, hi time.Duration) []string {
	if v < lo || v > hi {
		probs = append(probs, fmt.Sprintf("%s must be between %s and %s (got %s)", name, lo, hi, v))
	}
	return probs
}

// target is where the load goes.
type target struct {
	host               string
	port               int
	appID, key, secret string
}

func (c *commonConfig) target() target {
	host := strings.TrimSuffix(strings.TrimPrefix(c.Host, "["), "]") // JoinHostPort adds them back
	return target{host: host, port: c.Port, appID: c.AppID, key: c.Key, secret: c.Secret}
}

func (t target) hostPort() string { return net.JoinHostPort(t.host, strconv.Itoa(t.port)) }

func (t target) String() string { return t.hostPort() }

// wsURL is the Pusher WebSocket endpoint for the app key.
func (t target) wsURL() string {
	return "ws://" + t.hostPort() + "/app/" + url.PathEscape(t.key) + "?protocol=7&client=parley-bench&version=1.0"
}

// httpURL is an absolute URL on the server's HTTP side.
func (t target) httpURL(path string) string { return "http://" + t.hostPort() + path }
