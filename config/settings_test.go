package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the settings table in "+SettingsDocument)

// Every setting names itself, means something, and a secret never has a
// default to show.
func TestSettingsTableIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings() {
		if len(s.Env) == 0 || s.Help == "" || s.Group == "" {
			t.Errorf("%+v: a setting needs an environment variable, help and a group", s)
			continue
		}
		for _, name := range append([]string{"--" + s.Flag}, s.Env...) {
			if name != "--" && seen[name] {
				t.Errorf("%s is named twice", name)
			}
			seen[name] = true
		}
		if s.Secret && s.Default != "" {
			t.Errorf("%s is a secret with a default", s.Env[0])
		}
		if s.value == nil && s.Flag != "" {
			t.Errorf("--%s is a flag that nothing reads", s.Flag)
		}
	}
}

// --help lists every setting, flags and environment-only ones, with its
// environment variables and its default; it never panics and never shows
// a secret the environment holds.
func TestHelpShowsEverySettingWithItsDefault(t *testing.T) {
	env := map[string]string{}
	for _, s := range Settings() {
		if s.Secret {
			for _, name := range s.Env {
				env[name] = "hunter2-" + name
			}
		}
	}
	var out bytes.Buffer
	if _, err := Load([]string{"--help"}, envOf(env), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	help := out.String()
	if strings.Contains(help, "panic") || strings.Contains(help, "hunter2") {
		t.Fatalf("--help panicked or showed a secret:\n%s", help)
	}
	// The text is wrapped: compare without line breaks.
	flat := strings.Join(strings.Fields(help), " ")
	for _, s := range Settings() {
		want := append([]string{"(default " + plain(strings.Join(strings.Fields(s.DefaultText()), " ")) + ")"}, s.Env...)
		if s.Flag != "" {
			want = append(want, "--"+s.Flag)
		}
		for _, w := range want {
			if !strings.Contains(flat, w) {
				t.Errorf("--help lacks %q for %s", w, s.Env[0])
			}
		}
	}
}

// Every default is a valid value: Load with nothing set succeeds and holds
// the table's defaults.
func TestDefaultsComeFromTheTable(t *testing.T) {
	cfg, err := Load(nil, envOf(map[string]string{"PARLEY_DATA_DIR": t.TempDir()}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "0.0.0.0" || cfg.Port != 8080 || cfg.ClusterForwardKeep.String() != "2m0s" || !cfg.Metrics || cfg.LogFormat != "text" ||
		cfg.MaxPendingBytes != 4<<20 || cfg.EventNamespace != `App\Events` || cfg.LoginAttemptsPerMinute != 5 || cfg.UnreadWindow.String() != "50ms" {
		t.Fatalf("%+v", cfg)
	}
	if DefaultOf("PARLEY_MIN_PASSWORD_LENGTH") != "8" || DefaultOf("PARLEY_APP_SECRET") == "" || DefaultOf("NO_SUCH_SETTING") != "" {
		t.Fatal("DefaultOf")
	}
}

// A bad value is reported with the name the user typed, an alias included,
// and every one of them at once.
func TestProblemsNameWhatTheUserTyped(t *testing.T) {
	_, err := Load([]string{"--cluster-forward-keep", "-1s", "--api-rate-limit", "-2"}, envOf(map[string]string{
		"REVERB_SERVER_PORT": "eighty", "PARLEY_DATABASE_URL": "mysql://u:hunter2@h/db", "PARLEY_MAX_BODY_BYTES": "10",
		"PARLEY_EVENT_NAMESPACE": "",
	}), nil)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		`REVERB_SERVER_PORT="eighty" is not a whole number`,
		`PARLEY_DATABASE_URL/--database-url has the scheme "mysql"`,
		`PARLEY_MAX_BODY_BYTES 10 is below 65536`,
		`--cluster-forward-keep "-1s" is not a positive duration such as 2m`,
		`PARLEY_API_RATE_LIMIT/--api-rate-limit -2 must be 0 (unlimited) or more`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("the report repeats the database password:\n%s", msg)
	}
	// An empty event namespace is a value (bare event names), not unset.
	cfg, err := Load(nil, envOf(map[string]string{"PARLEY_EVENT_NAMESPACE": "", "PARLEY_DATA_DIR": t.TempDir()}), nil)
	if err != nil || cfg.EventNamespace != "" {
		t.Fatalf("empty namespace: %v %q", err, cfg.EventNamespace)
	}
}

// The settings table in the documentation is the one the code renders.
// go test ./config -run TestSettingsDocument -update rewrites it.
func TestSettingsDocumentIsCurrent(t *testing.T) {
	path := filepath.Join("..", filepath.FromSlash(SettingsDocument))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	begin, end := strings.Index(doc, SettingsBegin), strings.Index(doc, SettingsEnd)
	if begin < 0 || end < begin {
		t.Fatalf("%s has no %s ... %s", SettingsDocument, SettingsBegin, SettingsEnd)
	}
	have := doc[begin+len(SettingsBegin) : end]
	want := "\n" + MarkdownTable()
	if have == want {
		return
	}
	if *update {
		doc = doc[:begin+len(SettingsBegin)] + want + doc[end:]
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the settings table in %s is not the generated one; run go test ./config -run TestSettingsDocument -update", SettingsDocument)
}
