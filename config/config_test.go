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

func TestClusterSettings(t *testing.T) {
	base := map[string]string{"PARLEY_APP_ID": "a", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "s"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cfg, err := Load([]string{"--cluster-address", "127.0.0.1:7000", "--cluster-peers", "127.0.0.1:7002, 127.0.0.1:7004", "--chat=false"}, envOf(base), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Clustered() || cfg.Chat || len(cfg.ClusterPeers) != 2 || cfg.ClusterPeers[1] != "127.0.0.1:7004" || cfg.ClusterName != "parley" {
		t.Fatalf("%+v", cfg)
	}
	cfg, err = Load(nil, envOf(with(map[string]string{"PARLEY_CLUSTER_ADDRESS": "127.0.0.1:7000", "PARLEY_CLUSTER_ETCD": "http://127.0.0.1:2379",
		"DATABASE_URL": "postgres://localhost/x", "PARLEY_CLUSTER_NAME": "blue"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClusterEtcd[0] != "http://127.0.0.1:2379" || cfg.ClusterName != "blue" || !cfg.Chat {
		t.Fatalf("%+v", cfg)
	}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"chat without a shared database": {[]string{"--cluster-address", "127.0.0.1:7000"}, nil, "needs a shared PostgreSQL database"},
		"peers without an address":       {[]string{"--cluster-peers", "127.0.0.1:7002", "--chat=false"}, nil, "need PARLEY_CLUSTER_ADDRESS"},
		"bad address":                    {[]string{"--cluster-address", "nohost", "--chat=false"}, nil, "is not host:port"},
		"peers and etcd":                 {[]string{"--cluster-address", "127.0.0.1:7000", "--chat=false", "--cluster-peers", "a:1", "--cluster-etcd", "http://e:2379"}, nil, "not both"},
		"bad chat switch":                {nil, map[string]string{"PARLEY_CHAT": "maybe"}, "PARLEY_CHAT"},
		"bad trusted proxy":              {nil, map[string]string{"PARLEY_TRUSTED_PROXIES": "10.0.0.0/8,nope"}, `"nope"`},
	} {
		_, err := Load(tc.args, envOf(with(tc.env)), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
	}
}

func TestLimitSettings(t *testing.T) {
	cfg, err := Load([]string{"--max-connections-per-ip", "50"}, envOf(map[string]string{
		"PARLEY_APP_ID": "a", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "s",
		"PARLEY_MAX_CHANNELS_PER_CONNECTION": "20", "PARLEY_HTTP_READ_TIMEOUT": "3s", "PARLEY_APP_MAX_CONNECTIONS": "500",
		"PARLEY_MAX_PRESENCE_MEMBERS": "1000",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConnectionsPerIP != 50 || cfg.Apps[0].MaxChannelsPerConnection != 20 || cfg.HTTPReadTimeout.Seconds() != 3 ||
		cfg.Apps[0].MaxConnections != 500 || cfg.Apps[0].MaxPresenceMembers != 1000 || cfg.MaxBodyBytes != 1<<20 || cfg.SocketSendBuffer != 128<<10 || cfg.MaxPublishBacklog != 100000 {
		t.Fatalf("%+v %+v", cfg, cfg.Apps[0])
	}
	cfg, _ = Load(nil, envOf(map[string]string{"PARLEY_APP_ID": "a", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "s"}), nil)
	if cfg.Apps[0].MaxChannelsPerConnection != DefaultMaxChannelsPerConnection {
		t.Fatalf("default channels per connection %d", cfg.Apps[0].MaxChannelsPerConnection)
	}
	if cfg.Apps[0].MaxPresenceMembers != DefaultMaxPresenceMembers {
		t.Fatalf("default presence members %d", cfg.Apps[0].MaxPresenceMembers)
	}
	if _, err := Load(nil, envOf(map[string]string{"PARLEY_APP_ID": "a", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "s",
		"PARLEY_MAX_PRESENCE_MEMBERS": "-1"}), nil); err == nil || !strings.Contains(err.Error(), "max_presence_members") {
		t.Fatalf("negative presence members: %v", err)
	}
}

func TestSocketSendBufferKernelDefault(t *testing.T) {
	env := map[string]string{"PARLEY_APP_ID": "a", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "s", "PARLEY_SOCKET_SEND_BUFFER": "-1"}
	cfg, err := Load(nil, envOf(env), nil)
	if err != nil || cfg.SocketSendBuffer != -1 {
		t.Fatalf("a negative send buffer (kernel autotuning) must be accepted: %v", err)
	}
	env["PARLEY_SOCKET_SEND_BUFFER"] = "100"
	if _, err := Load(nil, envOf(env), nil); err == nil {
		t.Fatal("a 100-byte send buffer was accepted")
	}
}

func TestTLSSettings(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "c.pem")
	if err := os.WriteFile(cert, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", cert}, "--tls-cert is set without PARLEY_TLS_KEY"},
		{[]string{"--tls-key", cert}, "--tls-key is set without PARLEY_TLS_CERT"},
		{[]string{"--tls-cert", cert, "--tls-key", cert}, "PARLEY_TLS_CERT/PARLEY_TLS_KEY:"},
	} {
		_, err := Load(tc.args, func(string) (string, bool) { return "", false }, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
}

func TestWebhookSettings(t *testing.T) {
	// The single app: env.
	cfg, err := Load(nil, envOf(map[string]string{
		"PARLEY_APP_ID": "a", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "s",
		"PARLEY_WEBHOOK_URL": "http://127.0.0.1:9/hooks", "PARLEY_WEBHOOK_EVENTS": "client_event, cache_miss",
		"PARLEY_WEBHOOK_VACATE_DELAY": "250ms",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Apps[0].Webhooks
	if len(w) != 1 || w[0].URL != "http://127.0.0.1:9/hooks" || strings.Join(w[0].EventTypes, ",") != "client_event,cache_miss" || cfg.WebhookVacateDelay.String() != "250ms" {
		t.Fatalf("webhooks %+v, delay %v", w, cfg.WebhookVacateDelay)
	}
	// Defaults: the existence and presence events, 3 s.
	cfg, err = Load(nil, envOf(map[string]string{
		"PARLEY_APP_ID": "a", "PARLEY_APP_KEY": "k", "PARLEY_APP_SECRET": "s", "PARLEY_WEBHOOK_URL": "https://example.com/h",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Apps[0].Webhooks[0].EventTypes, ","); got != "channel_occupied,channel_vacated,member_added,member_removed" || cfg.WebhookVacateDelay.String() != "3s" {
		t.Fatalf("defaults: %s, %v", got, cfg.WebhookVacateDelay)
	}
	// A generated app gets the env's webhook.
	dir := t.TempDir()
	cfg, err = Load(nil, envOf(map[string]string{"PARLEY_DATA_DIR": dir, "PARLEY_WEBHOOK_URL": "https://example.com/h"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.EnsureApp(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps[0].Webhooks) != 1 || len(cfg.Apps[0].Webhooks[0].EventTypes) != 4 {
		t.Fatalf("generated app webhooks %+v", cfg.Apps[0].Webhooks)
	}
	// The apps file, with a filter.
	path := filepath.Join(t.TempDir(), "apps.json")
	os.WriteFile(path, []byte(`[{"id":"a","key":"k","secret":"s","webhooks":[{"url":"http://h/x","event_types":["member_added"],"filter":{"channel_name_starts_with":"presence-"}}]}]`), 0o600)
	cfg, err = Load(nil, envOf(map[string]string{"PARLEY_APPS_FILE": path}), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Apps[0].Webhooks[0]
	if !h.Wants("member_added", "presence-room") || h.Wants("member_added", "private-room") || h.Wants("member_removed", "presence-room") {
		t.Fatalf("filter %+v", h)
	}
	// Every problem at once.
	os.WriteFile(path, []byte(`[{"id":"a","key":"k","secret":"s","webhooks":[{"url":"ftp://h/x","event_types":["member_added","channel_exploded"]}]}]`), 0o600)
	_, err = Load(nil, envOf(map[string]string{"PARLEY_APPS_FILE": path, "PARLEY_WEBHOOK_VACATE_DELAY": "soon"}), nil)
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	for _, want := range []string{"PARLEY_WEBHOOK_VACATE_DELAY", `url "ftp://h/x"`, `unknown event type "channel_exploded"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from %v", want, err)
		}
	}
	_, err = Load(nil, envOf(map[string]string{"PARLEY_APPS_FILE": path, "PARLEY_WEBHOOK_URL": "http://h/"}), nil)
	if err == nil || !strings.Contains(err.Error(), "PARLEY_WEBHOOK_URL is for the single app") {
		t.Fatalf("want the single-app error, got %v", err)
	}
}
