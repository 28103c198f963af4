package config

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
)

// Observability is how Parley logs and exposes metrics.
type Observability struct {
	// LogFormat is "text" (logfmt-like key=value, the default) or "json"
	// (PARLEY_LOG_FORMAT, --log-format).
	LogFormat string
	// LogLevel is the least level logged; default info, debug with --debug
	// (PARLEY_LOG_LEVEL: debug, info, warn, error).
	LogLevel slog.Level
	// Metrics turns /metrics on; default true (PARLEY_METRICS).
	Metrics bool
	// MetricsAddr, when set, serves /metrics on its own listener
	// (host:port) instead of the main port (PARLEY_METRICS_ADDR, --metrics-addr).
	MetricsAddr string
	// MetricsToken, when set, is required as "Authorization: Bearer <token>"
	// on /metrics (PARLEY_METRICS_TOKEN; environment only, never a flag, so
	// that it does not show in ps).
	MetricsToken string
}

// observabilityFlags reads the environment into cfg.Observability and
// registers its flags; the returned func validates after parsing.
func observabilityFlags(fs *flag.FlagSet, cfg *Config, getenv Getenv, bad func(string, ...any)) func() {
	o := &cfg.Observability
	o.LogFormat, o.Metrics = "text", true
	level := ""
	if v, ok := getenv("PARLEY_LOG_FORMAT"); ok && v != "" {
		o.LogFormat = v
	}
	if v, ok := getenv("PARLEY_LOG_LEVEL"); ok && v != "" {
		level = v
	}
	if v, ok := getenv("PARLEY_METRICS"); ok && v != "" {
		switch strings.ToLower(v) {
		case "1", "true", "on", "yes":
			o.Metrics = true
		case "0", "false", "off", "no":
			o.Metrics = false
		default:
			bad("PARLEY_METRICS=%q is not true or false", v)
		}
	}
	o.MetricsAddr, _ = getenv("PARLEY_METRICS_ADDR")
	o.MetricsToken, _ = getenv("PARLEY_METRICS_TOKEN")
	fs.StringVar(&o.LogFormat, "log-format", o.LogFormat, "log format: text or json (PARLEY_LOG_FORMAT)")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", o.MetricsAddr, "serve /metrics on this host:port instead of the main port (PARLEY_METRICS_ADDR)")
	return func() {
		switch o.LogFormat {
		case "text", "json":
		default:
			bad("PARLEY_LOG_FORMAT/--log-format %q must be text or json", o.LogFormat)
		}
		o.LogLevel = slog.LevelInfo
		if cfg.Debug {
			o.LogLevel = slog.LevelDebug
		}
		if level != "" {
			if err := o.LogLevel.UnmarshalText([]byte(level)); err != nil {
				bad("PARLEY_LOG_LEVEL=%q must be debug, info, warn or error", level)
			}
		}
		if o.MetricsAddr != "" {
			if _, port, err := net.SplitHostPort(o.MetricsAddr); err != nil || port == "" {
				bad("PARLEY_METRICS_ADDR/--metrics-addr %q is not host:port (e.g. 127.0.0.1:9100)", o.MetricsAddr)
			}
			if !o.Metrics {
				bad("PARLEY_METRICS_ADDR/--metrics-addr is set but PARLEY_METRICS=false turns metrics off")
			}
		}
	}
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

// lenientValue records a bad flag value as a configuration problem instead
// of stopping the parse, so every bad setting is reported at once.
type lenientValue struct {
	flag.Value
	name string
	bad  func(string, ...any)
}

func (l *lenientValue) Set(s string) error {
	if err := l.Value.Set(s); err != nil {
		what := "is not valid"
		switch fmt.Sprintf("%T", l.Value) {
		case "*flag.intValue", "*flag.int64Value", "*flag.uintValue":
			what = "is not a whole number"
		case "*flag.boolValue":
			what = "is not true or false"
		case "*flag.durationValue":
			what = "is not a duration such as 10s"
		}
		l.bad("--%s %q %s", l.name, s, what)
	}
	return nil
}

func (l *lenientValue) IsBoolFlag() bool {
	b, ok := l.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// lenient makes every flag of fs report a bad value through bad.
func lenient(fs *flag.FlagSet, bad func(string, ...any)) {
	fs.VisitAll(func(f *flag.Flag) {
		f.Value = &lenientValue{Value: f.Value, name: f.Name, bad: bad}
	})
}
