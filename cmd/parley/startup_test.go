package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lib/pq"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/persistence/storetest"
)

// A port another process holds stops start-up with one line that says
// which setting picks another port.
func TestPortInUseSuggestsAnotherPort(t *testing.T) {
	setServeEnv(t, nil)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)
	var stdout, stderr syncBuffer
	code := serve(context.Background(), []string{"--host", "127.0.0.1", "--port", port, "--chat=false", "--data-dir", t.TempDir()}, &stdout, &stderr)
	// The log's lines come first; the error is one line of its own.
	_, msg, _ := strings.Cut(stderr.String(), "parley: ")
	if code != 1 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "already in use") ||
		!strings.Contains(msg, "--port") || !strings.Contains(msg, "PARLEY_PORT") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
}

// A DATABASE_URL naming a database that does not exist says, in one line,
// how to create it.
func TestMissingDatabaseSaysHowToCreateIt(t *testing.T) {
	u, err := url.Parse(storetest.PostgresURL(t)) // skips without PostgreSQL
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("parley_missing_%d", os.Getpid())
	u.Path = "/" + name
	_, err = openStore(context.Background(), &config.Config{DatabaseURL: u.String()})
	if err == nil {
		t.Fatalf("database %s exists", name)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "createdb "+name) || !strings.Contains(msg, "CREATE DATABASE "+name) {
		t.Fatalf("%s", msg)
	}
}

// Names that need quotes get them, for the shell and for SQL.
func TestCreateDatabaseHintQuotes(t *testing.T) {
	missing := fmt.Errorf("open: %w", &pq.Error{Code: "3D000", Message: `database "x" does not exist`})
	for dbURL, want := range map[string]string{
		"postgres://h/parley":      "createdb parley (or in psql: CREATE DATABASE parley;)",
		"postgres://h/parley-chat": `createdb 'parley-chat' (or in psql: CREATE DATABASE "parley-chat";)`,
		"postgres://h/":            "createdb x ",
	} {
		if got := createDatabaseHint(missing, dbURL); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", dbURL, got, want)
		}
	}
	if got := createDatabaseHint(fmt.Errorf("open: %w", &pq.Error{Code: "28P01"}), "postgres://h/db"); got != "" {
		t.Errorf("a wrong password got the hint %q", got)
	}
}

// With --log-format json the credentials banner is a JSON log line: the
// secret when it was generated, only the id and key on a restart; nothing
// but JSON is written.
func TestCredentialsBannerInJSONLog(t *testing.T) {
	dataDir := t.TempDir()
	env := map[string]string{"PARLEY_LOG_FORMAT": "json"}
	first := serveInProcess(t, env, "--chat=false", "--data-dir", dataDir)
	var saved struct{ ID, Key, Secret string }
	b, err := os.ReadFile(filepath.Join(dataDir, "credentials.json"))
	if err != nil || json.Unmarshal(b, &saved) != nil {
		t.Fatalf("credentials.json: %v %s", err, b)
	}
	want := map[string]string{"msg": "no app configured: generated credentials", "app_id": saved.ID, "key": saved.Key, "secret": saved.Secret,
		"file": filepath.Join(dataDir, "credentials.json")}
	if findLine(logLines(first.out.String()), want) == nil {
		t.Fatalf("no %v line in:\n%s", want, first.out.String())
	}
	first.cancel()
	<-first.exited
	first.exited <- 0 // for its cleanup

	second := serveInProcess(t, nil, "--log-format", "json", "--chat=false", "--data-dir", dataDir)
	out := second.out.String()
	line := findLine(logLines(out), map[string]string{"msg": "no app configured: using saved credentials", "app_id": saved.ID, "key": saved.Key})
	if line == nil || strings.Contains(out, saved.Secret) {
		t.Fatalf("restart line %v, output:\n%s", line, out)
	}
	for _, out := range []string{first.out.String(), out} {
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, "{") {
				t.Errorf("not a JSON line: %q", l)
			}
		}
	}
}

// The settings table's defaults for what the chat also defaults itself
// are the chat's own, so that neither documents the other wrongly.
func TestLoginDefaultsMatchTheChat(t *testing.T) {
	want := map[string]int{
		"PARLEY_LOGIN_ATTEMPTS_PER_MINUTE":    chat.DefaultLoginAttemptsPerMinute,
		"PARLEY_LOGIN_IP_ATTEMPTS_PER_MINUTE": chat.DefaultLoginIPAttemptsPerMinute,
	}
	for _, s := range config.Settings() {
		if n, ok := want[s.Env[0]]; ok {
			if s.Default != strconv.Itoa(n) {
				t.Errorf("%s: the table says %s, the chat %d", s.Env[0], s.Default, n)
			}
			delete(want, s.Env[0])
		}
	}
	if len(want) > 0 {
		t.Errorf("not in the settings table: %v", want)
	}
}
