package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/persistence"
	"golang.org/x/crypto/bcrypt"
)

func init() { chat.BcryptCost = bcrypt.MinCost }

// clearDBEnv keeps the developer's own database settings out of the tests.
func clearDBEnv(t *testing.T) {
	for _, k := range []string{"DATABASE_URL", "PARLEY_DATABASE_URL", "PARLEY_DATA_DIR",
		"PARLEY_APP_ID", "PARLEY_APP_KEY", "PARLEY_APP_SECRET", "PARLEY_APPS_FILE",
		"REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET"} {
		t.Setenv(k, "")
	}
}

type adminRun struct {
	code           int
	stdout, stderr string
}

func runAdmin(t *testing.T, args ...string) adminRun {
	t.Helper()
	return runAdminStdin(t, "", args...)
}

// runAdminStdin runs an admin command with stdin.
func runAdminStdin(t *testing.T, stdin string, args ...string) adminRun {
	t.Helper()
	var out, errb bytes.Buffer
	var code int
	if args[0] == "migrate" {
		code = migrate(context.Background(), args[1:], &out, &errb)
	} else {
		code = admin(context.Background(), args[0], args[1:], strings.NewReader(stdin), &out, &errb)
	}
	return adminRun{code, out.String(), errb.String()}
}

const passwordWarning = "parley: warning: --password is visible in ps and in shell history; use --password-stdin or PARLEY_ADMIN_PASSWORD"

// ok runs a command that must succeed and decodes its one JSON object. Its
// stderr must be the line naming the database (and --password's warning).
func (r adminRun) ok(t *testing.T) map[string]any {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	using := 0
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		switch {
		case strings.HasPrefix(line, "parley: using "):
			using++
		case line == passwordWarning:
		default:
			t.Errorf("stderr on success: %q", line)
		}
	}
	if using != 1 {
		t.Errorf("stderr names the database %d times: %q", using, r.stderr)
	}
	if strings.Count(strings.TrimSpace(r.stdout), "\n") != 0 {
		t.Errorf("want one JSON line, got %q", r.stdout)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("stdout %q is not a JSON object: %v", r.stdout, err)
	}
	return m
}

func (r adminRun) fails(t *testing.T, code int, stderrHas string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d (stdout %q, stderr %q)", r.code, code, r.stdout, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout on failure: %q", r.stdout)
	}
	if !strings.Contains(r.stderr, stderrHas) {
		t.Errorf("stderr %q does not mention %q", r.stderr, stderrHas)
	}
}

func id(t *testing.T, m map[string]any) string {
	t.Helper()
	f, ok := m["id"].(float64)
	if !ok || f <= 0 {
		t.Fatalf("no id in %v", m)
	}
	return strconv.FormatInt(int64(f), 10)
}

func TestAdminCommands(t *testing.T) {
	clearDBEnv(t)
	dir := t.TempDir()
	dd := "--data-dir=" + dir

	m := runAdmin(t, "migrate", dd).ok(t)
	if m["migrated"] != true || m["dialect"] != "sqlite" {
		t.Fatalf("migrate: %v", m)
	}

	ann := runAdmin(t, "users", "create", "--name", "Ann", "--email", "Ann@Example.com", "--password", "s3cret-long", dd).ok(t)
	if ann["name"] != "Ann" || ann["email"] != "ann@example.com" || ann["password_hash"] != nil {
		t.Fatalf("user: %v", ann)
	}
	annID := id(t, ann)
	runAdmin(t, "users", "create", "--name", "Ann 2", "--email", "ann@example.com", "--password", "xxxxxxxx", dd).
		fails(t, 1, "already exists")

	tok := runAdmin(t, "tokens", "create", "--user", annID, dd).ok(t)
	plain, _ := tok["token"].(string)
	tid, secret, found := strings.Cut(plain, "|")
	if !found || len(secret) != 40 || tid != id(t, tok) {
		t.Fatalf("token %v", tok)
	}
	if tok["expires_at"] == nil {
		t.Errorf("default ttl should expire: %v", tok)
	}
	forever := runAdmin(t, "tokens", "create", "--user", annID, "--ttl", "0", dd).ok(t)
	if forever["expires_at"] != nil {
		t.Errorf("--ttl 0 should never expire: %v", forever)
	}
	runAdmin(t, "tokens", "create", "--user", "999", dd).fails(t, 1, "no user with id 999")

	matter := runAdmin(t, "matters", "create", "--title", "Smith v Jones", dd).ok(t)
	if matter["title"] != "Smith v Jones" {
		t.Fatalf("matter %v", matter)
	}
	mid := id(t, matter)
	added := runAdmin(t, "matters", "add-member", "--matter", mid, "--user", annID, dd).ok(t)
	if added["member"] != true {
		t.Fatalf("add-member %v", added)
	}
	runAdmin(t, "matters", "add-member", "--matter", mid, "--user", annID, dd).ok(t) // idempotent
	runAdmin(t, "matters", "add-member", "--matter", "999", "--user", annID, dd).fails(t, 1, "does not exist")

	// What the commands wrote is what the server will read.
	st, err := persistence.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	n, _ := strconv.ParseInt(tid, 10, 64)
	stored, err := st.TokenByID(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(secret))
	if stored.SecretHash != hex.EncodeToString(sum[:]) {
		t.Error("stored token hash is not the SHA-256 of the secret")
	}
	if stored.ExpiresAt == nil || time.Until(*stored.ExpiresAt) < 23*time.Hour {
		t.Errorf("expires_at %v, want about 24h from now", stored.ExpiresAt)
	}
	u, err := st.UserByEmail(ctx, "ann@example.com")
	if err != nil || !chat.CheckPassword(u.PasswordHash, "s3cret-long") {
		t.Errorf("password does not check: %v", err)
	}
	mattersOf, err := st.MattersForUser(ctx, u.ID)
	if err != nil || len(mattersOf) != 1 || strconv.FormatInt(mattersOf[0].ID, 10) != mid {
		t.Errorf("matters of ann: %v %v", mattersOf, err)
	}
}

func TestAdminDataDirFromEnv(t *testing.T) {
	clearDBEnv(t)
	dir := t.TempDir()
	t.Setenv("PARLEY_DATA_DIR", dir)
	runAdmin(t, "matters", "create", "--title", "T").ok(t)
	st, err := persistence.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.MatterByID(context.Background(), 1); err != nil {
		t.Fatalf("matter not in PARLEY_DATA_DIR: %v", err)
	}
}

func TestAdminUsageErrors(t *testing.T) {
	clearDBEnv(t)
	dd := "--data-dir=" + t.TempDir()
	for _, tc := range []struct {
		args []string
		has  string
	}{
		{[]string{"users"}, "needs a subcommand"},
		{[]string{"users", "remove", dd}, "unknown command"},
		{[]string{"users", "create", "--name", "A", dd}, "missing --email, --password-stdin (or PARLEY_ADMIN_PASSWORD, --password, --no-password)"},
		{[]string{"users", "create", "--name", "A", "--email", "nope", "--password", "password", dd}, "not an email"},
		{[]string{"users", "create", "--name", "A", "--email", "a@b.c", "--password", "1234567", dd}, "shorter than 8 characters"},
		{[]string{"users", "create", "--name", "A", "--email", "a@b.c", "--password", "12345678", "--no-password", dd}, "give one of"},
		{[]string{"users", "update", "--user", "1", dd}, "nothing to change"},
		{[]string{"users", "update", "--user", "1", "--external-id", "x", "--clear-external-id", dd}, "not both"},
		{[]string{"users", "show", dd}, "--user must be"},
		{[]string{"tokens", "revoke", dd}, "--token ID or --user ID"},
		{[]string{"tokens", "revoke", "--token", "1", "--user", "1", dd}, "--token ID or --user ID"},
		{[]string{"users", "list", "--limit", "0", dd}, "--limit"},
		{[]string{"matters", "create", "--title", "T", "--members", "1,x", dd}, "not a user id"},
		{[]string{"matters", "remove-member", "--matter", "1", dd}, "--matter and --user"},
		{[]string{"matters", "delete", dd}, "--matter must be"},
		{[]string{"users", "create", "--name", "A", "--email", "a@b.c", "--password", strings.Repeat("x", 73), dd}, "72 bytes"},
		{[]string{"users", "create", "--bogus", dd}, "bogus"},
		{[]string{"tokens", "create", dd}, "--user"},
		{[]string{"tokens", "create", "--user", "1", "--ttl", "-1h", dd}, "--ttl"},
		{[]string{"tokens", "create", "--user", "x", dd}, "invalid value"},
		{[]string{"matters", "create", dd}, "--title"},
		{[]string{"matters", "add-member", "--matter", "1", dd}, "--matter and --user"},
		{[]string{"matters", "create", "--title", "T", "extra", dd}, "unexpected argument"},
		{[]string{"migrate", "extra"}, "unexpected argument"},
	} {
		t.Run(strings.Join(tc.args[:min(2, len(tc.args))], "_"), func(t *testing.T) {
			runAdmin(t, tc.args...).fails(t, 2, tc.has)
		})
	}
}

func TestAdminUnreachableDatabase(t *testing.T) {
	clearDBEnv(t)
	r := runAdmin(t, "matters", "create", "--title", "T",
		"--database-url", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	r.fails(t, 1, "cannot open the PostgreSQL database")
}
