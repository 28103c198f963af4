package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPushSettings: defaults, a provider's settings that go together, and
// files that must exist.
func TestPushSettings(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(nil, envOf(map[string]string{"PARLEY_DATA_DIR": dir}), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Push
	if !p.WebPush || p.Window.String() != "3s" || p.TextLength != 120 || p.FCMEndpoint != "https://fcm.googleapis.com" || p.APNsProduction {
		t.Fatalf("defaults %+v", p)
	}
	if cfg.VAPIDFile() != filepath.Join(dir, "vapid.json") {
		t.Fatalf("VAPID file %s", cfg.VAPIDFile())
	}
	key := filepath.Join(dir, "AuthKey.p8")
	if err := os.WriteFile(key, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(nil, envOf(map[string]string{"PARLEY_DATA_DIR": dir, "PARLEY_APNS_KEY_FILE": key, "PARLEY_VAPID_PUBLIC_KEY": "k",
		"PARLEY_FCM_CREDENTIALS": filepath.Join(dir, "missing.json"), "PARLEY_PUSH_TEXT_LENGTH": "-1", "PARLEY_FCM_ENDPOINT": "ftp://x"}), nil)
	for _, want := range []string{"PARLEY_APNS_KEY_FILE needs PARLEY_APNS_KEY_ID", "PARLEY_VAPID_PUBLIC_KEY and PARLEY_VAPID_PRIVATE_KEY go together",
		"PARLEY_FCM_CREDENTIALS", "PARLEY_PUSH_TEXT_LENGTH", "PARLEY_FCM_ENDPOINT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want a problem about %s in %v", want, err)
		}
	}
	cfg, err = Load(nil, envOf(map[string]string{"PARLEY_DATA_DIR": dir, "PARLEY_APNS_KEY_FILE": key, "PARLEY_APNS_KEY_ID": "K",
		"PARLEY_APNS_TEAM_ID": "T", "PARLEY_APNS_TOPIC": "com.example", "PARLEY_PUSH_TEXT_LENGTH": "0", "PARLEY_WEBPUSH": "false"}), nil)
	if err != nil || cfg.Push.TextLength != 0 || cfg.Push.WebPush || cfg.Push.APNsTopic != "com.example" {
		t.Fatalf("APNs configured: %+v %v", cfg.Push, err)
	}
}
