package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func envOf(m map[string]string) Getenv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultsAndFlagsOverrideEnv(t *testing.T) {
	cfg, err := Load([]string{"--port", "9000"}, envOf(map[string]string{
		"PARLEY_PORT": "7000", "PARLEY_HOST": "127.0.0.1",
		"PARLEY_APP_ID": "a", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "s",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 9000 || cfg.Host != "127.0.0.1" || cfg.DataDir != "./data" || cfg.APIRateLimit != 60 || cfg.EventNamespace != `App\Events` {
		t.Fatalf("%+v", cfg)
	}
	a := cfg.Apps[0]
	if !a.ClientEvents || !a.UserAuthentication || a.ActivityTimeout != 120 || a.MaxEventSize != 10240 {
		t.Fatalf("app defaults %+v", a)
	}
}

func TestReverbEnvFallback(t *testing.T) {
	cfg, err := Load(nil, envOf(map[string]string{
		"REVERB_APP_ID": "rid", "REVERB_APP_KEY": "rkey", "REVERB_APP_SECRET": "rsec",
		"REVERB_SERVER_HOST": "127.0.0.2", "REVERB_SERVER_PORT": "8081",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Apps[0].ID != "rid" || cfg.Apps[0].Key != "rkey" || cfg.Host != "127.0.0.2" || cfg.Port != 8081 {
		t.Fatalf("%+v", cfg)
	}
	// PARLEY_* wins over REVERB_*.
	cfg, _ = Load(nil, envOf(map[string]string{"REVERB_APP_ID": "rid", "PARLEY_APP_ID": "pid", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "s"}), nil)
	if cfg.Apps[0].ID != "pid" {
		t.Fatal(cfg.Apps[0].ID)
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	_, err := Load([]string{"--port", "70000"}, envOf(map[string]string{
		"PARLEY_APP_ID": "a", "PARLEY_PONG_TIMEOUT": "soon", "PARLEY_API_RATE_LIMIT": "-1", "PARLEY_DEBUG": "maybe",
	}), nil)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *Error, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"--port 70000", "PARLEY_APP_KEY", "PARLEY_APP_SECRET", "PARLEY_PONG_TIMEOUT", "PARLEY_API_RATE_LIMIT", "PARLEY_DEBUG"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message does not name %s:\n%s", want, msg)
		}
	}
}

func TestAppsFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "apps.json")
	os.WriteFile(path, []byte(`{"apps":[{"id":"1","key":"k1","secret":"s1","enable_client_events":false,"max_connections":5,"allowed_origins":["*.example.com"]},{"id":"2","key":"k2","secret":"s2"}]}`), 0o600)
	cfg, err := Load([]string{"--apps-file", path}, envOf(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps) != 2 || cfg.Apps[0].ClientEvents || !cfg.Apps[1].ClientEvents || cfg.Apps[0].MaxConnections != 5 {
		t.Fatalf("%+v", cfg.Apps)
	}
	if a, ok := cfg.AppByKey("k2"); !ok || a.ID != "2" {
		t.Fatal("AppByKey")
	}
	os.WriteFile(path, []byte(`[{"id":"1","key":"k","secret":"s"},{"id":"1","key":"k","secret":""}]`), 0o600)
	_, err = Load([]string{"--apps-file", path}, envOf(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "duplicate id") || !strings.Contains(err.Error(), "secret is empty") {
		t.Fatalf("%v", err)
	}
	os.WriteFile(path, []byte(`[{"id":"1","key":"k","secret":"s","typo_option":1}]`), 0o600)
	if _, err = Load([]string{"--apps-file", path}, envOf(nil), nil); err == nil || !strings.Contains(err.Error(), "typo_option") {
		t.Fatalf("unknown option not reported: %v", err)
	}
}

func TestGeneratedCredentialsAreKept(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load([]string{"--data-dir", dir}, envOf(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.EnsureApp(); err != nil {
		t.Fatal(err)
	}
	first := cfg.Apps[0]
	if !first.Generated || first.Secret == "" {
		t.Fatalf("%+v", first)
	}
	cfg2, _ := Load([]string{"--data-dir", dir}, envOf(nil), nil)
	if err := cfg2.EnsureApp(); err != nil {
		t.Fatal(err)
	}
	if cfg2.Apps[0].Key != first.Key || cfg2.Apps[0].Secret != first.Secret {
		t.Fatal("credentials changed across restarts")
	}
}

func TestOriginAllowed(t *testing.T) {
	a := App{AllowedOrigins: []string{"https://app.example.com", "*.example.org", "localhost"}}
	for origin, want := range map[string]bool{
		"": true, "https://app.example.com": true, "https://x.example.org": true, "http://localhost:3000": true,
		"https://example.org": false, "https://evil.com": false, "https://app.example.com.evil.com": false,
	} {
		if got := a.OriginAllowed(origin); got != want {
			t.Errorf("%q: %v, want %v", origin, got, want)
		}
	}
}

func TestHelpNeverPrintsASecret(t *testing.T) {
	var out strings.Builder
	_, err := Load([]string{"--help"}, envOf(map[string]string{"PARLEY_APP_ID": "a", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "topsecret"}), &out)
	if err == nil || strings.Contains(out.String(), "topsecret") {
		t.Fatalf("help printed the secret or did not stop: %v\n%s", err, out.String())
	}
	cfg, err := Load([]string{"--app-secret", "fromflag"}, envOf(map[string]string{"PARLEY_APP_ID": "a", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "env"}), nil)
	if err != nil || cfg.Apps[0].Secret != "fromflag" {
		t.Fatalf("flag did not override env: %v", err)
	}
}
