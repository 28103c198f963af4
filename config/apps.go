package config

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
)

// appFile is one app as written in PARLEY_APPS_FILE. Booleans are pointers so
// that an absent option takes its default (on) rather than false.
type appFile struct {
	ID                 string    `json:"id"`
	Key                string    `json:"key"`
	Secret             string    `json:"secret"`
	ClientEvents       *bool     `json:"enable_client_events"`
	UserAuthentication *bool     `json:"enable_user_authentication"`
	MaxConnections     int       `json:"max_connections"`
	AllowedOrigins     []string  `json:"allowed_origins"`
	ActivityTimeout    int       `json:"activity_timeout"`
	MaxEventSize       int       `json:"max_event_size"`
	MaxChannels        int       `json:"max_channels_per_connection"`
	MaxPresenceMembers int       `json:"max_presence_members"`
	Webhooks           []Webhook `json:"webhooks"`
}

// readAppsFile accepts either a JSON array of apps or {"apps": [...]}.
func readAppsFile(path string) ([]App, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("PARLEY_APPS_FILE: %w", err)
	}
	b = bytes.TrimSpace(b)
	var list []appFile
	dec := func(v any) error {
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		return d.Decode(v)
	}
	if len(b) > 0 && b[0] == '{' {
		var wrapped struct {
			Apps []appFile `json:"apps"`
		}
		err = dec(&wrapped)
		list = wrapped.Apps
	} else {
		err = dec(&list)
	}
	if err != nil {
		return nil, fmt.Errorf("PARLEY_APPS_FILE %s: %v", path, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("PARLEY_APPS_FILE %s lists no apps", path)
	}
	apps := make([]App, len(list))
	for i, f := range list {
		apps[i] = App{
			ID: f.ID, Key: f.Key, Secret: f.Secret,
			ClientEvents: true, UserAuthentication: true,
			MaxConnections: f.MaxConnections, AllowedOrigins: f.AllowedOrigins,
			ActivityTimeout: f.ActivityTimeout, MaxEventSize: f.MaxEventSize,
			MaxChannelsPerConnection: f.MaxChannels, MaxPresenceMembers: f.MaxPresenceMembers,
			Webhooks: f.Webhooks,
		}
		if f.ClientEvents != nil {
			apps[i].ClientEvents = *f.ClientEvents
		}
		if f.UserAuthentication != nil {
			apps[i].UserAuthentication = *f.UserAuthentication
		}
	}
	return apps, nil
}

// savedCredentials is the credentials file: the credentials only. The
// generated app's options are the defaults (client events and user
// authentication on), as the start-up log says; an apps file or
// PARLEY_APP_* with the PARLEY_* options configure anything else.
type savedCredentials struct {
	ID     string `json:"id"`
	Key    string `json:"key"`
	Secret string `json:"secret"`
}

// EnsureApp gives a configuration with no app one: credentials generated once
// and kept in the data dir, so restarts and clients keep working.
func (c *Config) EnsureApp() error {
	if len(c.Apps) > 0 {
		return nil
	}
	path := c.CredentialsFile()
	saved, fields, err := readCredentials(path)
	fresh := false
	switch {
	case err == nil:
		if fields != 3 {
			// Written by an older Parley with every app option, at values
			// (enable_client_events: false, ...) the server never used:
			// keep only the credentials, so that the file says nothing
			// the server does not do.
			if err := writeCredentials(path, saved); err != nil {
				return err
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		saved = savedCredentials{ID: randomDigits(6), Key: randomHex(10), Secret: randomHex(20)}
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		if err := writeCredentials(path, saved); err != nil {
			return err
		}
		fresh = true
	default:
		return err
	}
	a := App{ID: saved.ID, Key: saved.Key, Secret: saved.Secret}
	a.ClientEvents, a.UserAuthentication, a.Generated, a.GeneratedNow = true, true, true, fresh
	a.Webhooks = c.generatedWebhooks
	applyAppDefaults(&a)
	c.Apps = []App{a}
	return nil
}

// SavedCredentials reads the credentials `parley serve` generated and kept
// in dataDir, for a client of that server (parley bench). Without them the
// error is fs.ErrNotExist.
func SavedCredentials(dataDir string) (id, key, secret string, err error) {
	c := Config{DataDir: dataDir}
	saved, _, err := readCredentials(c.CredentialsFile())
	return saved.ID, saved.Key, saved.Secret, err
}

// readCredentials reads the credentials file and counts its fields.
func readCredentials(path string) (saved savedCredentials, fields int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return saved, 0, err
		}
		return saved, 0, fmt.Errorf("read %s: %w", path, err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &saved); err != nil || saved.ID == "" || saved.Key == "" || saved.Secret == "" || json.Unmarshal(b, &all) != nil {
		return saved, 0, fmt.Errorf("%s is damaged; delete it to generate new credentials", path)
	}
	return saved, len(all), nil
}

func writeCredentials(path string, saved savedCredentials) error {
	out, _ := json.MarshalIndent(saved, "", "  ")
	if err := os.WriteFile(path, append(out, '\n'), 0o600); err != nil {
		return fmt.Errorf("save generated credentials: %w", err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomDigits(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	var sb strings.Builder
	for i, x := range b {
		d := x % 10
		if i == 0 && d == 0 {
			d = 1
		}
		sb.WriteByte('0' + d)
	}
	return sb.String()
}

// OriginAllowed reports whether a browser Origin header may connect.
// Requests without an Origin (servers, mobile SDKs) are always allowed.
func (a *App) OriginAllowed(origin string) bool {
	if len(a.AllowedOrigins) == 0 || origin == "" {
		return true
	}
	host := origin
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	host = strings.TrimSuffix(host, "/")
	hostOnly := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostOnly = h
	}
	for _, p := range a.AllowedOrigins {
		switch {
		case p == "*":
			return true
		case strings.EqualFold(p, origin), strings.EqualFold(p, host), strings.EqualFold(p, hostOnly):
			return true
		case strings.HasPrefix(p, "*.") && len(hostOnly) > len(p)-1 && strings.EqualFold(hostOnly[len(hostOnly)-(len(p)-1):], p[1:]):
			return true
		}
	}
	return false
}
