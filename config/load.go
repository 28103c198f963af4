package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Getenv looks up an environment variable; os.LookupEnv in production.
type Getenv func(string) (string, bool)

// Load builds the configuration from command-line args (after the subcommand)
// and the environment: flags override environment variables, which override
// the defaults of the settings table. It returns every problem at once. With
// --help it prints the settings to stderr and returns flag.ErrHelp.
func Load(args []string, getenv Getenv, stderr io.Writer) (*Config, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	p := &pending{Config: &Config{}}
	l := &loader{settings: table(p)}
	l.from = make([]origin, len(l.settings))
	l.defaults()
	l.environment(getenv)
	if err := l.flags(args); errors.Is(err, flag.ErrHelp) {
		if stderr != nil {
			printUsage(stderr)
		}
		return nil, err
	}
	l.check()
	resolveObservability(p, l.bad)
	validateCluster(p.Config, l.bad)
	validateTLS(p.Config, l.bad)
	validatePush(p.Config, l.bad)
	resolveApps(p, l.bad)
	if len(l.problems) > 0 {
		return nil, &Error{Problems: l.problems}
	}
	return p.Config, nil
}

// loader reads the settings of one Load.
type loader struct {
	settings []Setting
	from     []origin // per setting: where its value came from
	problems []string
}

// origin is where a setting's value came from: env is the environment
// variable, empty for a flag or the default; raw is the value as typed.
type origin struct {
	env, raw string
}

func (l *loader) bad(format string, a ...any) {
	l.problems = append(l.problems, fmt.Sprintf(format, a...))
}

func (l *loader) defaults() {
	for i, s := range l.settings {
		if s.value == nil || s.Default == "" {
			continue
		}
		if err := s.value.set(s.Default); err != nil {
			panic(fmt.Sprintf("config: the default of %s, %q, %v", s.Env[0], s.Default, err))
		}
		l.from[i] = origin{raw: s.Default}
	}
}

// environment reads each setting's first variable that is set (and not
// empty, unless an empty value means something).
func (l *loader) environment(getenv Getenv) {
	for i, s := range l.settings {
		if s.value == nil {
			continue
		}
		for _, name := range s.Env {
			if v, ok := getenv(name); ok && (v != "" || s.KeepEmpty) {
				l.set(i, name, v)
				break
			}
		}
	}
}

// set parses raw into setting i; name is the environment variable, or
// empty for the flag.
func (l *loader) set(i int, name, raw string) {
	s := &l.settings[i]
	if err := s.value.set(raw); err != nil {
		shown := fmt.Sprintf("%q", raw)
		if s.Secret {
			shown = "(not repeated)"
		}
		if name == "" {
			l.bad("--%s %s %v", s.Flag, shown, err)
		} else {
			l.bad("%s=%s %v", name, shown, err)
		}
		return
	}
	l.from[i] = origin{env: name, raw: raw}
}

// flags parses args. A bad value is one of the problems, not the flag
// package's message and usage; so is an unknown flag (the arguments after
// it are not read).
func (l *loader) flags(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for i, s := range l.settings {
		if s.Flag != "" {
			fs.Var(&flagValue{l: l, i: i}, s.Flag, s.Help)
		}
	}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return err
	case err != nil:
		l.bad("%v", err)
	case fs.NArg() > 0:
		l.bad("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// check validates every setting's final value, naming it as the user set
// it: the environment variable they used and the flag.
func (l *loader) check() {
	for i, s := range l.settings {
		if s.value == nil {
			continue
		}
		o := l.from[i]
		label := s.Env[0]
		if o.env != "" {
			label = o.env
		}
		if s.Flag != "" {
			label += "/--" + s.Flag
		}
		raw := o.raw
		if s.Secret {
			raw = ""
		}
		l.problems = append(l.problems, s.value.problems(label, raw)...)
	}
}

// flagValue is a setting as a flag: a bad value joins the problems.
type flagValue struct {
	l *loader
	i int
}

func (f *flagValue) String() string { return "" }

func (f *flagValue) Set(s string) error {
	f.l.set(f.i, "", s)
	return nil
}

func (f *flagValue) IsBoolFlag() bool {
	return f != nil && f.l != nil && f.l.settings[f.i].value.isBool()
}

// resolveObservability sets the log level, which --debug lowers unless
// PARLEY_LOG_LEVEL says otherwise.
func resolveObservability(p *pending, bad func(string, ...any)) {
	o := &p.Observability
	o.LogLevel = slog.LevelInfo
	if p.Debug {
		o.LogLevel = slog.LevelDebug
	}
	if p.logLevel != "" {
		_ = o.LogLevel.UnmarshalText([]byte(p.logLevel)) // checked when read
	}
	if o.MetricsAddr != "" && !o.Metrics {
		bad("PARLEY_METRICS_ADDR/--metrics-addr is set but PARLEY_METRICS=false turns metrics off")
	}
}

// resolveApps makes the apps: from the apps file, or the single app the
// PARLEY_APP_* settings describe; with neither, EnsureApp generates one.
func resolveApps(p *pending, bad func(string, ...any)) {
	cfg, single := p.Config, p.single
	if p.webhookURL != "" {
		single.Webhooks = []Webhook{{URL: p.webhookURL, EventTypes: splitList(p.webhookEvents)}}
	} else if p.webhookEvents != "" {
		bad("PARLEY_WEBHOOK_EVENTS is set but PARLEY_WEBHOOK_URL is not")
	}
	anySingle := single.ID != "" || single.Key != "" || single.Secret != ""
	switch {
	case cfg.AppsFile != "":
		if anySingle {
			bad("set either PARLEY_APPS_FILE or PARLEY_APP_ID/KEY/SECRET, not both")
		}
		if p.webhookURL != "" {
			bad("PARLEY_WEBHOOK_URL is for the single app: with PARLEY_APPS_FILE give each app its \"webhooks\"")
		}
		apps, err := readAppsFile(cfg.AppsFile)
		if err != nil {
			bad("%v", err)
		}
		cfg.Apps = apps
	case anySingle:
		for _, m := range []struct{ value, names string }{
			{single.ID, "PARLEY_APP_ID (or REVERB_APP_ID, --app-id)"},
			{single.Key, "PARLEY_APP_KEY (or REVERB_APP_KEY, --app-key)"},
			{single.Secret, "PARLEY_APP_SECRET (or REVERB_APP_SECRET, --app-secret)"},
		} {
			if m.value == "" {
				bad("%s is missing", m.names)
			}
		}
		single.ClientEvents = true
		single.UserAuthentication = true
		cfg.Apps = []App{single}
	}
	if len(cfg.Apps) == 0 {
		cfg.generatedWebhooks = single.Webhooks
		for _, p := range validateWebhooks("PARLEY_WEBHOOK_URL", single.Webhooks) {
			bad("%s", p)
		}
	}
	for i := range cfg.Apps {
		applyAppDefaults(&cfg.Apps[i])
	}
	for _, p := range validateApps(cfg.Apps) {
		bad("%s", p)
	}
}
