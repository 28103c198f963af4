package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/persistence"

	_ "github.com/lib/pq"  // COPY on PostgreSQL
	_ "modernc.org/sqlite" // the embedded database
)

// `parley bench seed-data` fills an empty chat database with a large,
// realistic history so the chat paths can be measured against it. It is not
// a load scenario against a server: it writes to the database directly, so
// it has its own flags and no app credentials.

const seedUsage = `Usage: parley bench seed-data [flags]

Fills an empty chat database with a large, realistic history: users,
matters (each with its members), messages spread over the matters with a
skew (a few busy matters, a long tail of quiet ones) and timestamps
increasing over --days, and read state: each member has read a matter up
to some point (the first fraction p of its messages, p = U^((1-F)/F) for a
uniform U, so the mean is F = --read-fraction while some members keep large
backlogs), in about 30 visits to a busy matter, each stored as the server
stores reading a matter up to a message: a read position and one read range
per visit.

The database is opened and migrated the way 'parley serve' does (the same
--database-url or --data-dir), then loaded with COPY on PostgreSQL and with
multi-row INSERTs in large transactions on the embedded database. It must
have no users yet. The same --seed gives the same rows (times are relative
to --until).

Every user's password is --password. With --bench-users FILE, the members of
the --bench-matters busiest matters are written as a users file for
'parley bench chat --users-file FILE' (each user lists the matters it
belongs to, so no --matter-ids is needed).

Example:
  parley bench seed-data --data-dir ./data --bench-users seeded-users.json
  parley bench seed-data --database-url postgres://postgres@127.0.0.1/parley?sslmode=disable

Flags:
`

// seedConfig is seed-data's command line.
type seedConfig struct {
	Matters          int
	Users            int
	Messages         int
	MembersPerMatter int
	ReadFraction     float64
	Days             int
	Until            string // RFC 3339; default: today 00:00 UTC
	Seed             uint64
	Password         string
	DatabaseURL      string
	DataDir          string
	BenchUsers       string
	BenchMatters     int
	JSONPath         string
	Quiet            bool

	until time.Time // parsed Until
}

// Upper bounds of the sizes: far above the 1M messages, low enough
// that the plan fits in memory (about 20 bytes per message).
const (
	maxSeedUsers    = 10_000_000
	maxSeedMatters  = 1_000_000
	maxSeedMessages = 100_000_000
	maxSeedMembers  = 50_000_000 // matters × members per matter
)

func (c *seedConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&c.Matters, "matters", 1000, "matters (conversations) to create")
	fs.IntVar(&c.Users, "users", 10_000, "users to create")
	fs.IntVar(&c.Messages, "messages", 1_000_000, "messages to create")
	fs.IntVar(&c.MembersPerMatter, "members-per-matter", 10, "members of each matter")
	fs.Float64Var(&c.ReadFraction, "read-fraction", 0.9, "mean fraction of a matter's messages each member has read (0..1)")
	fs.IntVar(&c.Days, "days", 90, "the messages span this many days, ending at --until")
	fs.StringVar(&c.Until, "until", "", "RFC 3339 time of the last message (default: today 00:00 UTC)")
	fs.Uint64Var(&c.Seed, "seed", 1, "random seed: the same seed and sizes give the same rows")
	fs.StringVar(&c.Password, "password", "parley-seed-password", "password of every generated user (hashed once with bcrypt)")
	fs.StringVar(&c.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL); empty = the embedded database in --data-dir")
	fs.StringVar(&c.DataDir, "data-dir", serverDataDir(), "the server's data directory, for the embedded database (default $PARLEY_DATA_DIR, then ./data)")
	fs.StringVar(&c.BenchUsers, "bench-users", "", "also write the members of the busiest matters to `FILE`, a users file for 'parley bench chat --users-file'")
	fs.IntVar(&c.BenchMatters, "bench-matters", 10, "with --bench-users: how many of the busiest matters")
	fs.StringVar(&c.JSONPath, "json", "", "also write the summary as JSON to `FILE`")
	fs.BoolVar(&c.Quiet, "quiet", false, "do not print progress on stderr")
}

func (c *seedConfig) validate() []string {
	var probs []string
	probs = checkRange(probs, "--matters", c.Matters, 1, maxSeedMatters)
	probs = checkRange(probs, "--users", c.Users, 2, maxSeedUsers)
	probs = checkRange(probs, "--messages", c.Messages, 0, maxSeedMessages)
	probs = checkRange(probs, "--members-per-matter", c.MembersPerMatter, 2, max(2, min(c.Users, maxSeedMembers)))
	if int64(c.Matters)*int64(c.MembersPerMatter) > maxSeedMembers {
		probs = append(probs, fmt.Sprintf("--matters × --members-per-matter must be at most %d (got %d)", maxSeedMembers, int64(c.Matters)*int64(c.MembersPerMatter)))
	}
	if !(c.ReadFraction >= 0 && c.ReadFraction <= 1) {
		probs = append(probs, fmt.Sprintf("--read-fraction must be between 0 and 1 (got %v)", c.ReadFraction))
	}
	probs = checkRange(probs, "--days", c.Days, 1, 36_500)
	c.until = time.Now().UTC().Truncate(24 * time.Hour)
	if c.Until != "" {
		t, err := time.Parse(time.RFC3339, c.Until)
		if err != nil {
			probs = append(probs, fmt.Sprintf("--until: %v", err))
		}
		c.until = t.UTC()
	}
	if c.BenchUsers != "" {
		probs = checkRange(probs, "--bench-matters", c.BenchMatters, 1, c.Matters)
	}
	if c.DatabaseURL == "" && c.DataDir == "" {
		probs = append(probs, "give --database-url or --data-dir")
	}
	return probs
}

// seedMain runs `parley bench seed-data`; args follow "seed-data".
func seedMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley bench seed-data", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c := &seedConfig{}
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, seedUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(stderr, "parley bench seed-data: %v\nRun 'parley bench seed-data --help' for usage.\n", err)
		return exitUsage
	}
	probs := c.validate()
	if fs.NArg() > 0 {
		probs = append(probs, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if len(probs) > 0 {
		for _, p := range probs {
			fmt.Fprintf(stderr, "parley bench seed-data: %s\n", p)
		}
		fmt.Fprintln(stderr, "Run 'parley bench seed-data --help' for usage.")
		return exitUsage
	}
	var progress io.Writer
	if !c.Quiet {
		progress = stderr
	}
	sum, err := seed(ctx, c, progress)
	if sum != nil {
		if werr := sum.write(stdout, c.JSONPath); werr != nil {
			fmt.Fprintf(stderr, "parley bench seed-data: writing the summary: %v\n", werr)
			return exitFailure
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "parley bench seed-data: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// ---- The plan: every row, decided before anything is written ----

// seedPlan is the generated dataset in compact form. Users, matters and
// messages get ids 1..n in order, so index i is id i+1. Bodies, names and
// read times are derived while writing.
type seedPlan struct {
	c     *seedConfig
	start time.Time // first message; the last is at c.until

	members [][]int32 // [matter] user indexes; the first members talk most
	// msgMatter, msgSender and msgPos describe message i: its matter, its
	// sender (user index) and its position among its matter's messages.
	msgMatter []int32
	msgSender []int32
	msgPos    []int32
	perMatter []int32 // messages per matter
	// readUpTo[m][j] is how many of matter m's first messages member j has
	// read (every one of them not sent by that member).
	readUpTo [][]int32
}

// Shapes of the skews: matter k of the busiest-first order gets messages in
// proportion to (matterZipfV + k)^-matterZipfS (with 1,000 matters, about
// 5% go to the busiest, 0.015% to the quietest); member j of a matter sends
// in proportion to (1 + j)^-senderZipfS.
const (
	matterZipfS  = 1.1
	matterZipfV  = 5
	senderZipfS  = 1.2
	userZipfS    = 1.1
	userZipfV    = 10
	coverShare   = 0.7 // membership slots dealt from a shuffled deck of all users; the rest go to popular users
	readDelayMax = 30 * 60
)

// newSeedPlan draws the dataset from c.Seed.
func newSeedPlan(c *seedConfig) *seedPlan {
	r := rand.New(rand.NewPCG(c.Seed, 0x5eed_da7a))
	p := &seedPlan{c: c, start: c.until.Add(-time.Duration(c.Days) * 24 * time.Hour)}

	// Members: most slots walk a shuffled deck of users, so nearly everyone
	// belongs somewhere; the rest go to a few popular users (zipf), who end
	// up in many matters.
	deck := r.Perm(c.Users)
	popular := r.Perm(c.Users)
	userZipf := rand.NewZipf(r, userZipfS, userZipfV, uint64(c.Users-1))
	next := 0
	p.members = make([][]int32, c.Matters)
	in := map[int32]bool{}
	for m := range p.members {
		clear(in)
		mem := make([]int32, 0, c.MembersPerMatter)
		for len(mem) < c.MembersPerMatter {
			var u int32
			if r.Float64() < coverShare {
				u = int32(deck[next%c.Users])
				next++
			} else {
				u = int32(popular[userZipf.Uint64()])
			}
			for in[u] { // taken: the next user not in this matter (exists: members ≤ users)
				u = (u + 1) % int32(c.Users)
			}
			in[u] = true
			mem = append(mem, u)
		}
		p.members[m] = mem
	}

	// Messages: the matter from a zipf over a shuffled order of matters,
	// the sender from a zipf over its members.
	order := r.Perm(c.Matters)
	matterZipf := rand.NewZipf(r, matterZipfS, matterZipfV, uint64(c.Matters-1))
	senderZipf := rand.NewZipf(r, senderZipfS, 1, uint64(c.MembersPerMatter-1))
	p.msgMatter = make([]int32, c.Messages)
	p.msgSender = make([]int32, c.Messages)
	p.msgPos = make([]int32, c.Messages)
	p.perMatter = make([]int32, c.Matters)
	for i := range c.Messages {
		m := int32(order[matterZipf.Uint64()])
		p.msgMatter[i] = m
		p.msgSender[i] = p.members[m][senderZipf.Uint64()]
		p.msgPos[i] = p.perMatter[m]
		p.perMatter[m]++
	}

	// Read state: member j of matter m has read its first p·n messages with
	// p = U^a, whose mean is 1/(1+a) = F.
	p.readUpTo = make([][]int32, c.Matters)
	for m := range p.readUpTo {
		p.readUpTo[m] = make([]int32, c.MembersPerMatter)
		for j := range p.readUpTo[m] {
			var frac float64
			switch f := c.ReadFraction; {
			case f >= 1:
				frac = 1
			case f > 0:
				frac = math.Pow(r.Float64(), (1-f)/f)
			}
			p.readUpTo[m][j] = int32(math.Round(frac * float64(p.perMatter[m])))
		}
	}
	return p
}

// messageTime spreads the messages evenly from start to until, so ids and
// times increase together.
func (p *seedPlan) messageTime(i int) time.Time {
	n := p.c.Messages
	if n <= 1 {
		return p.c.until
	}
	span := p.c.until.Sub(p.start)
	return p.start.Add(time.Duration(float64(span) * float64(i) / float64(n-1))).Truncate(time.Microsecond)
}

func (p *seedPlan) matterCreated(m int) time.Time {
	return p.start.Add(-24*time.Hour + time.Duration(m)*time.Second)
}

func (p *seedPlan) userCreated(u int) time.Time {
	return p.start.Add(-48*time.Hour + time.Duration(u)*time.Second)
}

// readTime is when user read message i: up to half an hour after it was
// sent, never after until.
func (p *seedPlan) readTime(i int, user int32) time.Time {
	d := time.Duration((uint64(i)*7919+uint64(user)*104729)%readDelayMax) * time.Second
	t := p.messageTime(i).Add(d)
	if t.After(p.c.until) {
		return p.c.until
	}
	return t
}

// unread is what UnreadCounts must return for user: every matter of theirs
// (zeros included) → messages from others past their read point.
func (p *seedPlan) unread(user int32) map[int64]int {
	out := map[int64]int{}
	for m, mem := range p.members {
		for j, u := range mem {
			if u == user {
				out[int64(m+1)] = 0
				for i := range p.c.Messages {
					if p.msgMatter[i] == int32(m) && p.msgSender[i] != user && p.msgPos[i] >= p.readUpTo[m][j] {
						out[int64(m+1)]++
					}
				}
			}
		}
	}
	return out
}

// busiest returns the n matters with the most messages (ties: lower index).
func (p *seedPlan) busiest(n int) []int {
	idx := make([]int, len(p.perMatter))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p.perMatter[idx[a]] > p.perMatter[idx[b]] })
	return idx[:min(n, len(idx))]
}

var (
	firstNames = strings.Fields("Ada Alan Barbara Brian Carol Chen Dana Dmitri Elena Emeka Fatima Felix Grace Hiro Ines Ivan Jana Jonas Kamala Karl Lena Luis Maya Mohammed Nadia Noah Olga Omar Priya Pablo Quinn Rosa Sam Sofia Tariq Tessa Uma Victor Wen Yara Zoe")
	lastNames  = strings.Fields("Adams Becker Costa Dubois Eriksen Fischer Garcia Hansen Ito Jensen Kowalski Lopez Müller Nakamura Okafor Petrov Quinn Rossi Silva Tanaka Ueda Varga Weber Xu Yilmaz Zhang")
	bodyWords  = strings.Fields("the a to and of we I you it is that for on this can please let's check with the client about deadline draft contract filing hearing review notes call tomorrow today next week agreed sent updated attached version thanks ok sure meeting court brief invoice signed scan email question answer later soon morning afternoon done pending urgent")
)

func userName(u int) string {
	return fmt.Sprintf("%s %s %d", firstNames[u%len(firstNames)], lastNames[(u/len(firstNames))%len(lastNames)], u+1)
}

func userEmail(u int) string { return fmt.Sprintf("seed-user-%d@parley.invalid", u+1) }

// body makes a message text of 3..40 words, mostly short.
func body(r *rand.Rand, b *strings.Builder) string {
	b.Reset()
	n := 3 + int(r.ExpFloat64()*8)
	n = min(n, 40)
	for w := range n {
		if w > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(bodyWords[r.IntN(len(bodyWords))])
	}
	if r.IntN(4) == 0 {
		b.WriteByte('?')
	} else {
		b.WriteByte('.')
	}
	return b.String()
}

// ---- Writing ----

// seedTable is one table's load: its columns and a row source. next fills
// dst with the next row and reports false when there is none.
type seedTable struct {
	name string
	cols []string
	next func(dst []any) bool
}

// seedLoader writes rows in bulk: COPY on PostgreSQL, multi-row INSERTs on
// SQLite. rows counts what has been written so far (for progress).
type seedLoader interface {
	load(ctx context.Context, t seedTable, rows *atomic.Int64) error
	finish(ctx context.Context) error // sequences, statistics
	close() error
}

// seedSummary is what seed-data prints at the end.
type seedSummary struct {
	Dialect        string             `json:"dialect"`
	Database       string             `json:"database"`
	Seed           uint64             `json:"seed"`
	Rows           map[string]int64   `json:"rows"`
	Seconds        map[string]float64 `json:"seconds"`
	TotalSeconds   float64            `json:"total_seconds"`
	Receipts       int64              `json:"read_receipts"`        // (message, reader) pairs the read ranges derive
	ReadFraction   float64            `json:"read_fraction_actual"` // receipts / (messages × other members)
	BusiestMatter  int64              `json:"busiest_matter_messages"`
	QuietestMatter int64              `json:"quietest_matter_messages"`
	BenchUsers     string             `json:"bench_users_file,omitempty"`
	Warnings       []string           `json:"warnings"`
	order          []string
}

func (s *seedSummary) write(w io.Writer, jsonPath string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "database\t%s (%s)\n", s.Database, s.Dialect)
	fmt.Fprintf(tw, "seed\t%d\n", s.Seed)
	for _, t := range s.order {
		n, secs := s.Rows[t], s.Seconds[t]
		rate := ""
		if secs > 0 {
			rate = fmt.Sprintf(", %.0f rows/s", float64(n)/secs)
		}
		fmt.Fprintf(tw, "%s\t%d rows in %.2fs%s\n", t, n, secs, rate)
	}
	for _, k := range []string{"hash password", "migrate", "plan", "finish"} {
		if v, ok := s.Seconds[k]; ok {
			fmt.Fprintf(tw, "%s\t%.2fs\n", k, v)
		}
	}
	fmt.Fprintf(tw, "messages per matter\t%d busiest, %d quietest\n", s.BusiestMatter, s.QuietestMatter)
	fmt.Fprintf(tw, "read receipts\t%d, derived from the read ranges\n", s.Receipts)
	fmt.Fprintf(tw, "read fraction\t%.3f of (message, other member) pairs\n", s.ReadFraction)
	if s.BenchUsers != "" {
		fmt.Fprintf(tw, "bench users\t%s\n", s.BenchUsers)
	}
	for _, wn := range s.Warnings {
		fmt.Fprintf(tw, "warning\t%s\n", wn)
	}
	fmt.Fprintf(tw, "total\t%.2fs\n", s.TotalSeconds)
	if err := tw.Flush(); err != nil {
		return err
	}
	if jsonPath == "" {
		return nil
	}
	if s.Warnings == nil {
		s.Warnings = []string{}
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonPath, append(b, '\n'), 0o644)
}

// seedKnownColumns are the columns seed-data fills (or leaves to their
// default on purpose), from persistence/migrations. A migration that adds a
// table or column makes seed-data warn, so derived state it does not know
// about (say, a per-member read pointer) is not silently left empty.
var seedKnownColumns = map[string][]string{
	"users":  {"id", "name", "email", "password_hash", "created_at"},
	"tokens": {"id", "user_id", "secret_hash", "expires_at", "last_used_at", "created_at"},
	// message_count: PostgreSQL's trigger counts the COPY's rows.
	"matters": {"id", "title", "created_at", "message_count"},
	// read_up_to: unused since migration 0007 (read_positions), left 0.
	"members":  {"matter_id", "user_id", "joined_at", "read_up_to", "read_seq"},
	"messages": {"id", "matter_id", "sender_id", "body", "created_at", "updated_at", "edited_at", "deleted_at"}, // no deleted messages: deleted_at NULL
	// Reads are watermark moves (read_positions, read_ranges), as reading a
	// matter up to a message makes them; no single reads (message_reads).
	"read_positions":    {"matter_id", "user_id", "up_to"},
	"read_ranges":       {"matter_id", "user_id", "from_id", "to_id", "read_at"},
	"message_reads":     {"message_id", "user_id", "read_at"},
	"schema_migrations": nil, // persistence's own
}

// seed migrates the database, generates the plan and writes it.
func seed(ctx context.Context, c *seedConfig, progress io.Writer) (*seedSummary, error) {
	t0 := time.Now()
	sum := &seedSummary{Seed: c.Seed, Rows: map[string]int64{}, Seconds: map[string]float64{}}
	defer func() { sum.TotalSeconds = round(time.Since(t0).Seconds(), 2) }()
	lap := func(name string, since time.Time) { sum.Seconds[name] = round(time.Since(since).Seconds(), 2) }

	// The schema is persistence's: open and migrate exactly as serve does.
	t := time.Now()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := persistence.Open(octx, c.DatabaseURL, c.DataDir)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening the database: %w", err)
	}
	sum.Dialect = st.Dialect()
	if err := st.Migrate(octx); err != nil {
		cancel()
		st.Close()
		return nil, fmt.Errorf("migrating the database: %w", err)
	}
	cancel()
	if err := st.Close(); err != nil {
		return nil, err
	}
	lap("migrate", t)

	var ld seedLoader
	if c.DatabaseURL != "" {
		sum.Database = redactURL(c.DatabaseURL)
		ld, err = openPGLoader(ctx, c.DatabaseURL)
	} else {
		path := filepath.Join(c.DataDir, "parley.db")
		sum.Database = path
		ld, err = openSQLiteLoader(ctx, path)
	}
	if err != nil {
		return sum, err
	}
	defer ld.close()
	db := ld.(interface{ sqlDB() *sql.DB }).sqlDB()
	var users int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM users").Scan(&users); err != nil {
		return sum, fmt.Errorf("counting users: %w", err)
	}
	if users > 0 {
		return sum, fmt.Errorf("the database already has %d users: seed-data fills an empty database (a fresh --data-dir, or a new PostgreSQL database or schema)", users)
	}
	schema, err := schemaColumns(ctx, db, sum.Dialect)
	if err != nil {
		return sum, err
	}
	sum.Warnings = unknownColumns(schema)

	t = time.Now()
	hash, err := chat.HashPassword(c.Password)
	if err != nil {
		return sum, fmt.Errorf("--password: %w", err)
	}
	lap("hash password", t)

	t = time.Now()
	p := newSeedPlan(c)
	lap("plan", t)
	var minN, maxN int32 = math.MaxInt32, 0
	for _, n := range p.perMatter {
		minN, maxN = min(minN, n), max(maxN, n)
	}
	sum.BusiestMatter, sum.QuietestMatter = int64(maxN), int64(minN)

	var rows atomic.Int64
	var phase atomic.Value
	phase.Store("")
	prog := startProgress(progress, "seed-data", func() string {
		return fmt.Sprintf("%s: %d rows", phase.Load(), rows.Load())
	})
	defer prog.stop()

	for _, tb := range p.tables(hash) {
		phase.Store(tb.name)
		rows.Store(0)
		t := time.Now()
		if err := ld.load(ctx, tb, &rows); err != nil {
			return sum, fmt.Errorf("loading %s: %w", tb.name, err)
		}
		sum.order = append(sum.order, tb.name)
		sum.Rows[tb.name] = rows.Load()
		lap(tb.name, t)
	}
	phase.Store("finish")
	rows.Store(0)
	t = time.Now()
	if err := ld.finish(ctx); err != nil {
		return sum, err
	}
	lap("finish", t)
	prog.stop()

	sum.Receipts = p.readCount()
	if pairs := int64(c.Messages) * int64(c.MembersPerMatter-1); pairs > 0 {
		sum.ReadFraction = round(float64(sum.Receipts)/float64(pairs), 3)
	}
	if c.BenchUsers != "" {
		if err := p.writeBenchUsers(c.BenchUsers); err != nil {
			return sum, err
		}
		sum.BenchUsers = c.BenchUsers
	}
	return sum, nil
}

// tables lists the loads in foreign-key order. Each member has read a
// prefix of their matter's messages (readUpTo), in visits: read_positions
// holds where the last visit ended, read_ranges one row per visit (see
// rangeSource), and read_seq is 1 when they read anything.
func (p *seedPlan) tables(hash string) []seedTable {
	c := p.c
	upTo := p.readUpToIDs()
	u, m, mm, pm, i := 0, 0, 0, 0, 0
	r := rand.New(rand.NewPCG(c.Seed, 0xb0d1e5))
	var sb strings.Builder
	return []seedTable{
		{name: "users", cols: []string{"id", "name", "email", "password_hash", "created_at"}, next: func(d []any) bool {
			if u == c.Users {
				return false
			}
			d[0], d[1], d[2], d[3], d[4] = int64(u+1), userName(u), userEmail(u), hash, p.userCreated(u)
			u++
			return true
		}},
		{name: "matters", cols: []string{"id", "title", "created_at"}, next: func(d []any) bool {
			if m == c.Matters {
				return false
			}
			d[0], d[1], d[2] = int64(m+1), fmt.Sprintf("Matter %d: %s v. %s", m+1, lastNames[m%len(lastNames)], lastNames[(m/len(lastNames)+m+1)%len(lastNames)]), p.matterCreated(m)
			m++
			return true
		}},
		{name: "members", cols: []string{"matter_id", "user_id", "joined_at", "read_seq"}, next: func(d []any) bool {
			if mm == c.Matters*c.MembersPerMatter {
				return false
			}
			mt, j := mm/c.MembersPerMatter, mm%c.MembersPerMatter
			d[0], d[1], d[2], d[3] = int64(mt+1), int64(p.members[mt][j])+1, p.matterCreated(mt), int64(0)
			if upTo[mt][j] > 0 {
				d[3] = int64(1)
			}
			mm++
			return true
		}},
		{name: "messages", cols: []string{"id", "matter_id", "sender_id", "body", "created_at", "updated_at", "edited_at"}, next: func(d []any) bool {
			if i == c.Messages {
				return false
			}
			at := p.messageTime(i)
			d[0], d[1], d[2], d[3], d[4], d[5], d[6] = int64(i+1), int64(p.msgMatter[i])+1, int64(p.msgSender[i])+1, body(r, &sb), at, at, nil
			if r.IntN(100) == 0 { // about 1% edited a few minutes later
				e := at.Add(3 * time.Minute)
				d[5], d[6] = e, e
			}
			i++
			return true
		}},
		{name: "read_positions", cols: []string{"matter_id", "user_id", "up_to"}, next: func(d []any) bool {
			for ; pm < c.Matters*c.MembersPerMatter; pm++ {
				mt, j := pm/c.MembersPerMatter, pm%c.MembersPerMatter
				if upTo[mt][j] > 0 {
					d[0], d[1], d[2] = int64(mt+1), int64(p.members[mt][j])+1, upTo[mt][j]
					pm++
					return true
				}
			}
			return false
		}},
		{name: "read_ranges", cols: []string{"matter_id", "user_id", "from_id", "to_id", "read_at"}, next: p.rangeSource()},
	}
}

// readUpToIDs is, per matter and member, the id of the last message the
// member has read (0 if none).
func (p *seedPlan) readUpToIDs() [][]int64 {
	out := make([][]int64, p.c.Matters)
	for m := range out {
		out[m] = make([]int64, p.c.MembersPerMatter)
	}
	for i := range p.c.Messages {
		m, pos := p.msgMatter[i], p.msgPos[i]
		for j, n := range p.readUpTo[m] {
			if n == pos+1 {
				out[m][j] = int64(i + 1)
			}
		}
	}
	return out
}

// visitsPerMatter is about how many visits a member makes to read a busy
// matter's history (quiet matters: a visit per visitMinMessages or so).
const (
	visitsPerMatter  = 30
	visitMinMessages = 10
)

// rangeSource yields the read_ranges rows: member j of matter m read its
// first readUpTo[m][j] messages in visits of a random number of messages
// (exponential, mean max(visitMinMessages, messages / visitsPerMatter)),
// each visit read at up to half an hour after its last message was sent
// (never before the previous visit). A visit that marked nothing (the
// member's own messages only) leaves no row, as in the server.
func (p *seedPlan) rangeSource() func(d []any) bool {
	byMatter := make([][]int32, p.c.Matters) // message indexes, in id order
	for i := range p.c.Messages {
		byMatter[p.msgMatter[i]] = append(byMatter[p.msgMatter[i]], int32(i))
	}
	r := rand.New(rand.NewPCG(p.c.Seed, 0x7ea5))
	m, j := 0, 0
	pos := int32(0)    // next unread position of member j in matter m
	var last time.Time // when the member's previous visit was read
	return func(d []any) bool {
		for m < p.c.Matters {
			msgs, n := byMatter[m], p.readUpTo[m][j]
			u := p.members[m][j]
			mean := max(visitMinMessages, float64(len(msgs))/visitsPerMatter)
			for pos < n {
				end := min(n, pos+1+int32(r.ExpFloat64()*mean)) // this visit reads positions [pos, end)
				from := int64(0)
				if pos > 0 {
					from = int64(msgs[pos-1]) + 1
				}
				marked := false
				for _, i := range msgs[pos:end] {
					marked = marked || p.msgSender[i] != u
				}
				pos = end
				lastMsg := int(msgs[end-1])
				if at := p.readTime(lastMsg, u); at.After(last) {
					last = at
				}
				if marked {
					d[0], d[1], d[2], d[3], d[4] = int64(m+1), int64(u)+1, from, int64(lastMsg)+1, last
					return true
				}
			}
			pos, last = 0, time.Time{}
			if j++; j == p.c.MembersPerMatter {
				m, j = m+1, 0
			}
		}
		return false
	}
}

// readCount is how many (message, reader) receipts the ranges derive:
// every message of the read prefixes not sent by the reader.
func (p *seedPlan) readCount() int64 {
	var n int64
	for i := range p.c.Messages {
		m, pos, sender := p.msgMatter[i], p.msgPos[i], p.msgSender[i]
		for j, u := range p.members[m] {
			if u != sender && pos < p.readUpTo[m][j] {
				n++
			}
		}
	}
	return n
}

// writeBenchUsers writes the members of the busiest matters as a users file
// for bench chat, each with the matters (of those) it belongs to.
func (p *seedPlan) writeBenchUsers(path string) error {
	byUser := map[int32][]apiID{}
	var order []int32
	for _, m := range p.busiest(p.c.BenchMatters) {
		for _, u := range p.members[m] {
			if _, ok := byUser[u]; !ok {
				order = append(order, u)
			}
			byUser[u] = append(byUser[u], apiID(strconv.Itoa(m+1)))
		}
	}
	users := make([]chatUser, 0, len(order))
	for _, u := range order {
		users = append(users, chatUser{Email: userEmail(int(u)), Password: p.c.Password, ID: apiID(strconv.Itoa(int(u) + 1)), Matters: byUser[u]})
	}
	b, err := json.MarshalIndent(users, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("--bench-users: %w", err)
	}
	return nil
}

// redactURL drops the password from a database URL for printing.
func redactURL(s string) string {
	i := strings.Index(s, "://")
	at := strings.LastIndex(s, "@")
	if i < 0 || at < i {
		return s
	}
	cred := s[i+3 : at]
	if user, _, ok := strings.Cut(cred, ":"); ok {
		return s[:i+3] + user + ":xxxxx" + s[at:]
	}
	return s
}

// schemaColumns maps each table of the migrated schema to its columns.
func schemaColumns(ctx context.Context, db *sql.DB, dialect string) (map[string][]string, error) {
	cols := map[string][]string{}
	var q string
	if dialect == "postgres" {
		q = `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`
	} else {
		q = `SELECT t.name, c.name FROM sqlite_master t, pragma_table_info(t.name) c WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite_%' ORDER BY t.name, c.cid`
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("reading the schema: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t, col string
		if err := rows.Scan(&t, &col); err != nil {
			return nil, fmt.Errorf("reading the schema: %w", err)
		}
		cols[t] = append(cols[t], col)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the schema: %w", err)
	}
	return cols, nil
}

// unknownColumns lists tables and columns of the schema that seed-data does
// not know.
func unknownColumns(cols map[string][]string) []string {
	var warn []string
	for t, cs := range cols {
		known, ok := seedKnownColumns[t]
		if !ok {
			warn = append(warn, fmt.Sprintf("table %s is not filled by seed-data", t))
			continue
		}
		if t == "schema_migrations" {
			continue
		}
		for _, col := range cs {
			if !slices.Contains(known, col) {
				warn = append(warn, fmt.Sprintf("column %s.%s is left to its default by seed-data", t, col))
			}
		}
	}
	sort.Strings(warn)
	return warn
}
