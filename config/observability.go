package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
)

// Observability is how Parley logs and exposes metrics.
type Observability struct {
	// LogFormat is "text" (logfmt-like key=value) or "json"
	// (PARLEY_LOG_FORMAT).
	LogFormat string
	// LogLevel is the least level logged; --debug lowers it to debug unless
	// PARLEY_LOG_LEVEL (debug, info, warn, error) says otherwise.
	LogLevel slog.Level
	// Metrics turns /metrics on (PARLEY_METRICS).
	Metrics bool
	// MetricsAddr, when set, serves /metrics on its own listener
	// (host:port) instead of the main port (PARLEY_METRICS_ADDR, --metrics-addr).
	MetricsAddr string
	// MetricsToken, when set, is required as "Authorization: Bearer <token>"
	// on /metrics (PARLEY_METRICS_TOKEN; environment only, never a flag, so
	// that it does not show in ps).
	MetricsToken string
}

// CheckDatabaseURL says what is wrong with a DATABASE_URL, or nil. Only
// PostgreSQL URLs are accepted; the message never repeats the URL (it may
// hold a password).
func CheckDatabaseURL(raw string) error {
	if raw == "" {
		return nil
	}
	scheme, _, found := strings.Cut(raw, "://")
	if !found {
		return fmt.Errorf("DATABASE_URL is not a URL: only postgres:// URLs are accepted (leave it unset for the embedded database)")
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
	default:
		return fmt.Errorf("DATABASE_URL has the scheme %q: only postgres:// URLs are accepted (leave it unset for the embedded database)", scheme)
	}
	if _, err := url.Parse(raw); err != nil {
		return fmt.Errorf("DATABASE_URL is not a valid URL (check that special characters in the password are percent-encoded)")
	}
	return nil
}
