package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/persistence"
)

var adminUsage = `Admin commands print one JSON object on stdout; errors go to stderr, and
every command says on stderr which database it uses.

  parley users create --name N --email E [--external-id X] PASSWORD | --no-password
  parley users list [--email E] [--external-id X] [--after-id ID] [--limit N]
  parley users show --user ID
  parley users update --user ID [--name N] [--email E] [PASSWORD] [--external-id X | --clear-external-id]
  parley users delete --user ID      (revokes its tokens, leaves its matters, anonymises it)
  parley tokens create --user ID [--ttl 24h]      (--ttl 0: never expires)
  parley tokens list --user ID
  parley tokens revoke --token ID | --user ID     (one token, or all of a user's)
  parley matters create --title T [--members ID,ID,...]
  parley matters list [--user ID] [--after-id ID] [--limit N]
  parley matters show --matter ID
  parley matters update --matter ID --title T
  parley matters delete --matter ID  (its messages, receipts and members too)
  parley matters add-member --matter ID --user ID
  parley matters remove-member --matter ID --user ID
  parley devices list --user ID
  parley devices remove --user ID [--device ID]   (one device, or all of a user's)
  parley migrate

PASSWORD is --password-stdin (one line is read from stdin) or the
environment variable PARLEY_ADMIN_PASSWORD; --password P works too but is
visible in ps and in shell history. Passwords have at least
PARLEY_MIN_PASSWORD_LENGTH characters (default ` + config.DefaultOf("PARLEY_MIN_PASSWORD_LENGTH") + `) and at most 72 bytes.

Every command also takes --data-dir DIR (PARLEY_DATA_DIR) and
--database-url URL (DATABASE_URL); a database URL selects PostgreSQL.
`

// adminTokenTTL is the default --ttl of tokens create: the same lifetime as
// a login token.
const adminTokenTTL = chat.LoginTokenTTL

// adminIO is where an admin command reads a password and writes its answer.
type adminIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

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
	fs.StringVar(&db.dataDir, "data-dir", "", "directory of the embedded database (PARLEY_DATA_DIR, default "+config.DefaultDataDir+")")
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

// config loads the configuration from the environment and applies the flags.
func (d *dbFlags) config() (*config.Config, error) {
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
	return cfg, nil
}

// open says on stderr which database it uses, opens it and migrates it.
func (d *dbFlags) open(ctx context.Context, stderr io.Writer) (persistence.Store, error) {
	cfg, err := d.config()
	if err != nil {
		return nil, err
	}
	return openAdminStore(ctx, cfg, stderr)
}

func openAdminStore(ctx context.Context, cfg *config.Config, stderr io.Writer) (persistence.Store, error) {
	fmt.Fprintf(stderr, "parley: using %s\n", describeDatabase(cfg))
	return openStore(ctx, cfg)
}

// describeDatabase names the database cfg selects, never its password:
// "the embedded database data/parley.db" or "PostgreSQL host:port/dbname".
func describeDatabase(cfg *config.Config) string {
	if cfg.DatabaseURL == "" {
		return "the embedded database " + filepath.Join(cfg.DataDir, "parley.db")
	}
	host, db := "", ""
	if u, err := url.Parse(cfg.DatabaseURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		host, db = u.Host, strings.TrimPrefix(u.Path, "/")
		if h := u.Query().Get("host"); host == "" && h != "" {
			host = h
		}
	} else {
		// lib/pq's "key=value" form.
		for _, kv := range strings.Fields(cfg.DatabaseURL) {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "host":
				host = strings.Trim(v, "'")
			case "dbname":
				db = strings.Trim(v, "'")
			}
		}
	}
	if host == "" {
		host = "localhost"
	}
	if db == "" {
		db = "(the user's default database)"
	}
	return "PostgreSQL " + host + "/" + db
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
	st, err := db.open(ctx, stderr)
	if err != nil {
		return adminFail(stderr, "migrate", err)
	}
	defer st.Close()
	printJSON(stdout, map[string]any{"migrated": true, "dialect": st.Dialect()})
	return 0
}

// adminCommand runs one `parley NOUN VERB`: args are after the verb.
type adminCommand func(ctx context.Context, name string, args []string, aio adminIO) int

var adminCommands = map[string]adminCommand{
	"users create":          usersCreate,
	"users list":            usersList,
	"users show":            usersShow,
	"users update":          usersUpdate,
	"users delete":          usersDelete,
	"tokens create":         tokensCreate,
	"tokens list":           tokensList,
	"tokens revoke":         tokensRevoke,
	"matters create":        mattersCreate,
	"matters list":          mattersList,
	"matters show":          mattersShow,
	"matters update":        mattersUpdate,
	"matters delete":        mattersDelete,
	"matters add-member":    mattersAddMember,
	"matters remove-member": mattersRemoveMember,
	"devices list":          devicesList,
	"devices remove":        devicesRemove,
}

// admin runs `parley users|tokens|matters|devices SUBCOMMAND [flags]`.
func admin(ctx context.Context, cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageFail(stderr, "%s needs a subcommand", cmd)
	}
	sub, args := args[0], args[1:]
	name := cmd + " " + sub
	if run, ok := adminCommands[name]; ok {
		return run(ctx, name, args, adminIO{stdin: stdin, stdout: stdout, stderr: stderr})
	}
	if sub == "-h" || sub == "--help" || sub == "help" {
		fmt.Fprint(stdout, adminUsage)
		return 0
	}
	return usageFail(stderr, "unknown command %q", name)
}

// passwordFlags are the ways a command takes a password.
type passwordFlags struct {
	inline string // --password: visible in ps and history
	stdin  bool   // --password-stdin
	none   bool   // --no-password (users create only)
}

func addPasswordFlags(fs *flag.FlagSet, p *passwordFlags, create bool) {
	fs.StringVar(&p.inline, "password", "", "password (visible in ps and shell history: prefer --password-stdin or PARLEY_ADMIN_PASSWORD)")
	fs.BoolVar(&p.stdin, "password-stdin", false, "read the password from the first line of stdin")
	if create {
		fs.BoolVar(&p.none, "no-password", false, "a user who cannot log in with a password (tokens are issued for it)")
	}
}

// read returns the password given (given false: none), or a usage error.
// The environment variable counts only when no flag names a password.
func (p *passwordFlags) read(fs *flag.FlagSet, aio adminIO, minLen int) (pw string, given bool, err error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	ways := 0
	for _, n := range []string{"password", "password-stdin", "no-password"} {
		if set[n] && (n != "password-stdin" || p.stdin) && (n != "no-password" || p.none) {
			ways++
		}
	}
	if ways > 1 {
		return "", false, errors.New("give one of --password, --password-stdin and --no-password")
	}
	switch {
	case p.none:
		return "", false, nil
	case set["password"]:
		fmt.Fprintln(aio.stderr, "parley: warning: --password is visible in ps and in shell history; use --password-stdin or PARLEY_ADMIN_PASSWORD")
		pw = p.inline
	case p.stdin:
		line, rerr := bufio.NewReader(aio.stdin).ReadString('\n')
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return "", false, fmt.Errorf("--password-stdin: %v", rerr)
		}
		pw = strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", false, errors.New("--password-stdin: stdin has no password line")
		}
	default:
		v, ok := os.LookupEnv(config.EnvAdminPassword)
		if !ok || v == "" {
			return "", false, nil
		}
		pw = v
	}
	if err := chat.ValidatePassword(pw, minLen); err != nil {
		return "", false, err
	}
	return pw, true, nil
}

func usersCreate(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	userName := fs.String("name", "", "display name (required)")
	email := fs.String("email", "", "email address, unique (required)")
	externalID := fs.String("external-id", "", "the user's id in your application, unique (optional)")
	var pf passwordFlags
	addPasswordFlags(fs, &pf, true)
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	cfg, err := db.config()
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	var missing []string
	if strings.TrimSpace(*userName) == "" {
		missing = append(missing, "--name")
	}
	if strings.TrimSpace(*email) == "" {
		missing = append(missing, "--email")
	} else if err := chat.ValidateEmail(strings.TrimSpace(*email)); err != nil {
		return usageFail(aio.stderr, "%s: --email %q is not an email address", name, *email)
	}
	pw, given, err := pf.read(fs, aio, cfg.MinPasswordLength)
	if err != nil {
		return usageFail(aio.stderr, "%s: %v", name, err)
	}
	if !given && !pf.none {
		missing = append(missing, "--password-stdin (or PARLEY_ADMIN_PASSWORD, --password, --no-password)")
	}
	if len(missing) > 0 {
		return usageFail(aio.stderr, "%s: missing %s", name, strings.Join(missing, ", "))
	}
	nu := persistence.NewUser{Name: strings.TrimSpace(*userName), Email: strings.TrimSpace(*email)}
	if x := strings.TrimSpace(*externalID); x != "" {
		nu.ExternalID = &x
	}
	if given {
		if nu.PasswordHash, err = chat.HashPassword(pw); err != nil {
			return usageFail(aio.stderr, "%s: %v", name, err)
		}
	}
	st, err := openAdminStore(ctx, cfg, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	u, err := st.CreateUserWith(ctx, nu)
	switch {
	case errors.Is(err, persistence.ErrEmailTaken):
		return adminFail(aio.stderr, name, fmt.Errorf("a user with email %s already exists", strings.ToLower(nu.Email)))
	case errors.Is(err, persistence.ErrExternalIDTaken):
		return adminFail(aio.stderr, name, fmt.Errorf("a user with external id %s already exists", *nu.ExternalID))
	case err != nil:
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, chat.AdminUser(u))
	return 0
}

// pageFlags are --after-id and --limit of the list commands.
type pageFlags struct {
	afterID int64
	limit   int
}

func addPageFlags(fs *flag.FlagSet, p *pageFlags) {
	fs.Int64Var(&p.afterID, "after-id", 0, "list ids above this one (the previous answer's next_after_id)")
	fs.IntVar(&p.limit, "limit", 100, "page size, 1-100")
}

func (p pageFlags) check() error {
	if p.afterID < 0 {
		return errors.New("--after-id must not be negative")
	}
	if p.limit < 1 || p.limit > 100 {
		return errors.New("--limit must be 1 to 100")
	}
	return nil
}

func usersList(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	email := fs.String("email", "", "only the user with this email")
	externalID := fs.String("external-id", "", "only the user with this external id")
	var pg pageFlags
	addPageFlags(fs, &pg)
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if err := pg.check(); err != nil {
		return usageFail(aio.stderr, "%s: %v", name, err)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	page, err := chat.UsersPage(ctx, st, persistence.UserQuery{Email: strings.TrimSpace(*email), ExternalID: strings.TrimSpace(*externalID),
		AfterID: pg.afterID, Limit: pg.limit})
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, page)
	return 0
}

// idFlag parses the command's flags with one required id flag.
func idFlag(fs *flag.FlagSet, flagName, what string) *int64 {
	return fs.Int64(flagName, 0, what+" id (required)")
}

// activeUser loads a user that is not deleted.
func activeUser(ctx context.Context, st persistence.Store, id int64) (persistence.User, error) {
	u, err := st.UserByID(ctx, id)
	if err == nil && u.DeletedAt != nil {
		err = persistence.ErrNotFound
	}
	if errors.Is(err, persistence.ErrNotFound) {
		return u, fmt.Errorf("no user with id %d", id)
	}
	return u, err
}

func usersShow(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	id := idFlag(fs, "user", "user")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if *id <= 0 {
		return usageFail(aio.stderr, "%s: --user must be a user id", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	u, err := activeUser(ctx, st, *id)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, chat.AdminUser(u))
	return 0
}

func usersUpdate(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	id := idFlag(fs, "user", "user")
	userName := fs.String("name", "", "new display name")
	email := fs.String("email", "", "new email address")
	externalID := fs.String("external-id", "", "new external id")
	clearExternal := fs.Bool("clear-external-id", false, "remove the external id")
	var pf passwordFlags
	addPasswordFlags(fs, &pf, false)
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if *id <= 0 {
		return usageFail(aio.stderr, "%s: --user must be a user id", name)
	}
	cfg, err := db.config()
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var p persistence.UserPatch
	if set["name"] {
		v := strings.TrimSpace(*userName)
		if v == "" {
			return usageFail(aio.stderr, "%s: --name is empty", name)
		}
		p.Name = &v
	}
	if set["email"] {
		v := strings.TrimSpace(*email)
		if chat.ValidateEmail(v) != nil {
			return usageFail(aio.stderr, "%s: --email %q is not an email address", name, *email)
		}
		p.Email = &v
	}
	if set["external-id"] && *clearExternal {
		return usageFail(aio.stderr, "%s: give --external-id or --clear-external-id, not both", name)
	}
	if v := strings.TrimSpace(*externalID); set["external-id"] && v != "" {
		p.ExternalID = &v
	}
	p.ClearExternalID = *clearExternal || (set["external-id"] && strings.TrimSpace(*externalID) == "")
	pw, given, err := pf.read(fs, aio, cfg.MinPasswordLength)
	if err != nil {
		return usageFail(aio.stderr, "%s: %v", name, err)
	}
	if given {
		hash, err := chat.HashPassword(pw)
		if err != nil {
			return usageFail(aio.stderr, "%s: %v", name, err)
		}
		p.PasswordHash = &hash
	}
	if p == (persistence.UserPatch{}) {
		return usageFail(aio.stderr, "%s: nothing to change: give --name, --email, a password or --external-id", name)
	}
	st, err := openAdminStore(ctx, cfg, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	u, err := st.UpdateUser(ctx, *id, p)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return adminFail(aio.stderr, name, fmt.Errorf("no user with id %d", *id))
	case errors.Is(err, persistence.ErrEmailTaken):
		return adminFail(aio.stderr, name, errors.New("another user has that email"))
	case errors.Is(err, persistence.ErrExternalIDTaken):
		return adminFail(aio.stderr, name, errors.New("another user has that external id"))
	case err != nil:
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, chat.AdminUser(u))
	return 0
}

func usersDelete(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	id := idFlag(fs, "user", "user")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if *id <= 0 {
		return usageFail(aio.stderr, "%s: --user must be a user id", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	matters, err := st.DeleteUser(ctx, *id)
	if errors.Is(err, persistence.ErrNotFound) {
		return adminFail(aio.stderr, name, fmt.Errorf("no user with id %d", *id))
	}
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, map[string]any{"id": *id, "deleted": true, "left_matter_ids": matters})
	return 0
}

func tokensCreate(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	userID := fs.Int64("user", 0, "user id (required)")
	ttl := fs.Duration("ttl", adminTokenTTL, "lifetime such as 24h or 720h; 0 never expires")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if *userID <= 0 {
		return usageFail(aio.stderr, "%s: --user must be a user id", name)
	}
	if *ttl < 0 {
		return usageFail(aio.stderr, "%s: --ttl must not be negative", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	if _, err := activeUser(ctx, st, *userID); err != nil {
		return adminFail(aio.stderr, name, err)
	}
	plain, tok, err := chat.IssueToken(ctx, st, *userID, *ttl)
	if errors.Is(err, persistence.ErrNotFound) {
		return adminFail(aio.stderr, name, fmt.Errorf("no user with id %d", *userID))
	}
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, chat.IssuedToken(plain, tok))
	return 0
}

func tokensList(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	userID := idFlag(fs, "user", "user")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if *userID <= 0 {
		return usageFail(aio.stderr, "%s: --user must be a user id", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	if _, err := activeUser(ctx, st, *userID); err != nil {
		return adminFail(aio.stderr, name, err)
	}
	toks, err := st.ListTokens(ctx, *userID)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	out := []chat.AdminTokenJSON{}
	for _, t := range toks {
		out = append(out, chat.AdminToken(t))
	}
	printJSON(aio.stdout, map[string]any{"tokens": out})
	return 0
}

func tokensRevoke(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	tokenID := fs.Int64("token", 0, "revoke this token")
	userID := fs.Int64("user", 0, "revoke every token of this user")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if (*tokenID > 0) == (*userID > 0) {
		return usageFail(aio.stderr, "%s: give --token ID or --user ID", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	if *tokenID > 0 {
		err := st.DeleteToken(ctx, *tokenID)
		if errors.Is(err, persistence.ErrNotFound) {
			return adminFail(aio.stderr, name, fmt.Errorf("no token with id %d", *tokenID))
		}
		if err != nil {
			return adminFail(aio.stderr, name, err)
		}
		printJSON(aio.stdout, map[string]any{"id": *tokenID, "revoked": true})
		return 0
	}
	if _, err := activeUser(ctx, st, *userID); err != nil {
		return adminFail(aio.stderr, name, err)
	}
	n, err := st.DeleteUserTokens(ctx, *userID)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, map[string]any{"user_id": *userID, "revoked": n})
	return 0
}

func mattersCreate(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	title := fs.String("title", "", "title (required)")
	members := fs.String("members", "", "member user ids, comma-separated")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if strings.TrimSpace(*title) == "" {
		return usageFail(aio.stderr, "%s: missing --title", name)
	}
	var ids []int64
	for _, s := range strings.Split(*members, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 {
			return usageFail(aio.stderr, "%s: --members: %q is not a user id", name, s)
		}
		ids = append(ids, id)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	m, err := st.CreateMatterWith(ctx, strings.TrimSpace(*title), ids)
	var missing *persistence.MissingUsersError
	if errors.As(err, &missing) {
		return adminFail(aio.stderr, name, fmt.Errorf("no user with id %s", joinIDs(missing.IDs)))
	}
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	var users []persistence.User
	if len(ids) > 0 {
		if users, err = st.MatterMembers(ctx, m.ID); err != nil {
			return adminFail(aio.stderr, name, err)
		}
	}
	printJSON(aio.stdout, chat.AdminMatter(m, users))
	return 0
}

func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ", ")
}

func mattersList(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	userID := fs.Int64("user", 0, "only matters this user belongs to")
	var pg pageFlags
	addPageFlags(fs, &pg)
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if err := pg.check(); err != nil {
		return usageFail(aio.stderr, "%s: %v", name, err)
	}
	if *userID < 0 {
		return usageFail(aio.stderr, "%s: --user must be a user id", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	page, err := chat.MattersPage(ctx, st, persistence.MatterQuery{UserID: *userID, AfterID: pg.afterID, Limit: pg.limit})
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, page)
	return 0
}

func mattersShow(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	id := idFlag(fs, "matter", "matter")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if *id <= 0 {
		return usageFail(aio.stderr, "%s: --matter must be a matter id", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	m, err := st.MatterByID(ctx, *id)
	if errors.Is(err, persistence.ErrNotFound) {
		return adminFail(aio.stderr, name, fmt.Errorf("no matter with id %d", *id))
	}
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	users, err := st.MatterMembers(ctx, *id)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, chat.AdminMatter(m, users))
	return 0
}

func mattersUpdate(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	id := idFlag(fs, "matter", "matter")
	title := fs.String("title", "", "new title (required)")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if *id <= 0 {
		return usageFail(aio.stderr, "%s: --matter must be a matter id", name)
	}
	if strings.TrimSpace(*title) == "" {
		return usageFail(aio.stderr, "%s: missing --title", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	m, err := st.UpdateMatter(ctx, *id, strings.TrimSpace(*title))
	if errors.Is(err, persistence.ErrNotFound) {
		return adminFail(aio.stderr, name, fmt.Errorf("no matter with id %d", *id))
	}
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, chat.AdminMatter(m, nil))
	return 0
}

func mattersDelete(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	id := idFlag(fs, "matter", "matter")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if *id <= 0 {
		return usageFail(aio.stderr, "%s: --matter must be a matter id", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	members, err := st.DeleteMatter(ctx, *id)
	if errors.Is(err, persistence.ErrNotFound) {
		return adminFail(aio.stderr, name, fmt.Errorf("no matter with id %d", *id))
	}
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, map[string]any{"id": *id, "deleted": true, "member_ids": members})
	return 0
}

// memberArgs parses --matter and --user of add-member and remove-member.
func memberArgs(name string, args []string, aio adminIO) (db *dbFlags, matterID, userID int64, exit int) {
	fs, db := newAdminFlags(name, aio.stderr)
	m := fs.Int64("matter", 0, "matter id (required)")
	u := fs.Int64("user", 0, "user id (required)")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return nil, 0, 0, exit
	}
	if *m <= 0 || *u <= 0 {
		return nil, 0, 0, usageFail(aio.stderr, "%s: --matter and --user must be ids", name)
	}
	return db, *m, *u, -1
}

// memberMissing says which of the matter and the user does not exist.
func memberMissing(err error, matterID, userID int64) error {
	if errors.Is(err, persistence.ErrNoSuchMatter) {
		return fmt.Errorf("matter %d does not exist", matterID)
	}
	return fmt.Errorf("user %d does not exist", userID)
}

func mattersAddMember(ctx context.Context, name string, args []string, aio adminIO) int {
	db, matterID, userID, exit := memberArgs(name, args, aio)
	if exit >= 0 {
		return exit
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	added, err := st.AddActiveMember(ctx, matterID, userID)
	if errors.Is(err, persistence.ErrNotFound) {
		return adminFail(aio.stderr, name, memberMissing(err, matterID, userID))
	}
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, map[string]any{"matter_id": matterID, "user_id": userID, "member": true, "added": added})
	return 0
}

func mattersRemoveMember(ctx context.Context, name string, args []string, aio adminIO) int {
	db, matterID, userID, exit := memberArgs(name, args, aio)
	if exit >= 0 {
		return exit
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	removed, err := st.RemoveMember(ctx, matterID, userID)
	if errors.Is(err, persistence.ErrNotFound) {
		return adminFail(aio.stderr, name, memberMissing(err, matterID, userID))
	}
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, map[string]any{"matter_id": matterID, "user_id": userID, "member": false, "removed": removed})
	return 0
}
