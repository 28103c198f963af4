package testkit

import (
	"testing"

	"github.com/parley-chat/parley/config"
)

// The one app of a test server's configuration.
const (
	AppID  = "app-1"
	Key    = "key-1"
	Secret = "secret-1"
)

// Config loads the configuration of a test server with one app (AppID, Key,
// Secret) and its data in dataDir, a new temporary directory when "". Then
// mutate (nil: none) changes it.
func Config(t testing.TB, dataDir string, mutate func(*config.Config)) *config.Config {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	env := map[string]string{"PARLEY_APP_ID": AppID, "PARLEY_APP_KEY": Key, "PARLEY_APP_SECRET": Secret, "PARLEY_DATA_DIR": dataDir}
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	return cfg
}
