package bench

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/parley-chat/parley/config"
)

var creds = []string{"--app-id", "1", "--key", "k", "--secret", "s"}

func TestBadFlagsAreUsageErrors(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	cases := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"rate zero", []string{"fanout", "--rate", "0"}, "--rate must be > 0"},
		{"negative subscribers", []string{"fanout", "--subscribers", "-5"}, "--subscribers must be between 1 and 50000 (got -5)"},
		{"subscribers over cap", []string{"fanout", "-n", "50001"}, "--subscribers must be between 1 and 50000 (got 50001)"},
		{"rate over cap", []string{"fanout", "--rate", "1e6"}, "--rate must be > 0 and at most 100000"},
		{"duration over cap", []string{"fanout", "--duration", "11m"}, "--duration must be between"},
		{"zero duration", []string{"fanout", "--duration", "0s"}, "--duration must be between"},
		{"more channels than subscribers", []string{"fanout", "-n", "2", "--channels", "3"}, "--channels must be between 1 and 2"},
		{"private prefix", []string{"fanout", "--channel-prefix", "private-x"}, "public channels"},
		{"too many deliveries", []string{"fanout", "-n", "50000", "--channels", "1", "--rate", "100000", "--duration", "10m"}, "over the cap"},
		{"not a number", []string{"fanout", "--rate", "fast"}, "invalid value"},
		{"unknown flag", []string{"fanout", "--nope"}, "flag provided but not defined"},
		{"stray argument", []string{"fanout", "extra"}, `unexpected argument "extra"`},
		{"negative connections", []string{"connections", "--connections", "-1"}, "--connections must be between"},
		{"negative hold", []string{"connections", "--hold", "-1s"}, "--hold must be between"},
		{"presence of one", []string{"presence", "--members", "1"}, "--members must be between 2 and 5000"},
		{"presence over cap", []string{"presence", "--members", "5001"}, "--members must be between 2 and 5000"},
		{"public presence channel", []string{"presence", "--channel", "bench"}, "starting with presence-"},
		{"chat rate zero", []string{"chat", "--rate", "0"}, "--rate must be > 0 and at most 1000"},
		{"chat too many users", []string{"chat", "--matters", "500", "--members", "5"}, "at most 1000 users"},
		{"users file without matters", []string{"chat", "--users-file", "/nonexistent.json"}, "--users-file"},
		{"bad port", []string{"fanout", "--port", "0"}, "--port must be between 1 and 65535"},
		{"dead server pid", []string{"fanout", "--server-pid", "999999999"}, "--server-pid 999999999"},
		{"dead server pid in a list", []string{"fanout", "--server-pid", self + ",999999999"}, "--server-pid 999999999"},
		{"server pid twice", []string{"fanout", "--server-pid", self, "--server-pid", self}, "--server-pid " + self + " is given twice"},
		{"server pid not a number", []string{"fanout", "--server-pid", self + ",x"}, "invalid value"},
		{"port not a number", []string{"fanout", "--port", "8080,x"}, "invalid value"},
		{"port zero in a list", []string{"fanout", "--port", "8080,0"}, "--port must be between 1 and 65535 (got 0)"},
		{"port twice", []string{"fanout", "--port", "8080", "--port", "8081,8080"}, "--port 8080 is given twice"},
		{"several ports for connections", []string{"connections", "--port", "8080,8081"}, "--port lists 2 nodes but only fanout"},
		{"several ports for chat", []string{"chat", "--port", "8080", "--port", "8081"}, "--port lists 2 nodes but only fanout"},
		{"negative slow consumers", []string{"fanout", "--slow-consumers", "-1"}, "--slow-consumers must be between 0 and 50000 (got -1)"},
		{"too many sockets with slow consumers", []string{"fanout", "-n", "40000", "--slow-consumers", "20000"}, "--subscribers plus --slow-consumers must be at most 50000 (got 60000)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runMain(t, append(c.args, creds...)...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q lacks %q", stderr, c.want)
			}
			if stdout != "" {
				t.Errorf("a usage error printed a report: %q", stdout)
			}
		})
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	for _, v := range []string{"PARLEY_APP_ID", "PARLEY_APP_KEY", "PARLEY_APP_SECRET", "REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET"} {
		t.Setenv(v, "")
	}
	t.Setenv("PARLEY_DATA_DIR", t.TempDir()) // no saved credentials
	code, _, stderr := runMain(t, "fanout", "--rate", "0", "--subscribers", "-1", "--payload", "-3", "--key", "", "--app-id", "", "--secret", "")
	if code != exitUsage {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--rate", "--subscribers", "--payload", "--key is required", "--app-id is required", "--secret is required"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestCredentialsFromEnvironment(t *testing.T) {
	t.Setenv("PARLEY_APP_KEY", "")
	t.Setenv("REVERB_APP_KEY", "reverb-key")
	t.Setenv("PARLEY_APP_ID", "parley-id")
	t.Setenv("REVERB_APP_ID", "reverb-id")
	t.Setenv("PARLEY_APP_SECRET", "top-secret")
	sc := lookup("fanout")
	fs, cfg := newFlagSet(sc)
	sc.define(fs, cfg)
	if err := fs.Parse([]string{"--app-id", ""}); err != nil {
		t.Fatal(err)
	}
	cfg.applyEnv()
	if cfg.Key != "reverb-key" || cfg.AppID != "parley-id" {
		t.Errorf("key %q app id %q: PARLEY_ should win, REVERB_ fill in", cfg.Key, cfg.AppID)
	}
	if cfg.Host != "127.0.0.1" || cfg.Ports.String() != "8080" {
		t.Errorf("defaults %s:%s, want 127.0.0.1:8080", cfg.Host, &cfg.Ports)
	}
	if _, stdout, _ := runMain(t, "fanout", "--help"); strings.Contains(stdout, "top-secret") {
		t.Error("--help printed the secret from the environment")
	}
}

// With no credentials given, bench uses the ones parley serve generated
// and saved in its data directory, as serve itself does; given ones win.
func TestCredentialsFromTheServersDataDir(t *testing.T) {
	for _, v := range []string{"PARLEY_APP_ID", "PARLEY_APP_KEY", "PARLEY_APP_SECRET", "REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET", "PARLEY_DATA_DIR"} {
		t.Setenv(v, "")
	}
	dir := t.TempDir()
	served, err := config.Load([]string{"--data-dir", dir}, func(string) (string, bool) { return "", false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := served.EnsureApp(); err != nil {
		t.Fatal(err)
	}
	app := served.Apps[0]
	parse := func(args ...string) (*commonConfig, error) {
		t.Helper()
		cfg := parseFanout(t, args...)
		return cfg, cfg.applyEnv()
	}
	cfg, err := parse("--data-dir", dir)
	if err != nil || cfg.AppID != app.ID || cfg.Key != app.Key || cfg.Secret != app.Secret {
		t.Fatalf("--data-dir: %v, %q %q", err, cfg.AppID, cfg.Key)
	}
	t.Setenv("PARLEY_DATA_DIR", dir)
	if cfg, err = parse(); err != nil || cfg.Key != app.Key {
		t.Fatalf("PARLEY_DATA_DIR: %v, key %q", err, cfg.Key)
	}
	if cfg, _ = parse("--key", "other"); cfg.Key != "other" || cfg.Secret != "" {
		t.Fatalf("a given key mixed with the saved credentials: %q %q", cfg.Key, cfg.Secret)
	}
	if err := os.WriteFile(filepath.Join(dir, "credentials.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runMain(t, "fanout"); code != exitUsage || !strings.Contains(stderr, "is damaged") {
		t.Fatalf("damaged file: exit %d, %s", code, stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, stdout, _ := runMain(t, args...)
		if code != exitOK || !strings.Contains(stdout, "fanout") || !strings.Contains(stdout, "presence") {
			t.Errorf("%v: exit %d, stdout %q", args, code, stdout)
		}
	}
	for _, sc := range scenarios {
		for _, args := range [][]string{{sc.name, "--help"}, {"help", sc.name}} {
			code, stdout, _ := runMain(t, args...)
			if code != exitOK || !strings.Contains(stdout, "parley bench "+sc.name) || !strings.Contains(stdout, "-allow-remote") {
				t.Errorf("%v: exit %d, stdout %q", args, code, stdout)
			}
		}
	}
	if code, _, stderr := runMain(t); code != exitUsage || !strings.Contains(stderr, "Usage") {
		t.Errorf("no arguments: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runMain(t, "soak"); code != exitUsage || !strings.Contains(stderr, `unknown scenario "soak"`) {
		t.Errorf("unknown scenario: exit %d, stderr %q", code, stderr)
	}
}

func TestLoopbackGuardRefusesRemoteWithoutDialling(t *testing.T) {
	var dials atomic.Int64
	orig := dialContext
	dialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return nil, &net.OpError{Op: "dial", Err: net.UnknownNetworkError("test")}
	}
	t.Cleanup(func() { dialContext = orig })

	for _, sc := range []string{"fanout", "connections", "presence", "chat"} {
		code, stdout, stderr := runMain(t, append([]string{sc, "--host", "10.0.0.1"}, creds...)...)
		if code != exitUsage || !strings.Contains(stderr, "--allow-remote") || stdout != "" {
			t.Errorf("%s: exit %d, stderr %q", sc, code, stderr)
		}
	}
	if n := dials.Load(); n != 0 {
		t.Fatalf("the guard let %d connection attempts through", n)
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, h := range []string{"127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]", "::ffff:127.0.0.1"} {
		if err := checkLoopback(h); err != nil {
			t.Errorf("%s refused: %v", h, err)
		}
	}
	for _, h := range []string{"10.0.0.1", "192.168.1.1", "172.16.0.1", "8.8.8.8", "example.com", "localhost.example.com", "0.0.0.0", "::"} {
		if err := checkLoopback(h); err == nil {
			t.Errorf("%s accepted", h)
		}
	}
	c := commonConfig{Host: "10.0.0.1", Ports: intsFlag{v: []int{80}}, AllowRemote: true, DialConcurrency: 1}
	if probs := c.validate(credentials{}); len(probs) != 0 {
		t.Errorf("--allow-remote should let 10.0.0.1 pass validation: %v", probs)
	}
}

// parseFanout parses fanout's flags, without the environment.
func parseFanout(t *testing.T, args ...string) *commonConfig {
	t.Helper()
	sc := lookup("fanout")
	fs, cfg := newFlagSet(sc)
	sc.define(fs, cfg)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestPortAndServerPIDLists(t *testing.T) {
	parse := func(args ...string) *commonConfig { return parseFanout(t, args...) }
	if cfg := parse(); !slices.Equal(cfg.Ports.v, []int{8080}) || len(cfg.ServerPIDs.v) != 0 {
		t.Errorf("defaults: ports %v, pids %v", cfg.Ports.v, cfg.ServerPIDs.v)
	}
	// Repeated, listed, or both; the first use replaces the default.
	cfg := parse("--host", "::1", "--port", "9001", "--port", "9002, 9003", "--server-pid", "7,8", "--server-pid", "9")
	if !slices.Equal(cfg.Ports.v, []int{9001, 9002, 9003}) || !slices.Equal(cfg.ServerPIDs.v, []int{7, 8, 9}) {
		t.Errorf("ports %v, pids %v", cfg.Ports.v, cfg.ServerPIDs.v)
	}
	var got []string
	for _, tg := range cfg.targets() {
		got = append(got, tg.hostPort())
	}
	if want := []string{"[::1]:9001", "[::1]:9002", "[::1]:9003"}; !slices.Equal(got, want) {
		t.Errorf("targets %v, want %v", got, want)
	}
	if cfg.target().port != 9001 {
		t.Errorf("the first node is %v, want port 9001", cfg.target())
	}
	// A single --port is what it always was.
	if cfg := parse("--port", "8123"); !slices.Equal(cfg.Ports.v, []int{8123}) || targetsString(cfg.targets()) != "127.0.0.1:8123" {
		t.Errorf("single port: %v", cfg.Ports.v)
	}
}

func TestServerFiguresAreSummed(t *testing.T) {
	read := func(pid int) (int64, error) {
		if pid == 3 {
			return 0, errors.New("exited")
		}
		return int64(pid) * 100, nil
	}
	if got := sumOver([]int{1, 2, 3, 4}, read); got != 700 {
		t.Errorf("sum %d, want 700 (a process that cannot be read counts as zero)", got)
	}
	// Against /proc: this process and its parent, summed.
	pids := []int{os.Getpid(), os.Getppid()}
	s := serverSampler{pids: pids}
	parent, err := procRSS(os.Getppid())
	if err != nil {
		t.Skip(err)
	}
	if got := s.rss(); got <= parent {
		t.Errorf("summed RSS %d is not above the parent's alone (%d)", got, parent)
	}
}
