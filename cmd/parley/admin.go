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

// openAdminStore says on stderr which database it uses, opens it and
// migrates it.
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

// adminVerb is one run of an admin command: its flags, among them the
// database ones, and where it reads and writes.
type adminVerb struct {
	name string
	aio  adminIO
	fs   *flag.FlagSet
	db   *dbFlags
	cfg  *config.Config // once config has loaded it
}

func newAdminVerb(name string, aio adminIO) *adminVerb {
	fs, db := newAdminFlags(name, aio.stderr)
	return &adminVerb{name: name, aio: aio, fs: fs, db: db}
}

// configError is a configuration that does not load: a failure (exit 1),
// not a usage error, even when a check meets it.
type configError struct{ error }

// config loads the configuration once and applies the database flags.
func (v *adminVerb) config() (*config.Config, error) {
	if v.cfg == nil {
		cfg, err := v.db.config()
		if err != nil {
			return nil, configError{err}
		}
		v.cfg = cfg
	}
	return v.cfg, nil
}

// run parses args, then check (nil: none) checks them: its error is a usage
// error (exit 2) but for a configError. Then run opens the database, does
// the operation and prints do's answer as one JSON object; the database's
// or the operation's error exits 1.
func (v *adminVerb) run(ctx context.Context, args []string, check func() error, do func(st persistence.Store) (any, error)) int {
	if exit := parseAdminFlags(v.fs, args, v.aio.stderr); exit >= 0 {
		return exit
	}
	if check != nil {
		if err := check(); err != nil {
			if errors.As(err, new(configError)) {
				return adminFail(v.aio.stderr, v.name, err)
			}
			return usageFail(v.aio.stderr, "%s: %v", v.name, err)
		}
	}
	cfg, err := v.config()
	if err != nil {
		return adminFail(v.aio.stderr, v.name, err)
	}
	st, err := openAdminStore(ctx, cfg, v.aio.stderr)
	if err != nil {
		return adminFail(v.aio.stderr, v.name, err)
	}
	defer st.Close()
	out, err := do(st)
	if err != nil {
		return adminFail(v.aio.stderr, v.name, err)
	}
	printJSON(v.aio.stdout, out)
	return 0
}

// migrate is `parley migrate`: apply pending migrations and say where.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	v := newAdminVerb("migrate", adminIO{stdout: stdout, stderr: stderr})
	return v.run(ctx, args, nil, func(st persistence.Store) (any, error) {
		return map[string]any{"migrated": true, "dialect": st.Dialect()}, nil
	})
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
	v := newAdminVerb(name, aio)
	userName := v.fs.String("name", "", "display name (required)")
	email := v.fs.String("email", "", "email address, unique (required)")
	externalID := v.fs.String("external-id", "", "the user's id in your application, unique (optional)")
	var pf passwordFlags
	addPasswordFlags(v.fs, &pf, true)
	var nu persistence.NewUser
	check := func() error {
		cfg, err := v.config()
		if err != nil {
			return err
		}
		var missing []string
		if strings.TrimSpace(*userName) == "" {
			missing = append(missing, "--name")
		}
		if strings.TrimSpace(*email) == "" {
			missing = append(missing, "--email")
		} else if err := chat.ValidateEmail(strings.TrimSpace(*email)); err != nil {
			return fmt.Errorf("--email %q is not an email address", *email)
		}
		pw, given, err := pf.read(v.fs, aio, cfg.MinPasswordLength)
		if err != nil {
			return err
		}
		if !given && !pf.none {
			missing = append(missing, "--password-stdin (or PARLEY_ADMIN_PASSWORD, --password, --no-password)")
		}
		if len(missing) > 0 {
			return fmt.Errorf("missing %s", strings.Join(missing, ", "))
		}
		nu = persistence.NewUser{Name: strings.TrimSpace(*userName), Email: strings.TrimSpace(*email)}
		if x := strings.TrimSpace(*externalID); x != "" {
			nu.ExternalID = &x
		}
		if given {
			nu.PasswordHash, err = chat.HashPassword(pw)
		}
		return err
	}
	return v.run(ctx, args, check, func(st persistence.Store) (any, error) {
		u, err := st.CreateUserWith(ctx, nu)
		switch {
		case errors.Is(err, persistence.ErrEmailTaken):
			return nil, fmt.Errorf("a user with email %s already exists", strings.ToLower(nu.Email))
		case errors.Is(err, persistence.ErrExternalIDTaken):
			return nil, fmt.Errorf("a user with external id %s already exists", *nu.ExternalID)
		case err != nil:
			return nil, err
		}
		return chat.AdminUser(u), nil
	})
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

func (p *pageFlags) check() error {
	if p.afterID < 0 {
		return errors.New("--after-id must not be negative")
	}
	if p.limit < 1 || p.limit > 100 {
		return errors.New("--limit must be 1 to 100")
	}
	return nil
}

func usersList(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	email := v.fs.String("email", "", "only the user with this email")
	externalID := v.fs.String("external-id", "", "only the user with this external id")
	var pg pageFlags
	addPageFlags(v.fs, &pg)
	return v.run(ctx, args, pg.check, func(st persistence.Store) (any, error) {
		return chat.UsersPage(ctx, st, persistence.UserQuery{Email: strings.TrimSpace(*email), ExternalID: strings.TrimSpace(*externalID),
			AfterID: pg.afterID, Limit: pg.limit})
	})
}

// idFlag parses the command's flags with one required id flag.
func idFlag(fs *flag.FlagSet, flagName, what string) *int64 {
	return fs.Int64(flagName, 0, what+" id (required)")
}

// needID is the check of a required --user or --matter: "--user must be a
// user id".
func needID(flagName string, id int64) error {
	if id <= 0 {
		return fmt.Errorf("--%s must be a %s id", flagName, flagName)
	}
	return nil
}

// noSuch names what a not-found error did not find: "no matter with id 7";
// other errors are returned as they are.
func noSuch(err error, what string, id int64) error {
	if errors.Is(err, persistence.ErrNotFound) {
		return fmt.Errorf("no %s with id %d", what, id)
	}
	return err
}

// activeUser loads a user that is not deleted.
func activeUser(ctx context.Context, st persistence.Store, id int64) (persistence.User, error) {
	u, err := st.UserByID(ctx, id)
	if err == nil && u.DeletedAt != nil {
		err = persistence.ErrNotFound
	}
	return u, noSuch(err, "user", id)
}

func usersShow(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	id := idFlag(v.fs, "user", "user")
	return v.run(ctx, args, func() error { return needID("user", *id) }, func(st persistence.Store) (any, error) {
		u, err := activeUser(ctx, st, *id)
		if err != nil {
			return nil, err
		}
		return chat.AdminUser(u), nil
	})
}

func usersUpdate(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	id := idFlag(v.fs, "user", "user")
	userName := v.fs.String("name", "", "new display name")
	email := v.fs.String("email", "", "new email address")
	externalID := v.fs.String("external-id", "", "new external id")
	clearExternal := v.fs.Bool("clear-external-id", false, "remove the external id")
	var pf passwordFlags
	addPasswordFlags(v.fs, &pf, false)
	var p persistence.UserPatch
	check := func() error {
		if err := needID("user", *id); err != nil {
			return err
		}
		cfg, err := v.config()
		if err != nil {
			return err
		}
		set := map[string]bool{}
		v.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if set["name"] {
			s := strings.TrimSpace(*userName)
			if s == "" {
				return errors.New("--name is empty")
			}
			p.Name = &s
		}
		if set["email"] {
			s := strings.TrimSpace(*email)
			if chat.ValidateEmail(s) != nil {
				return fmt.Errorf("--email %q is not an email address", *email)
			}
			p.Email = &s
		}
		if set["external-id"] && *clearExternal {
			return errors.New("give --external-id or --clear-external-id, not both")
		}
		if s := strings.TrimSpace(*externalID); set["external-id"] && s != "" {
			p.ExternalID = &s
		}
		p.ClearExternalID = *clearExternal || (set["external-id"] && strings.TrimSpace(*externalID) == "")
		pw, given, err := pf.read(v.fs, aio, cfg.MinPasswordLength)
		if err != nil {
			return err
		}
		if given {
			hash, err := chat.HashPassword(pw)
			if err != nil {
				return err
			}
			p.PasswordHash = &hash
		}
		if p == (persistence.UserPatch{}) {
			return errors.New("nothing to change: give --name, --email, a password or --external-id")
		}
		return nil
	}
	return v.run(ctx, args, check, func(st persistence.Store) (any, error) {
		u, err := st.UpdateUser(ctx, *id, p)
		switch {
		case errors.Is(err, persistence.ErrNotFound):
			return nil, noSuch(err, "user", *id)
		case errors.Is(err, persistence.ErrEmailTaken):
			return nil, errors.New("another user has that email")
		case errors.Is(err, persistence.ErrExternalIDTaken):
			return nil, errors.New("another user has that external id")
		case err != nil:
			return nil, err
		}
		return chat.AdminUser(u), nil
	})
}

func usersDelete(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	id := idFlag(v.fs, "user", "user")
	return v.run(ctx, args, func() error { return needID("user", *id) }, func(st persistence.Store) (any, error) {
		matters, err := st.DeleteUser(ctx, *id)
		if err != nil {
			return nil, noSuch(err, "user", *id)
		}
		return map[string]any{"id": *id, "deleted": true, "left_matter_ids": matters}, nil
	})
}

func tokensCreate(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	userID := v.fs.Int64("user", 0, "user id (required)")
	ttl := v.fs.Duration("ttl", adminTokenTTL, "lifetime such as 24h or 720h; 0 never expires")
	check := func() error {
		if err := needID("user", *userID); err != nil {
			return err
		}
		if *ttl < 0 {
			return errors.New("--ttl must not be negative")
		}
		return nil
	}
	return v.run(ctx, args, check, func(st persistence.Store) (any, error) {
		if _, err := activeUser(ctx, st, *userID); err != nil {
			return nil, err
		}
		plain, tok, err := chat.IssueToken(ctx, st, *userID, *ttl)
		if err != nil {
			return nil, noSuch(err, "user", *userID)
		}
		return chat.IssuedToken(plain, tok), nil
	})
}

func tokensList(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	userID := idFlag(v.fs, "user", "user")
	return v.run(ctx, args, func() error { return needID("user", *userID) }, func(st persistence.Store) (any, error) {
		if _, err := activeUser(ctx, st, *userID); err != nil {
			return nil, err
		}
		toks, err := st.ListTokens(ctx, *userID)
		if err != nil {
			return nil, err
		}
		out := []chat.AdminTokenJSON{}
		for _, t := range toks {
			out = append(out, chat.AdminToken(t))
		}
		return map[string]any{"tokens": out}, nil
	})
}

func tokensRevoke(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	tokenID := v.fs.Int64("token", 0, "revoke this token")
	userID := v.fs.Int64("user", 0, "revoke every token of this user")
	check := func() error {
		if (*tokenID > 0) == (*userID > 0) {
			return errors.New("give --token ID or --user ID")
		}
		return nil
	}
	return v.run(ctx, args, check, func(st persistence.Store) (any, error) {
		if *tokenID > 0 {
			if err := st.DeleteToken(ctx, *tokenID); err != nil {
				return nil, noSuch(err, "token", *tokenID)
			}
			return map[string]any{"id": *tokenID, "revoked": true}, nil
		}
		if _, err := activeUser(ctx, st, *userID); err != nil {
			return nil, err
		}
		n, err := st.DeleteUserTokens(ctx, *userID)
		if err != nil {
			return nil, err
		}
		return map[string]any{"user_id": *userID, "revoked": n}, nil
	})
}

func mattersCreate(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	title := v.fs.String("title", "", "title (required)")
	members := v.fs.String("members", "", "member user ids, comma-separated")
	var ids []int64
	check := func() error {
		if strings.TrimSpace(*title) == "" {
			return errors.New("missing --title")
		}
		for _, s := range strings.Split(*members, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("--members: %q is not a user id", s)
			}
			ids = append(ids, id)
		}
		return nil
	}
	return v.run(ctx, args, check, func(st persistence.Store) (any, error) {
		m, err := st.CreateMatterWith(ctx, strings.TrimSpace(*title), ids)
		var missing *persistence.MissingUsersError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("no user with id %s", joinIDs(missing.IDs))
		}
		if err != nil {
			return nil, err
		}
		var users []persistence.User
		if len(ids) > 0 {
			if users, err = st.MatterMembers(ctx, m.ID); err != nil {
				return nil, err
			}
		}
		return chat.AdminMatter(m, users), nil
	})
}

func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ", ")
}

func mattersList(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	userID := v.fs.Int64("user", 0, "only matters this user belongs to")
	var pg pageFlags
	addPageFlags(v.fs, &pg)
	check := func() error {
		if err := pg.check(); err != nil {
			return err
		}
		if *userID < 0 {
			return errors.New("--user must be a user id")
		}
		return nil
	}
	return v.run(ctx, args, check, func(st persistence.Store) (any, error) {
		return chat.MattersPage(ctx, st, persistence.MatterQuery{UserID: *userID, AfterID: pg.afterID, Limit: pg.limit})
	})
}

func mattersShow(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	id := idFlag(v.fs, "matter", "matter")
	return v.run(ctx, args, func() error { return needID("matter", *id) }, func(st persistence.Store) (any, error) {
		m, err := st.MatterByID(ctx, *id)
		if err != nil {
			return nil, noSuch(err, "matter", *id)
		}
		users, err := st.MatterMembers(ctx, *id)
		if err != nil {
			return nil, err
		}
		return chat.AdminMatter(m, users), nil
	})
}

func mattersUpdate(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	id := idFlag(v.fs, "matter", "matter")
	title := v.fs.String("title", "", "new title (required)")
	check := func() error {
		if err := needID("matter", *id); err != nil {
			return err
		}
		if strings.TrimSpace(*title) == "" {
			return errors.New("missing --title")
		}
		return nil
	}
	return v.run(ctx, args, check, func(st persistence.Store) (any, error) {
		m, err := st.UpdateMatter(ctx, *id, strings.TrimSpace(*title))
		if err != nil {
			return nil, noSuch(err, "matter", *id)
		}
		return chat.AdminMatter(m, nil), nil
	})
}

func mattersDelete(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	id := idFlag(v.fs, "matter", "matter")
	return v.run(ctx, args, func() error { return needID("matter", *id) }, func(st persistence.Store) (any, error) {
		members, err := st.DeleteMatter(ctx, *id)
		if err != nil {
			return nil, noSuch(err, "matter", *id)
		}
		return map[string]any{"id": *id, "deleted": true, "member_ids": members}, nil
	})
}

// memberVerb runs add-member or remove-member: change makes the change for
// --matter and --user and returns the answer; a not-found error says which
// of the two does not exist.
func memberVerb(ctx context.Context, name string, args []string, aio adminIO,
	change func(st persistence.Store, matterID, userID int64) (map[string]any, error)) int {
	v := newAdminVerb(name, aio)
	m := v.fs.Int64("matter", 0, "matter id (required)")
	u := v.fs.Int64("user", 0, "user id (required)")
	check := func() error {
		if *m <= 0 || *u <= 0 {
			return errors.New("--matter and --user must be ids")
		}
		return nil
	}
	return v.run(ctx, args, check, func(st persistence.Store) (any, error) {
		out, err := change(st, *m, *u)
		if errors.Is(err, persistence.ErrNotFound) {
			return nil, memberMissing(err, *m, *u)
		}
		if err != nil {
			return nil, err
		}
		return out, nil
	})
}

// memberMissing says which of the matter and the user does not exist.
func memberMissing(err error, matterID, userID int64) error {
	if errors.Is(err, persistence.ErrNoSuchMatter) {
		return fmt.Errorf("matter %d does not exist", matterID)
	}
	return fmt.Errorf("user %d does not exist", userID)
}

func mattersAddMember(ctx context.Context, name string, args []string, aio adminIO) int {
	return memberVerb(ctx, name, args, aio, func(st persistence.Store, matterID, userID int64) (map[string]any, error) {
		added, err := st.AddActiveMember(ctx, matterID, userID)
		return map[string]any{"matter_id": matterID, "user_id": userID, "member": true, "added": added}, err
	})
}

func mattersRemoveMember(ctx context.Context, name string, args []string, aio adminIO) int {
	return memberVerb(ctx, name, args, aio, func(st persistence.Store, matterID, userID int64) (map[string]any, error) {
		removed, err := st.RemoveMember(ctx, matterID, userID)
		return map[string]any{"matter_id": matterID, "user_id": userID, "member": false, "removed": removed}, err
	})
}
