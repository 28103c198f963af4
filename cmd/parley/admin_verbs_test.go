package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/storetest"
)

// adminDB is the database flag of a CLI test and how to open it directly.
type adminDB struct {
	name, flag, url, dir string
	using                string // what the commands must say on stderr
}

func adminDatabases(t *testing.T) []func() adminDB {
	return []func() adminDB{
		func() adminDB {
			dir := t.TempDir()
			return adminDB{name: "sqlite", flag: "--data-dir=" + dir, dir: dir,
				using: "parley: using the embedded database " + filepath.Join(dir, "parley.db") + "\n"}
		},
		func() adminDB {
			u := storetest.PostgresURL(t)
			pu, _ := url.Parse(u)
			return adminDB{name: "postgres", flag: "--database-url=" + u, url: u,
				using: "parley: using PostgreSQL " + pu.Host + strings.TrimRight(pu.Path, "/") + "\n"}
		},
	}
}

func (d adminDB) open(t *testing.T) persistence.Store {
	t.Helper()
	st, err := persistence.Open(context.Background(), d.url, d.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func ids(t *testing.T, list any) string {
	t.Helper()
	items, ok := list.([]any)
	if !ok {
		t.Fatalf("not a list: %v", list)
	}
	var out []string
	for _, it := range items {
		out = append(out, id(t, it.(map[string]any)))
	}
	return strings.Join(out, ",")
}

func TestAdminVerbs(t *testing.T) {
	clearDBEnv(t)
	t.Setenv("PARLEY_ADMIN_PASSWORD", "")
	for _, mk := range adminDatabases(t) {
		d := mk()
		t.Run(d.name, func(t *testing.T) {
			db := d.flag
			ctx := context.Background()

			// Passwords: from stdin, from the environment, on the command
			// line (with a warning), or none.
			r := runAdminStdin(t, "from stdin 1\n", "users", "create", "--name", "Ann", "--email", "ann@example.com",
				"--password-stdin", "--external-id", "41", db)
			if !strings.HasPrefix(r.stderr, d.using) || strings.Contains(r.stderr, "warning") {
				t.Fatalf("stderr %q, want it to start with %q", r.stderr, d.using)
			}
			ann := r.ok(t)
			if ann["external_id"] != "41" || ann["has_password"] != true {
				t.Fatalf("ann %v", ann)
			}
			t.Setenv("PARLEY_ADMIN_PASSWORD", "from the env")
			bob := runAdmin(t, "users", "create", "--name", "Bob", "--email", "bob@example.com", db).ok(t)
			t.Setenv("PARLEY_ADMIN_PASSWORD", "")
			r = runAdmin(t, "users", "create", "--name", "Cy", "--email", "cy@example.com", "--password", "on the line", db)
			if !strings.Contains(r.stderr, passwordWarning) {
				t.Errorf("no warning for --password: %q", r.stderr)
			}
			cy := r.ok(t)
			dan := runAdmin(t, "users", "create", "--name", "Dan", "--email", "dan@example.com", "--no-password", db).ok(t)
			if dan["has_password"] != false {
				t.Fatalf("dan %v", dan)
			}
			st := d.open(t)
			for email, pw := range map[string]string{"ann@example.com": "from stdin 1", "bob@example.com": "from the env", "cy@example.com": "on the line"} {
				u, err := st.UserByEmail(ctx, email)
				if err != nil || !chat.CheckPassword(u.PasswordHash, pw) {
					t.Errorf("%s: password %q does not check (%v)", email, pw, err)
				}
			}
			// Too short, wherever it comes from; nothing is written.
			runAdminStdin(t, "short\n", "users", "create", "--name", "E", "--email", "e@example.com", "--password-stdin", db).
				fails(t, 2, "shorter than 8 characters")
			t.Setenv("PARLEY_ADMIN_PASSWORD", "short")
			runAdmin(t, "users", "create", "--name", "E", "--email", "e@example.com", db).fails(t, 2, "shorter than 8 characters")
			t.Setenv("PARLEY_ADMIN_PASSWORD", "")
			t.Setenv("PARLEY_MIN_PASSWORD_LENGTH", "3")
			e := runAdminStdin(t, "abc", "users", "create", "--name", "E", "--email", "e@example.com", "--password-stdin", db).ok(t)
			t.Setenv("PARLEY_MIN_PASSWORD_LENGTH", "")
			runAdminStdin(t, "", "users", "create", "--name", "F", "--email", "f@example.com", "--password-stdin", db).
				fails(t, 2, "no password line")
			runAdmin(t, "users", "create", "--name", "A", "--email", "a2@example.com", "--no-password", "--external-id", "41", db).
				fails(t, 1, "external id 41 already exists")

			// List, filters, pages.
			all := runAdmin(t, "users", "list", db).ok(t)
			want := strings.Join([]string{id(t, ann), id(t, bob), id(t, cy), id(t, dan), id(t, e)}, ",")
			if ids(t, all["users"]) != want || all["next_after_id"] != nil {
				t.Fatalf("list %v", all)
			}
			page := runAdmin(t, "users", "list", "--limit", "2", "--after-id", id(t, ann), db).ok(t)
			if ids(t, page["users"]) != id(t, bob)+","+id(t, cy) || fmt.Sprint(page["next_after_id"]) != id(t, cy) {
				t.Fatalf("page %v", page)
			}
			if got := runAdmin(t, "users", "list", "--email", "BOB@example.com", db).ok(t); ids(t, got["users"]) != id(t, bob) {
				t.Fatalf("by email %v", got)
			}
			if got := runAdmin(t, "users", "list", "--external-id", "41", db).ok(t); ids(t, got["users"]) != id(t, ann) {
				t.Fatalf("by external id %v", got)
			}

			// Show and update.
			if got := runAdmin(t, "users", "show", "--user", id(t, cy), db).ok(t); got["email"] != "cy@example.com" {
				t.Fatalf("show %v", got)
			}
			runAdmin(t, "users", "show", "--user", "999", db).fails(t, 1, "no user with id 999")
			up := runAdminStdin(t, "a new password\n", "users", "update", "--user", id(t, ann), "--name", "Ann B", "--clear-external-id", "--password-stdin", db).ok(t)
			if up["name"] != "Ann B" || up["external_id"] != nil || up["email"] != "ann@example.com" {
				t.Fatalf("update %v", up)
			}
			if u, _ := st.UserByEmail(ctx, "ann@example.com"); !chat.CheckPassword(u.PasswordHash, "a new password") {
				t.Error("the new password does not check")
			}
			runAdmin(t, "users", "update", "--user", id(t, ann), "--email", "bob@example.com", db).fails(t, 1, "another user has that email")
			runAdmin(t, "users", "update", "--user", "999", "--name", "X", db).fails(t, 1, "no user with id 999")
			runAdminStdin(t, "1234\n", "users", "update", "--user", id(t, ann), "--password-stdin", db).fails(t, 2, "shorter than 8")

			// Tokens.
			t1 := runAdmin(t, "tokens", "create", "--user", id(t, bob), db).ok(t)
			runAdmin(t, "tokens", "create", "--user", id(t, bob), "--ttl", "0", db).ok(t)
			list := runAdmin(t, "tokens", "list", "--user", id(t, bob), db)
			if got := list.ok(t); len(got["tokens"].([]any)) != 2 || strings.Contains(list.stdout, "|") {
				t.Fatalf("tokens list %v", list.stdout)
			}
			if got := runAdmin(t, "tokens", "revoke", "--token", id(t, t1), db).ok(t); got["revoked"] != true {
				t.Fatalf("revoke %v", got)
			}
			runAdmin(t, "tokens", "revoke", "--token", id(t, t1), db).fails(t, 1, "no token with id")
			if got := runAdmin(t, "tokens", "revoke", "--user", id(t, bob), db).ok(t); got["revoked"] != float64(1) {
				t.Fatalf("revoke all %v", got)
			}
			if toks, _ := st.ListTokens(ctx, mustID(t, bob)); len(toks) != 0 {
				t.Fatalf("tokens left %v", toks)
			}

			// Matters.
			m1 := runAdmin(t, "matters", "create", "--title", "Smith v Jones", "--members", id(t, ann)+","+id(t, bob), db).ok(t)
			if ids(t, m1["members"]) != id(t, ann)+","+id(t, bob) {
				t.Fatalf("matter %v", m1)
			}
			m2 := runAdmin(t, "matters", "create", "--title", "Other", db).ok(t)
			if _, listed := m2["members"]; listed {
				t.Fatalf("matter without --members %v", m2)
			}
			runAdmin(t, "matters", "create", "--title", "T", "--members", "999", db).fails(t, 1, "no user with id 999")
			if got := runAdmin(t, "matters", "list", "--user", id(t, bob), db).ok(t); ids(t, got["matters"]) != id(t, m1) {
				t.Fatalf("bob's matters %v", got)
			}
			if got := runAdmin(t, "matters", "list", "--limit", "1", db).ok(t); ids(t, got["matters"]) != id(t, m1) || fmt.Sprint(got["next_after_id"]) != id(t, m1) {
				t.Fatalf("page %v", got)
			}
			if got := runAdmin(t, "matters", "update", "--matter", id(t, m2), "--title", "Renamed", db).ok(t); got["title"] != "Renamed" {
				t.Fatalf("rename %v", got)
			}
			if got := runAdmin(t, "matters", "add-member", "--matter", id(t, m2), "--user", id(t, cy), db).ok(t); got["added"] != true {
				t.Fatalf("add %v", got)
			}
			if got := runAdmin(t, "matters", "remove-member", "--matter", id(t, m1), "--user", id(t, bob), db).ok(t); got["removed"] != true {
				t.Fatalf("remove %v", got)
			}
			if got := runAdmin(t, "matters", "remove-member", "--matter", id(t, m1), "--user", id(t, bob), db).ok(t); got["removed"] != false {
				t.Fatalf("remove again %v", got)
			}
			runAdmin(t, "matters", "remove-member", "--matter", "999", "--user", id(t, bob), db).fails(t, 1, "matter 999 does not exist")
			if got := runAdmin(t, "matters", "show", "--matter", id(t, m1), db).ok(t); ids(t, got["members"]) != id(t, ann) {
				t.Fatalf("show %v", got)
			}
			if _, err := st.CreateMessage(ctx, mustID(t, m1), mustID(t, ann), "kept?", time.Now()); err != nil {
				t.Fatal(err)
			}

			// Delete a user: anonymised, out of its matters, id kept.
			if got := runAdmin(t, "users", "delete", "--user", id(t, ann), db).ok(t); got["deleted"] != true {
				t.Fatalf("delete %v", got)
			}
			runAdmin(t, "users", "delete", "--user", id(t, ann), db).fails(t, 1, "no user with id")
			runAdmin(t, "users", "show", "--user", id(t, ann), db).fails(t, 1, "no user with id")
			runAdmin(t, "tokens", "create", "--user", id(t, ann), db).fails(t, 1, "no user with id")
			runAdmin(t, "matters", "add-member", "--matter", id(t, m1), "--user", id(t, ann), db).fails(t, 1, "does not exist")
			if got := runAdmin(t, "matters", "show", "--matter", id(t, m1), db).ok(t); ids(t, got["members"]) != "" {
				t.Fatalf("members after delete %v", got)
			}
			if u, err := st.UserByID(ctx, mustID(t, ann)); err != nil || u.DeletedAt == nil || u.Name != persistence.DeletedUserName || u.Email == "ann@example.com" {
				t.Fatalf("deleted row %+v %v", u, err)
			}

			// Delete a matter: its messages go with it.
			if got := runAdmin(t, "matters", "delete", "--matter", id(t, m1), db).ok(t); got["deleted"] != true {
				t.Fatalf("delete matter %v", got)
			}
			runAdmin(t, "matters", "show", "--matter", id(t, m1), db).fails(t, 1, "no matter with id")
			if msgs, total, err := st.ListMessages(ctx, persistence.MessageQuery{MatterID: mustID(t, m1), Limit: 10}); err != nil || total != 0 || len(msgs) != 0 {
				t.Fatalf("messages of a deleted matter: %v %d %v", msgs, total, err)
			}
		})
	}
}

func mustID(t *testing.T, m map[string]any) int64 {
	t.Helper()
	var n int64
	fmt.Sscan(id(t, m), &n)
	return n
}

// TestAdminDatabaseLine: every admin command says which database it writes
// to, and never a password.
func TestAdminDatabaseLine(t *testing.T) {
	for _, tc := range []struct {
		cfg  config.Config
		want string
	}{
		{config.Config{DataDir: "./data"}, "the embedded database data/parley.db"},
		{config.Config{DataDir: "/var/lib/parley"}, "the embedded database /var/lib/parley/parley.db"},
		{config.Config{DatabaseURL: "postgres://parley:s3cr3t-pw@db.internal:5433/chat?sslmode=require"}, "PostgreSQL db.internal:5433/chat"},
		{config.Config{DatabaseURL: "postgresql://parley:s3cr3t-pw@/chat?host=/var/run/postgresql"}, "PostgreSQL /var/run/postgresql/chat"},
		{config.Config{DatabaseURL: "host=10.0.0.5 dbname=chat user=parley password=s3cr3t-pw"}, "PostgreSQL 10.0.0.5/chat"},
	} {
		got := describeDatabase(&tc.cfg)
		if got != tc.want || strings.Contains(got, "s3cr3t") {
			t.Errorf("%+v: %q, want %q", tc.cfg, got, tc.want)
		}
	}

	// Without DATABASE_URL the commands say they use the embedded database,
	// where it is: the mistake of writing to ./data while the server uses
	// PostgreSQL shows on the first command.
	clearDBEnv(t)
	dir := t.TempDir()
	t.Setenv("PARLEY_DATA_DIR", dir)
	r := runAdmin(t, "matters", "create", "--title", "T")
	r.ok(t)
	if want := "parley: using the embedded database " + filepath.Join(dir, "parley.db") + "\n"; r.stderr != want {
		t.Fatalf("stderr %q, want %q", r.stderr, want)
	}
	r = runAdmin(t, "migrate")
	if want := "parley: using the embedded database " + filepath.Join(dir, "parley.db") + "\n"; r.stderr != want {
		t.Fatalf("migrate stderr %q, want %q", r.stderr, want)
	}
}
