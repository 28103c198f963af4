package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/persistence"
)

const adminUsage = `Admin commands print one JSON object on stdout; errors go to stderr.

  parley users create --name N --email E --password P
  parley tokens create --user ID [--ttl 24h]      (--ttl 0: never expires)
  parley matters create --title T
  parley matters add-member --matter ID --user ID
  parley migrate

Every command also takes --data-dir DIR (PARLEY_DATA_DIR) and
--database-url URL (DATABASE_URL); a database URL selects PostgreSQL.
`

// adminTokenTTL is the default --ttl of tokens create: the same lifetime as
// a login token.
const adminTokenTTL = chat.LoginTokenTTL

// dbFlags are the database options every admin command takes; flags override
// the environment, which config.Load reads.
type dbFlags struct {
	dataDir     string
	databaseURL string
}

// newAdminFlags makes a flag set that reports usage problems on stderr and
// carries --data-dir and --database-url.
func newAdminFlags(name string, stderr io.Writer) (*flag.FlagSet, *dbFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := &dbFlags{}
	fs.StringVar(&db.dataDir, "data-dir", "", "directory of the embedded database (PARLEY_DATA_DIR, default ./data)")
	fs.StringVar(&db.databaseURL, "database-url", "", "PostgreSQL URL; empty uses the embedded database (DATABASE_URL)")
	return fs, db
}

// parseAdminFlags parses args; exit is -1 to go on, else the exit code.
func parseAdminFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (exit int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "parley %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2
	}
	return -1
}

// open loads the configuration from the environment, applies the flags,
// opens the database and migrates it.
func (d *dbFlags) open(ctx context.Context) (persistence.Store, error) {
	cfg, err := config.Load([]string{}, os.LookupEnv, io.Discard)
	if err != nil {
		return nil, err
	}
	if d.dataDir != "" {
		cfg.DataDir = d.dataDir
	}
	if d.databaseURL != "" {
		if err := config.CheckDatabaseURL(d.databaseURL); err != nil {
			return nil, err
		}
		cfg.DatabaseURL = d.databaseURL
	}
	return openStore(ctx, cfg)
}

func printJSON(stdout io.Writer, v any) {
	_ = json.NewEncoder(stdout).Encode(v)
}

func adminFail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "parley %s: %v\n", cmd, err)
	return 1
}

func usageFail(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "parley: "+format+"\n\n%s", append(a, adminUsage)...)
	return 2
}

// migrate is `parley migrate`: apply pending migrations and say where.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, db := newAdminFlags("migrate", stderr)
	if exit := parseAdminFlags(fs, args, stderr); exit >= 0 {
		return exit
	}
	st, err := db.open(ctx)
	if err != nil {
		return adminFail(stderr, "migrate", err)
	}
	defer st.Close()
	printJSON(stdout, map[string]any{"migrated": true, "dialect": st.Dialect()})
	return 0
}

// admin runs `parley users|tokens|matters SUBCOMMAND [flags]`.
func admin(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageFail(stderr, "%s needs a subcommand", cmd)
	}
	sub, args := args[0], args[1:]
	name := cmd + " " + sub
	switch name {
	case "users create":
		return usersCreate(ctx, name, args, stdout, stderr)
	case "tokens create":
		return tokensCreate(ctx, name, args, stdout, stderr)
	case "matters create":
		return mattersCreate(ctx, name, args, stdout, stderr)
	case "matters add-member":
		return mattersAddMember(ctx, name, args, stdout, stderr)
	}
	if sub == "-h" || sub == "--help" || sub == "help" {
		fmt.Fprint(stdout, adminUsage)
		return 0
	}
	return usageFail(stderr, "unknown command %q", name)
}

func usersCreate(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs, db := newAdminFlags(name, stderr)
	userName := fs.String("name", "", "display name (required)")
	email := fs.String("email", "", "email address, unique (required)")
	password := fs.String("password", "", "password, at most 72 bytes (required)")
	if exit := parseAdminFlags(fs, args, stderr); exit >= 0 {
		return exit
	}
	var missing []string
	if strings.TrimSpace(*userName) == "" {
		missing = append(missing, "--name")
	}
	if strings.TrimSpace(*email) == "" {
		missing = append(missing, "--email")
	} else if !strings.Contains(*email, "@") {
		return usageFail(stderr, "%s: --email %q is not an email address", name, *email)
	}
	if *password == "" {
		missing = append(missing, "--password")
	}
	if len(missing) > 0 {
		return usageFail(stderr, "%s: missing %s", name, strings.Join(missing, ", "))
	}
	hash, err := chat.HashPassword(*password)
	if err != nil {
		return usageFail(stderr, "%s: --password: %v", name, err)
	}
	st, err := db.open(ctx)
	if err != nil {
		return adminFail(stderr, name, err)
	}
	defer st.Close()
	u, err := st.CreateUser(ctx, strings.TrimSpace(*userName), *email, hash)
	if errors.Is(err, persistence.ErrConflict) {
		return adminFail(stderr, name, fmt.Errorf("a user with email %s already exists", strings.ToLower(strings.TrimSpace(*email))))
	}
	if err != nil {
		return adminFail(stderr, name, err)
	}
	printJSON(stdout, u)
	return 0
}

func tokensCreate(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs, db := newAdminFlags(name, stderr)
	userID := fs.Int64("user", 0, "user id (required)")
	ttl := fs.Duration("ttl", adminTokenTTL, "lifetime such as 24h or 720h; 0 never expires")
	if exit := parseAdminFlags(fs, args, stderr); exit >= 0 {
		return exit
	}
	if *userID <= 0 {
		return usageFail(stderr, "%s: --user must be a user id", name)
	}
	if *ttl < 0 {
		return usageFail(stderr, "%s: --ttl must not be negative", name)
	}
	st, err := db.open(ctx)
	if err != nil {
		return adminFail(stderr, name, err)
	}
	defer st.Close()
	plain, tok, err := chat.IssueToken(ctx, st, *userID, *ttl)
	if errors.Is(err, persistence.ErrNotFound) {
		return adminFail(stderr, name, fmt.Errorf("no user with id %d", *userID))
	}
	if err != nil {
		return adminFail(stderr, name, err)
	}
	printJSON(stdout, map[string]any{"token": plain, "id": tok.ID, "user_id": tok.UserID, "expires_at": tok.ExpiresAt})
	return 0
}

func mattersCreate(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs, db := newAdminFlags(name, stderr)
	title := fs.String("title", "", "title (required)")
	if exit := parseAdminFlags(fs, args, stderr); exit >= 0 {
		return exit
	}
	if strings.TrimSpace(*title) == "" {
		return usageFail(stderr, "%s: missing --title", name)
	}
	st, err := db.open(ctx)
	if err != nil {
		return adminFail(stderr, name, err)
	}
	defer st.Close()
	m, err := st.CreateMatter(ctx, strings.TrimSpace(*title))
	if err != nil {
		return adminFail(stderr, name, err)
	}
	printJSON(stdout, m)
	return 0
}

func mattersAddMember(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs, db := newAdminFlags(name, stderr)
	matterID := fs.Int64("matter", 0, "matter id (required)")
	userID := fs.Int64("user", 0, "user id (required)")
	if exit := parseAdminFlags(fs, args, stderr); exit >= 0 {
		return exit
	}
	if *matterID <= 0 || *userID <= 0 {
		return usageFail(stderr, "%s: --matter and --user must be ids", name)
	}
	st, err := db.open(ctx)
	if err != nil {
		return adminFail(stderr, name, err)
	}
	defer st.Close()
	if err := st.AddMember(ctx, *matterID, *userID); errors.Is(err, persistence.ErrNotFound) {
		return adminFail(stderr, name, fmt.Errorf("matter %d or user %d does not exist", *matterID, *userID))
	} else if err != nil {
		return adminFail(stderr, name, err)
	}
	printJSON(stdout, map[string]any{"matter_id": *matterID, "user_id": *userID, "member": true})
	return 0
}
