package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every bad flag value is one line of the one-message report, with the
// environment's problems, and no usage text.
func TestBadFlagValuesJoinTheReport(t *testing.T) {
	var stderr bytes.Buffer
	_, err := Load([]string{"--port", "abc", "--chat=maybe", "--shutdown-timeout", "soon", "--max-connections", "x"},
		envOf(map[string]string{"PARLEY_MAX_PENDING_BYTES": "lots"}), &stderr)
	var cfgErr *Error
	if !errors.As(err, &cfgErr) {
		t.Fatalf("%v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`--port "abc" is not a whole number`,
		`--chat "maybe" is not true or false`,
		`--shutdown-timeout "soon" is not a duration such as 10s`,
		`--max-connections "x" is not a whole number`,
		`PARLEY_MAX_PENDING_BYTES="lots" is not a whole number`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
	if stderr.Len() != 0 {
		t.Fatalf("flag package output %q: the report is the only message", stderr.String())
	}
	_, err = Load([]string{"--no-such-flag"}, envOf(nil), &stderr)
	if err == nil || !strings.Contains(err.Error(), "flag provided but not defined: -no-such-flag") || stderr.Len() != 0 {
		t.Fatalf("unknown flag: %v / %q", err, stderr.String())
	}
}

func TestHelpListsEnvironmentOnlySettings(t *testing.T) {
	var stderr bytes.Buffer
	_, err := Load([]string{"--help"}, envOf(nil), &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, want := range []string{"-port", "-metrics-addr", "-log-format", "PARLEY_PPROF_ADDR", "PARLEY_PONG_TIMEOUT", "PARLEY_METRICS_TOKEN", "PARLEY_LOG_LEVEL", "PARLEY_TRUSTED_PROXIES"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--help lacks %s", want)
		}
	}
}

func TestDatabaseURLScheme(t *testing.T) {
	for u, ok := range map[string]bool{
		"postgres://u:p@h/db":               true,
		"postgresql://h/db?sslmode=disable": true,
		"mysql://u:hunter2@h/db":            false,
		"sqlite:///tmp/x.db":                false,
		"host=localhost dbname=x":           false,
	} {
		_, err := Load(nil, envOf(map[string]string{"DATABASE_URL": u}), nil)
		if ok && err != nil {
			t.Errorf("%s: %v", u, err)
		}
		if !ok {
			if err == nil || !strings.Contains(err.Error(), "only postgres:// URLs") {
				t.Errorf("%s: %v", u, err)
			} else if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the report repeats the password: %v", err)
			}
		}
	}
}

func TestLogAndMetricsSettings(t *testing.T) {
	cfg, err := Load([]string{"--metrics-addr", "127.0.0.1:9100"}, envOf(map[string]string{
		"PARLEY_LOG_FORMAT": "json", "PARLEY_LOG_LEVEL": "warn", "PARLEY_METRICS_TOKEN": "t0k",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Observability
	if o.LogFormat != "json" || o.LogLevel != slog.LevelWarn || !o.Metrics || o.MetricsAddr != "127.0.0.1:9100" || o.MetricsToken != "t0k" {
		t.Fatalf("%+v", o)
	}
	cfg, _ = Load([]string{"--debug"}, envOf(nil), nil)
	if cfg.LogLevel != slog.LevelDebug || cfg.LogFormat != "text" {
		t.Fatalf("--debug: %+v", cfg.Observability)
	}
	_, err = Load([]string{"--metrics-addr", "nowhere"}, envOf(map[string]string{"PARLEY_LOG_FORMAT": "xml", "PARLEY_LOG_LEVEL": "loud", "PARLEY_METRICS": "perhaps"}), nil)
	for _, want := range []string{`--log-format "xml" must be text or json`, `PARLEY_LOG_LEVEL="loud"`, `PARLEY_METRICS="perhaps"`, `--metrics-addr "nowhere" is not host:port`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

// A restart reads the saved credentials (not generated now), and the file
// holds the credentials only; a file an older Parley wrote with
// "enable_client_events": false, which the server never applied, is
// rewritten without the options.
func TestSavedCredentials(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := Load([]string{"--data-dir", dir}, envOf(nil), nil)
	if err := cfg.EnsureApp(); err != nil {
		t.Fatal(err)
	}
	if a := cfg.Apps[0]; !a.GeneratedNow || !a.ClientEvents || !a.UserAuthentication {
		t.Fatalf("first start: %+v", a)
	}
	var fields map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "credentials.json"))
	if err := json.Unmarshal(b, &fields); err != nil || len(fields) != 3 || fields["secret"] != cfg.Apps[0].Secret {
		t.Fatalf("credentials file %s", b)
	}
	cfg2, _ := Load([]string{"--data-dir", dir}, envOf(nil), nil)
	if err := cfg2.EnsureApp(); err != nil {
		t.Fatal(err)
	}
	if a := cfg2.Apps[0]; a.GeneratedNow || !a.Generated || a.Secret != cfg.Apps[0].Secret {
		t.Fatalf("restart: %+v", a)
	}

	old := `{"id":"123456","key":"k1","secret":"s1","enable_client_events":false,"enable_user_authentication":false,"max_connections":0,"allowed_origins":null,"activity_timeout":0,"max_event_size":0,"max_channels_per_connection":0}`
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, "credentials.json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg3, _ := Load([]string{"--data-dir", dir2}, envOf(nil), nil)
	if err := cfg3.EnsureApp(); err != nil {
		t.Fatal(err)
	}
	if a := cfg3.Apps[0]; a.Key != "k1" || a.Secret != "s1" || !a.ClientEvents || a.GeneratedNow {
		t.Fatalf("old file: %+v", a)
	}
	b, _ = os.ReadFile(filepath.Join(dir2, "credentials.json"))
	if strings.Contains(string(b), "enable_client_events") || !strings.Contains(string(b), `"secret": "s1"`) {
		t.Fatalf("old file not rewritten to the credentials: %s", b)
	}
}
