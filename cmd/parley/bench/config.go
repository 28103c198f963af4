package bench

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/config"
)

// Hard caps. They keep a mistyped flag from turning the bench into
// something that exhausts the machine it shares with the server, and they
// bound every run in time.
const (
	maxSockets            = 50_000  // sockets per run (fanout, connections)
	maxPresenceMembers    = 5_000   // member_added frames grow as N²
	maxRate               = 100_000 // events/s published over HTTP
	maxChatRate           = 10_000  // messages/s through the chat API
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
	Host   string   // default 127.0.0.1, like `parley serve`
	Ports  intsFlag // default 8080, like `parley serve`; several = several nodes on Host
	AppID  string   // default $PARLEY_APP_ID, then $REVERB_APP_ID
	Key    string   // default $PARLEY_APP_KEY, then $REVERB_APP_KEY
	Secret string   // default $PARLEY_APP_SECRET, then $REVERB_APP_SECRET
	// DataDir is the server's data directory: with no credentials given,
	// the ones `parley serve` generated and saved there are used; chat
	// passes it to the admin commands.
	DataDir string

	AllowRemote     bool          // permit a non-loopback --host
	JSONPath        string        // also write the report as JSON here
	ServerPIDs      intsFlag      // read the servers' CPU and RSS from /proc/PID, summed; none = off
	DialConcurrency int           // WebSocket handshakes in flight; default 200
	Quiet           bool          // no progress line
	Timeout         time.Duration // hard deadline for the whole run; zero = derived from the scenario
}

func (c *commonConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Host, "host", "127.0.0.1", "server host; loopback only (127.0.0.0/8, ::1, localhost) unless --allow-remote")
	c.Ports = intsFlag{v: []int{8080}}
	fs.Var(&c.Ports, "port", "server `port` (WebSocket and HTTP API); fanout takes several (repeat the flag or list them: 8080,8081), one per node on --host")
	// The environment is applied after parsing (applyEnv), so that --help
	// never prints a secret as a default.
	fs.StringVar(&c.AppID, "app-id", "", "app id (default $PARLEY_APP_ID, then $REVERB_APP_ID)")
	fs.StringVar(&c.Key, "key", "", "app key (default $PARLEY_APP_KEY, then $REVERB_APP_KEY)")
	fs.StringVar(&c.Secret, "secret", "", "app secret (default $PARLEY_APP_SECRET, then $REVERB_APP_SECRET)")
	fs.StringVar(&c.DataDir, "data-dir", serverDataDir(), "the server's data directory: with no --app-id, --key or --secret (nor their variables), the credentials parley serve generated there are used; chat passes it to the admin commands (default $PARLEY_DATA_DIR, then ./data)")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow a --host that is not a loopback address")
	fs.StringVar(&c.JSONPath, "json", "", "also write the report as JSON to `FILE`")
	fs.Var(&c.ServerPIDs, "server-pid", "server process `id`: report its RSS and CPU time from /proc (same machine only); repeat the flag or list ids (1,2) to sum several nodes")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 200, "WebSocket handshakes in flight at once")
	fs.BoolVar(&c.Quiet, "quiet", false, "do not print the progress line on stderr")
	fs.DurationVar(&c.Timeout, "timeout", 0, "hard deadline for the whole run (default: derived from the scenario's flags)")
}

// applyEnv fills the credentials not given as flags from the environment:
// Parley's variables first, then Reverb's, so an existing Reverb setup
// works as is. With none given at all, it reads the credentials `parley
// serve` generated and saved in the data directory, as serve does.
func (c *commonConfig) applyEnv() error {
	if c.AppID == "" {
		c.AppID = envDefault("PARLEY_APP_ID", "REVERB_APP_ID")
	}
	if c.Key == "" {
		c.Key = envDefault("PARLEY_APP_KEY", "REVERB_APP_KEY")
	}
	if c.Secret == "" {
		c.Secret = envDefault("PARLEY_APP_SECRET", "REVERB_APP_SECRET")
	}
	if c.AppID != "" || c.Key != "" || c.Secret != "" || c.DataDir == "" {
		return nil
	}
	id, key, secret, err := config.SavedCredentials(c.DataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // the checks say what is missing
	case err != nil:
		return fmt.Errorf("--data-dir: %v", err)
	}
	c.AppID, c.Key, c.Secret = id, key, secret
	return nil
}

// serverDataDir is the data directory `parley serve` uses unless told
// otherwise: $PARLEY_DATA_DIR, else the default.
func serverDataDir() string {
	if d := os.Getenv("PARLEY_DATA_DIR"); d != "" {
		return d
	}
	return config.DefaultDataDir
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
	for _, p := range c.Ports.v {
		if p < 1 || p > 65535 {
			probs = append(probs, fmt.Sprintf("--port must be between 1 and 65535 (got %d)", p))
		}
	}
	if p, ok := c.Ports.duplicate(); ok {
		probs = append(probs, fmt.Sprintf("--port %d is given twice", p))
	}
	if need.appID && c.AppID == "" {
		probs = append(probs, "--app-id is required (or set PARLEY_APP_ID / REVERB_APP_ID, or point --data-dir at the server's generated credentials)")
	}
	if need.key && c.Key == "" {
		probs = append(probs, "--key is required (or set PARLEY_APP_KEY / REVERB_APP_KEY, or point --data-dir at the server's generated credentials)")
	}
	if need.secret && c.Secret == "" {
		probs = append(probs, "--secret is required (or set PARLEY_APP_SECRET / REVERB_APP_SECRET, or point --data-dir at the server's generated credentials)")
	}
	for _, pid := range c.ServerPIDs.v {
		if pid <= 0 {
			probs = append(probs, fmt.Sprintf("--server-pid must be a process id (got %d)", pid))
		} else if _, err := readProcStat(pid); err != nil {
			probs = append(probs, fmt.Sprintf("--server-pid %d: %v", pid, err))
		}
	}
	if pid, ok := c.ServerPIDs.duplicate(); ok {
		// Summing a process twice would double its figures.
		probs = append(probs, fmt.Sprintf("--server-pid %d is given twice", pid))
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

// target is the first node: the only one for most scenarios, and the one
// whose HTTP API fanout publishes through.
func (c *commonConfig) target() target { return c.targets()[0] }

// targets is one target per --port, in the order given.
func (c *commonConfig) targets() []target {
	host := strings.TrimSuffix(strings.TrimPrefix(c.Host, "["), "]") // JoinHostPort adds them back
	ts := make([]target, len(c.Ports.v))
	for i, p := range c.Ports.v {
		ts[i] = target{host: host, port: p, appID: c.AppID, key: c.Key, secret: c.Secret}
	}
	return ts
}

// targetsString names every node, for the report.
func targetsString(ts []target) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, ",")
}

func (t target) hostPort() string { return net.JoinHostPort(t.host, strconv.Itoa(t.port)) }

func (t target) String() string { return t.hostPort() }

// wsURL is the Pusher WebSocket endpoint for the app key.
func (t target) wsURL() string { return "ws://" + t.hostPort() + t.wsPath() }

// wsPath is wsURL's path and query.
func (t target) wsPath() string {
	return "/app/" + url.PathEscape(t.key) + "?protocol=7&client=parley-bench&version=1.0"
}

// intsFlag is a flag of one or more integers: repeated (--port 1 --port 2),
// comma-separated (--port 1,2) or both. The first use replaces the default.
type intsFlag struct {
	v   []int
	set bool
}

func (f *intsFlag) String() string {
	if f == nil {
		return ""
	}
	s := make([]string, len(f.v))
	for i, n := range f.v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (f *intsFlag) Set(s string) error {
	if !f.set {
		f.v, f.set = nil, true
	}
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("%q is not a number", part)
		}
		f.v = append(f.v, n)
	}
	return nil
}

// duplicate returns a value given more than once.
func (f *intsFlag) duplicate() (int, bool) {
	seen := make(map[int]bool, len(f.v))
	for _, n := range f.v {
		if seen[n] {
			return n, true
		}
		seen[n] = true
	}
	return 0, false
}

// httpURL is an absolute URL on the server's HTTP side.
func (t target) httpURL(path string) string { return "http://" + t.hostPort() + path }
