package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/httpapi"
	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/storetest"
	"golang.org/x/crypto/bcrypt"
)

// seedDB is where a seed test writes: the arguments of persistence.Open.
type seedDB struct {
	name string
	url  string // PostgreSQL (a schema of its own)
	dir  string // embedded
}

func (d seedDB) flags() []string {
	if d.url != "" {
		return []string{"--database-url", d.url}
	}
	return []string{"--data-dir", d.dir}
}

func (d seedDB) open(t *testing.T) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if d.url != "" {
		db, err = sql.Open("postgres", d.url)
	} else {
		db, err = sql.Open("sqlite", "file:"+filepath.Join(d.dir, "parley.db")+"?_pragma=busy_timeout(5000)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func seedDBs(t *testing.T) []func(*testing.T) seedDB {
	return []func(*testing.T) seedDB{
		func(t *testing.T) seedDB { return seedDB{name: "embedded", dir: t.TempDir()} },
		func(t *testing.T) seedDB { return seedDB{name: "postgres", url: storetest.PostgresURL(t)} },
	}
}

// lowCost makes the generated hash cheap to make and to check.
func lowCost(t *testing.T) {
	old := chat.BcryptCost
	chat.BcryptCost = bcrypt.MinCost
	t.Cleanup(func() { chat.BcryptCost = old })
}

// smallSeed are the sizes of the tests' seeds.
var smallSeed = []string{"--matters", "20", "--users", "100", "--messages", "5000", "--members-per-matter", "6",
	"--read-fraction", "0.8", "--seed", "42", "--until", "2030-01-02T00:00:00Z", "--password", "seeded pw", "--quiet"}

// smallPlan is the plan those flags make.
func smallPlan(t *testing.T) *seedPlan {
	c := &seedConfig{Matters: 20, Users: 100, Messages: 5000, MembersPerMatter: 6, ReadFraction: 0.8, Days: 90,
		Seed: 42, Until: "2030-01-02T00:00:00Z", Password: "seeded pw", DataDir: "x"}
	if probs := c.validate(); len(probs) > 0 {
		t.Fatal(probs)
	}
	return newSeedPlan(c)
}

func TestSeedData(t *testing.T) {
	lowCost(t)
	for _, mk := range seedDBs(t) {
		d := mk(t)
		t.Run(d.name, func(t *testing.T) {
			users := filepath.Join(t.TempDir(), "users.json")
			summary := filepath.Join(t.TempDir(), "summary.json")
			args := append(append([]string{"seed-data"}, smallSeed...), d.flags()...)
			args = append(args, "--bench-users", users, "--bench-matters", "3", "--json", summary)
			code, stdout, stderr := runMain(t, args...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
			}
			p := smallPlan(t)
			want := map[string]int64{"users": 100, "matters": 20, "members": 120, "messages": 5000,
				"read_positions": p.readers(), "read_ranges": p.visits()}

			var sum seedSummary
			readJSON(t, summary, &sum)
			if !reflect.DeepEqual(sum.Rows, want) {
				t.Errorf("summary rows %v, want %v", sum.Rows, want)
			}
			db := d.open(t)
			for table, n := range want {
				var got int64
				if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != n {
					t.Errorf("%s: %d rows, want %d", table, got, n)
				}
			}
			// A skew, and read state that leaves backlogs of different sizes.
			if sum.BusiestMatter < 3*sum.QuietestMatter {
				t.Errorf("messages per matter %d..%d: no busy matters", sum.QuietestMatter, sum.BusiestMatter)
			}
			if sum.ReadFraction < 0.7 || sum.ReadFraction > 0.9 {
				t.Errorf("read fraction %v, want about 0.8", sum.ReadFraction)
			}
			// Visits: several per member, far fewer than the receipts they stand for.
			if n := want["read_ranges"]; n < 2*want["read_positions"] || 10*n > sum.Receipts {
				t.Errorf("%d read ranges for %d readers and %d receipts", n, want["read_positions"], sum.Receipts)
			}

			// The store, through the migrated schema, agrees with the plan.
			st, err := persistence.Open(context.Background(), d.url, d.dir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ctx := context.Background()
			backlogs := map[int]bool{}
			for u := range int32(100) {
				got, err := st.UnreadCounts(ctx, int64(u)+1)
				if err != nil {
					t.Fatal(err)
				}
				exp := p.unread(u)
				if !reflect.DeepEqual(got, exp) {
					t.Fatalf("user %d: unread %v, want %v", u+1, got, exp)
				}
				for _, n := range got {
					backlogs[min(n/100, 5)] = true
				}
			}
			if len(backlogs) < 3 {
				t.Errorf("unread backlogs fall in only %d buckets of 100: %v", len(backlogs), backlogs)
			}
			u, err := st.UserByEmail(ctx, userEmail(0))
			if err != nil || !chat.CheckPassword(u.PasswordHash, "seeded pw") {
				t.Errorf("user 1: %v, password matches: %v", err, err == nil && chat.CheckPassword(u.PasswordHash, "seeded pw"))
			}
			msgs, _, err := st.ListMessages(ctx, persistence.MessageQuery{MatterID: 1, Limit: 100, AfterID: 0, Page: 1})
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(msgs); i++ {
				if !msgs[i].CreatedAt.Before(msgs[i-1].CreatedAt) {
					t.Fatalf("message %d at %v is not older than %d at %v", msgs[i].ID, msgs[i].CreatedAt, msgs[i-1].ID, msgs[i-1].CreatedAt)
				}
			}
			// The id sequences moved past the explicit ids.
			nu, err := st.CreateUser(ctx, "after the seed", "after@example.com", u.PasswordHash)
			if err != nil || nu.ID != 101 {
				t.Errorf("new user %+v, %v; want id 101", nu, err)
			}
			mt, err := st.CreateMatter(ctx, "after the seed")
			if err != nil || mt.ID != 21 {
				t.Errorf("new matter %+v, %v; want id 21", mt, err)
			}

			checkReadPointers(t, db)
			if d.url == "" {
				var n int
				if err := db.QueryRow("SELECT COUNT(*) FROM pragma_foreign_key_check").Scan(&n); err != nil || n != 0 {
					t.Errorf("foreign key violations: %d, %v", n, err)
				}
			}

			var file []chatUser
			readJSON(t, users, &file)
			if len(file) < 6 {
				t.Fatalf("bench users file has %d users", len(file))
			}
			for _, fu := range file {
				id, _ := strconv.Atoi(string(fu.ID))
				for _, m := range fu.Matters {
					ok, err := st.IsMember(ctx, mustInt(t, m), int64(id))
					if err != nil || !ok {
						t.Errorf("users file: %s in matter %s: member %v, %v", fu.Email, m, ok, err)
					}
				}
			}

			// Seeding twice is refused rather than mixed.
			code, _, stderr = runMain(t, append(append([]string{"seed-data"}, smallSeed...), d.flags()...)...)
			if code != exitFailure || !strings.Contains(stderr, "already has 101 users") {
				t.Errorf("second seed: exit %d, %s", code, stderr)
			}
		})
	}
}

// checkReadPointers checks the read state's invariants: every message from
// others at or below a member's watermark is in one of their read ranges,
// the ranges of a member never overlap or pass the watermark, and read
// times do not go back as the ranges go forward.
func checkReadPointers(t *testing.T, db *sql.DB) {
	t.Helper()
	for what, q := range map[string]string{
		"messages at or below a watermark not in a range": `SELECT COUNT(*) FROM read_positions p
			JOIN messages m ON m.matter_id = p.matter_id AND m.id <= p.up_to AND m.sender_id <> p.user_id
			WHERE NOT EXISTS (SELECT 1 FROM read_ranges g
				WHERE g.matter_id = p.matter_id AND g.user_id = p.user_id AND g.from_id < m.id AND g.to_id >= m.id)`,
		"ranges past the watermark": `SELECT COUNT(*) FROM read_ranges g JOIN read_positions p
			ON p.matter_id = g.matter_id AND p.user_id = g.user_id WHERE g.to_id > p.up_to OR g.from_id >= g.to_id`,
		"overlapping or backward ranges": `SELECT COUNT(*) FROM read_ranges a JOIN read_ranges b
			ON b.matter_id = a.matter_id AND b.user_id = a.user_id AND b.to_id > a.to_id
			WHERE b.from_id < a.to_id OR b.read_at < a.read_at`,
	} {
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d %s", n, what)
		}
	}
}

func mustInt(t *testing.T, id apiID) int64 {
	n, err := strconv.ParseInt(string(id), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSeedPlanIsReproducible(t *testing.T) {
	a, b := smallPlan(t), smallPlan(t)
	if !reflect.DeepEqual(a.members, b.members) || !reflect.DeepEqual(a.msgSender, b.msgSender) || !reflect.DeepEqual(a.readUpTo, b.readUpTo) {
		t.Fatal("the same seed made different plans")
	}
	rows := func(p *seedPlan) []any {
		var out []any
		for _, tb := range p.tables("h") {
			d := make([]any, len(tb.cols))
			for tb.next(d) {
				out = append(out, slices.Clone(d)...)
			}
		}
		return out
	}
	if !reflect.DeepEqual(rows(a), rows(b)) {
		t.Fatal("the same seed made different rows")
	}
	c := *a.c
	c.Seed = 43
	if reflect.DeepEqual(newSeedPlan(&c).msgMatter, a.msgMatter) {
		t.Fatal("another seed made the same messages")
	}
}

func TestSeedDataFlags(t *testing.T) {
	code, _, stderr := runMain(t, "seed-data", "--members-per-matter", "1", "--read-fraction", "1.5", "--users", "1", "--data-dir", t.TempDir())
	if code != exitUsage {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--members-per-matter", "--read-fraction", "--users"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("no complaint about %s in %s", want, stderr)
		}
	}
}

// TestChatOnSeededDatabase runs bench chat with the seed's users file
// against the real chat server on the seeded embedded database: the seeded
// users log in with the seed's password and send into their busy matters.
func TestChatOnSeededDatabase(t *testing.T) {
	lowCost(t)
	dir := t.TempDir()
	users := filepath.Join(t.TempDir(), "users.json")
	args := append(append([]string{"seed-data"}, smallSeed...), "--data-dir", dir, "--bench-users", users, "--bench-matters", "2")
	if code, stdout, stderr := runMain(t, args...); code != exitOK {
		t.Fatalf("seed: exit %d\n%s\n%s", code, stdout, stderr)
	}
	port := startChatServer(t, dir)
	var r struct {
		Completed      bool  `json:"completed"`
		Matters        int   `json:"matters"`
		Acked          int64 `json:"messages_acked"`
		Expected       int64 `json:"expected"`
		Delivered      int64 `json:"delivered"`
		Unexpected     int64 `json:"unexpected"`
		HistoryChecked int64 `json:"history_checked"`
		HistoryMissing int64 `json:"history_missing"`
	}
	stdout := runReport(t, &r, "chat", "--users-file", users, "--rate", "20", "--duration", "1s", "--drain", "500ms",
		"--port", port, "--app-id", "app-1", "--key", "key-1", "--secret", "secret-1", "--quiet")
	// 20 messages over 2 matters of 6 members: 5 recipients each.
	if !r.Completed || r.Matters != 2 || r.Acked != 20 || r.Expected != 100 || r.Delivered != 100 || r.Unexpected != 0 {
		t.Errorf("report %+v\n%s", r, stdout)
	}
	if r.HistoryChecked != 20 || r.HistoryMissing != 0 {
		t.Errorf("history %+v", r)
	}
}

// startChatServer runs Parley's server (WebSocket, HTTP API, chat) on the
// embedded database in dir, on a free loopback port.
func startChatServer(t *testing.T, dir string) string {
	t.Helper()
	cfg, err := config.Load(nil, func(k string) (string, bool) {
		v, ok := map[string]string{"PARLEY_APP_ID": "app-1", "PARLEY_APP_KEY": "key-1", "PARLEY_APP_SECRET": "secret-1", "PARLEY_DATA_DIR": dir}[k]
		return v, ok
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.APIRateLimit = 0
	st, err := persistence.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	node := actors.NewNode(cfg, log)
	api := httpapi.New(cfg, node, log)
	svc := chat.Mount(api.Engine(), chat.Deps{Config: cfg, Store: st, Node: node, App: &cfg.Apps[0], Log: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		svc.Stop()
		node.Stop()
		st.Close()
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestChatUsersFileWithMatters: users listing their own matters make the
// matters, without --matter-ids, and the history check starts at the
// run's first message instead of paging through an older history.
func TestChatUsersFileWithMatters(t *testing.T) {
	f := newFakePusher(t)
	f.chat = &fakeChat{users: map[string]string{}, matters: map[string][]string{"7": {"1", "2", "3"}, "8": {"3", "4"}}}
	var users []chatUser
	for i := 1; i <= 4; i++ {
		id := strconv.Itoa(i)
		f.chat.users["tok-"+id] = id
		u := chatUser{Email: "u" + id + "@x", Password: "pw", ID: apiID(id), Token: "tok-" + id}
		for m, mem := range f.chat.matters {
			if slices.Contains(mem, id) {
				u.Matters = append(u.Matters, apiID(m))
			}
		}
		users = append(users, u)
	}
	// An old history of 500 messages in matter 7.
	for range 500 {
		f.nextMsgID++
		f.messages["7"] = append(f.messages["7"], fakeMessage{ID: f.nextMsgID, Message: "old", MatterID: 7, SenderID: 1})
	}
	b, _ := json.Marshal(users)
	path := filepath.Join(t.TempDir(), "users.json")
	writeFile(t, path, b)
	args := append([]string{"chat", "--users-file", path, "--rate", "40", "--duration", "500ms", "--drain", "200ms"}, f.args()...)
	var r struct {
		Completed      bool  `json:"completed"`
		Matters        int   `json:"matters"`
		Expected       int64 `json:"expected"`
		Delivered      int64 `json:"delivered"`
		Unexpected     int64 `json:"unexpected"`
		HistoryChecked int64 `json:"history_checked"`
		HistoryMissing int64 `json:"history_missing"`
	}
	runReport(t, &r, args...)
	// 20 messages: 10 to matter 7 (2 other members), 10 to matter 8 (1).
	if !r.Completed || r.Matters != 2 || r.Expected != 30 || r.Delivered != 30 || r.Unexpected != 0 {
		t.Errorf("report %+v", r)
	}
	if r.HistoryChecked != 20 || r.HistoryMissing != 0 {
		t.Errorf("history %+v", r)
	}
	if f.pageQueries.Load() != 0 || f.afterQueries.Load() == 0 {
		t.Errorf("history walked %d pages and %d after_id requests; want after_id only", f.pageQueries.Load(), f.afterQueries.Load())
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSeedKeepsForeignKeys: the PostgreSQL load drops foreign keys for the
// COPY and must put every one back, the same.
func TestSeedKeepsForeignKeys(t *testing.T) {
	lowCost(t)
	d := seedDB{name: "postgres", url: storetest.PostgresURL(t)}
	st, err := persistence.Open(context.Background(), d.url, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	db := d.open(t)
	fks := func() []string {
		rows, err := db.Query(`SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
			WHERE contype = 'f' AND connamespace = current_schema()::regnamespace ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	before := fks()
	if len(before) < 6 {
		t.Fatalf("foreign keys before: %v", before)
	}
	args := append(append([]string{"seed-data"}, smallSeed...), d.flags()...)
	if code, stdout, stderr := runMain(t, args...); code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if after := fks(); !reflect.DeepEqual(after, before) {
		t.Fatalf("foreign keys after the seed:\n%v\nbefore:\n%v", after, before)
	}
	// And they are enforced.
	if _, err := db.Exec(`INSERT INTO message_reads (message_id, user_id, read_at) VALUES (1, 100000, now())`); err == nil {
		t.Fatal("a read by a missing user was accepted")
	}
}

// readers counts the members who have read anything (read_positions rows).
func (p *seedPlan) readers() int64 {
	var n int64
	for _, ups := range p.readUpTo {
		for _, up := range ups {
			if up > 0 {
				n++
			}
		}
	}
	return n
}

// visits counts the rows rangeSource makes (read_ranges rows).
func (p *seedPlan) visits() int64 {
	var n int64
	next, d := p.rangeSource(), make([]any, 5)
	for next(d) {
		n++
	}
	return n
}
