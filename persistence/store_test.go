package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/persistence/storetest"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
)

// backend makes empty databases: newDB returns the (databaseURL, dataDir)
// pair to pass to Open, and may be opened more than once.
type backend struct {
	name  string
	newDB func(t testing.TB) (databaseURL, dataDir string)
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t testing.TB) (string, string) { return "", t.TempDir() }},
		{"postgres", func(t testing.TB) (string, string) { return storetest.PostgresURL(t), "" }},
	}
}

func openStore(t testing.TB, databaseURL, dataDir string) Store {
	t.Helper()
	s, err := Open(context.Background(), databaseURL, dataDir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// onEachBackend runs test as a subtest on each backend, with a migrated
// store of its own.
func onEachBackend(t *testing.T, test func(t *testing.T, b backend, s Store)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { test(t, b, newMigratedStore(t, b)) })
	}
}

func newMigratedStore(t testing.TB, b backend) Store {
	t.Helper()
	dbURL, dir := b.newDB(t)
	s := openStore(t, dbURL, dir)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// storeCase is a check of a Store, run on a freshly migrated one.
type storeCase struct {
	name string
	fn   func(t *testing.T, s Store)
}

// runSuite runs each case as a subtest on each backend (backend/case), each
// on a migrated store of its own.
func runSuite(t *testing.T, suite []storeCase) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { runCases(t, b, suite) })
	}
}

// runCases runs each case as a subtest on a migrated store of b's.
func runCases(t *testing.T, b backend, suite []storeCase) {
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newMigratedStore(t, b)) })
	}
}

// rawDB exposes the store's handle (the writer for SQLite) for checks that
// go around the Store API.
func rawDB(s Store) *sqlx.DB {
	switch s := s.(type) {
	case *sqliteStore:
		return s.w
	case *pgStore:
		return s.w
	}
	panic(fmt.Sprintf("unknown store %T", s))
}

func TestStore(t *testing.T) {
	suite := []storeCase{
		{"Users", testUsers},
		{"Tokens", testTokens},
		{"MattersAndMembers", testMattersAndMembers},
		{"Messages", testMessages},
		{"ListMessages", testListMessages},
		{"MarkRead", testMarkRead},
		{"UnreadCounts", testUnreadCounts},
		{"MarkReadUpTo", testMarkReadUpTo},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"MigrateTwice", testMigrateTwice},
		{"ConcurrentSendAndRead", testConcurrentSendAndRead},
		{"ClosedStore", testClosedStore},
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			runCases(t, b, suite)
			t.Run("ConcurrentMigrate", func(t *testing.T) { testConcurrentMigrate(t, b) })
			t.Run("TwoStoresOneDatabase", func(t *testing.T) { testTwoStores(t, b) })
		})
	}
}

func mustUser(t testing.TB, s Store, name string) User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), name, name+"@example.com", "hash-"+name)
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

func mustMatter(t testing.TB, s Store, title string, members ...User) Matter {
	t.Helper()
	ctx := context.Background()
	m, err := s.CreateMatter(ctx, title)
	if err != nil {
		t.Fatalf("CreateMatter: %v", err)
	}
	for _, u := range members {
		if err := s.AddMember(ctx, m.ID, u.ID); err != nil {
			t.Fatalf("AddMember: %v", err)
		}
	}
	return m
}

func mustSend(t *testing.T, s Store, m Matter, from User, body string) Message {
	t.Helper()
	msg, err := s.CreateMessage(context.Background(), m.ID, from.ID, body, time.Now())
	if err != nil {
		t.Fatalf("CreateMessage: %v", err)
	}
	return msg
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func testUsers(t *testing.T, s Store) {
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	u, err := s.CreateUser(ctx, "Alice", "Alice@Example.COM", "hash")
	if err != nil {
		t.Fatal(err)
	}
	if u.ID <= 0 || u.Name != "Alice" || u.Email != "alice@example.com" || u.PasswordHash != "hash" {
		t.Fatalf("created %+v", u)
	}
	if u.CreatedAt.Before(before) || u.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt %v", u.CreatedAt)
	}
	got, err := s.UserByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got != u {
		t.Fatalf("UserByID = %+v, want %+v", got, u)
	}
	for _, email := range []string{"alice@example.com", "ALICE@example.com", " Alice@Example.Com "} {
		got, err := s.UserByEmail(ctx, email)
		if err != nil {
			t.Fatalf("UserByEmail(%q): %v", email, err)
		}
		if got != u {
			t.Fatalf("UserByEmail(%q) = %+v, want %+v", email, got, u)
		}
	}

	_, err = s.CreateUser(ctx, "Other Alice", "ALICE@example.com", "x")
	wantErr(t, "duplicate email", err, ErrConflict)
	if errors.Is(err, ErrNotFound) {
		t.Fatal("conflict is also ErrNotFound")
	}
	_, err = s.UserByID(ctx, u.ID+1000)
	wantErr(t, "missing id", err, ErrNotFound)
	_, err = s.UserByEmail(ctx, "nobody@example.com")
	wantErr(t, "missing email", err, ErrNotFound)

	b, err := s.CreateUser(ctx, "Bob", "bob@example.com", "hash")
	if err != nil {
		t.Fatal(err)
	}
	if b.ID == u.ID {
		t.Fatal("ids not distinct")
	}

	js, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), "hash") {
		t.Fatalf("password hash leaked into JSON: %s", js)
	}
}

func testTokens(t *testing.T, s Store) {
	ctx := context.Background()
	u := mustUser(t, s, "tok")
	exp := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 5*3600))
	tok, err := s.CreateToken(ctx, u.ID, "abc123", &exp)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID <= 0 || tok.UserID != u.ID || tok.SecretHash != "abc123" || tok.LastUsedAt != nil {
		t.Fatalf("created %+v", tok)
	}
	wantExp := exp.UTC().Truncate(time.Microsecond)
	if tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(wantExp) {
		t.Fatalf("ExpiresAt %v, want %v", tok.ExpiresAt, wantExp)
	}
	got, err := s.TokenByID(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ExpiresAt == nil || !got.ExpiresAt.Equal(wantExp) || got.ExpiresAt.Location() != time.UTC {
		t.Fatalf("read ExpiresAt %v, want %v", got.ExpiresAt, wantExp)
	}
	if !got.CreatedAt.Equal(tok.CreatedAt) || got.LastUsedAt != nil || got.SecretHash != "abc123" || got.UserID != u.ID {
		t.Fatalf("TokenByID = %+v, want %+v", got, tok)
	}

	never, err := s.CreateToken(ctx, u.ID, "def", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.TokenByID(ctx, never.ID); err != nil || got.ExpiresAt != nil {
		t.Fatalf("token without expiry: %+v, %v", got, err)
	}

	used := time.Date(2030, 1, 2, 3, 4, 5, 999999999, time.UTC)
	if err := s.TouchToken(ctx, tok.ID, used); err != nil {
		t.Fatal(err)
	}
	got, err = s.TokenByID(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(used.Truncate(time.Microsecond)) {
		t.Fatalf("LastUsedAt %v", got.LastUsedAt)
	}

	wantErr(t, "touch missing", s.TouchToken(ctx, 99999, used), ErrNotFound)
	_, err = s.CreateToken(ctx, u.ID+1000, "x", nil)
	wantErr(t, "token for missing user", err, ErrNotFound)

	if err := s.DeleteToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.TokenByID(ctx, tok.ID)
	wantErr(t, "deleted token", err, ErrNotFound)
	wantErr(t, "delete twice", s.DeleteToken(ctx, tok.ID), ErrNotFound)
	if _, err := s.TokenByID(ctx, never.ID); err != nil {
		t.Fatalf("other token gone: %v", err)
	}
}

func testMattersAndMembers(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c")
	m, err := s.CreateMatter(ctx, "Smith v. Jones")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.MatterByID(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got != m || got.Title != "Smith v. Jones" {
		t.Fatalf("MatterByID = %+v, want %+v", got, m)
	}
	_, err = s.MatterByID(ctx, m.ID+1000)
	wantErr(t, "missing matter", err, ErrNotFound)

	empty, err := s.MemberIDs(ctx, m.ID)
	if err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("MemberIDs of empty matter = %#v, %v", empty, err)
	}

	// Added out of order to check the ascending sort.
	for _, u := range []User{c, a, b, a} {
		if err := s.AddMember(ctx, m.ID, u.ID); err != nil {
			t.Fatalf("AddMember(%d): %v", u.ID, err)
		}
	}
	ids, err := s.MemberIDs(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != fmt.Sprint([]int64{a.ID, b.ID, c.ID}) {
		t.Fatalf("MemberIDs = %v", ids)
	}
	wantErr(t, "member of missing matter", s.AddMember(ctx, m.ID+1000, a.ID), ErrNotFound)
	wantErr(t, "missing member", s.AddMember(ctx, m.ID, c.ID+1000), ErrNotFound)

	for _, tc := range []struct {
		matter, user int64
		want         bool
	}{{m.ID, a.ID, true}, {m.ID, c.ID, true}, {m.ID, c.ID + 1000, false}, {m.ID + 1000, a.ID, false}} {
		ok, err := s.IsMember(ctx, tc.matter, tc.user)
		if err != nil || ok != tc.want {
			t.Fatalf("IsMember(%d, %d) = %v, %v; want %v", tc.matter, tc.user, ok, err, tc.want)
		}
	}

	m2 := mustMatter(t, s, "second", a)
	m3 := mustMatter(t, s, "third", b)
	ms, err := s.MattersForUser(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0] != m || ms[1] != m2 {
		t.Fatalf("MattersForUser(a) = %+v", ms)
	}
	ms, err = s.MattersForUser(ctx, b.ID)
	if err != nil || len(ms) != 2 || ms[0].ID != m.ID || ms[1].ID != m3.ID {
		t.Fatalf("MattersForUser(b) = %+v, %v", ms, err)
	}
	ms, err = s.MattersForUser(ctx, c.ID+1000)
	if err != nil || ms == nil || len(ms) != 0 {
		t.Fatalf("MattersForUser(nobody) = %#v, %v", ms, err)
	}
}

func testMessages(t *testing.T, s Store) {
	ctx := context.Background()
	a := mustUser(t, s, "alice")
	m := mustMatter(t, s, "m", a)
	at := time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.FixedZone("Y", -7*3600))
	msg, err := s.CreateMessage(ctx, m.ID, a.ID, "hello", at)
	if err != nil {
		t.Fatal(err)
	}
	wantAt := at.UTC().Truncate(time.Microsecond)
	if msg.ID <= 0 || msg.MatterID != m.ID || msg.SenderID != a.ID || msg.SenderName != "alice" ||
		msg.Body != "hello" || msg.CreatedAt != wantAt || msg.UpdatedAt != wantAt || msg.EditedAt != nil {
		t.Fatalf("created %+v", msg)
	}
	got, err := s.MessageByID(ctx, msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got != msg {
		t.Fatalf("MessageByID = %+v, want %+v", got, msg)
	}

	_, err = s.CreateMessage(ctx, m.ID+1000, a.ID, "x", at)
	wantErr(t, "missing matter", err, ErrNotFound)
	_, err = s.CreateMessage(ctx, m.ID, a.ID+1000, "x", at)
	wantErr(t, "missing sender", err, ErrNotFound)
	_, err = s.MessageByID(ctx, msg.ID+1000)
	wantErr(t, "missing message", err, ErrNotFound)

	edit := wantAt.Add(90*time.Second + 7)
	up, err := s.UpdateMessage(ctx, msg.ID, "hello, edited", edit)
	if err != nil {
		t.Fatal(err)
	}
	wantEdit := edit.Truncate(time.Microsecond)
	if up.Body != "hello, edited" || up.CreatedAt != wantAt || up.UpdatedAt != wantEdit ||
		up.EditedAt == nil || *up.EditedAt != wantEdit || up.SenderName != "alice" || up.ID != msg.ID {
		t.Fatalf("updated %+v", up)
	}
	got, err = s.MessageByID(ctx, msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Body != up.Body || got.UpdatedAt != up.UpdatedAt || got.EditedAt == nil || *got.EditedAt != *up.EditedAt {
		t.Fatalf("after update MessageByID = %+v, want %+v", got, up)
	}
	_, err = s.UpdateMessage(ctx, msg.ID+1000, "x", edit)
	wantErr(t, "update missing", err, ErrNotFound)
}

func msgIDs(ms []Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func testListMessages(t *testing.T, s Store) {
	ctx := context.Background()
	a, b := mustUser(t, s, "a"), mustUser(t, s, "b")
	m := mustMatter(t, s, "main", a, b)
	other := mustMatter(t, s, "other", a, b)
	var ids []int64 // ids[i] is the (i+1)-th message in m
	for i := range 25 {
		from := a
		if i%2 == 1 {
			from = b
		}
		ids = append(ids, mustSend(t, s, m, from, fmt.Sprint("m", i)).ID)
		if i%10 == 0 {
			mustSend(t, s, other, a, "noise")
		}
	}
	rev := func(xs []int64) []int64 {
		out := make([]int64, len(xs))
		for i, x := range xs {
			out[len(xs)-1-i] = x
		}
		return out
	}

	cases := []struct {
		name      string
		q         MessageQuery
		want      []int64
		wantTotal int
	}{
		{"page 1", MessageQuery{MatterID: m.ID, Page: 1, Limit: 10}, rev(ids[15:25]), 25},
		{"page 0 is page 1", MessageQuery{MatterID: m.ID, Limit: 10}, rev(ids[15:25]), 25},
		{"page 2", MessageQuery{MatterID: m.ID, Page: 2, Limit: 10}, rev(ids[5:15]), 25},
		{"last partial page", MessageQuery{MatterID: m.ID, Page: 3, Limit: 10}, rev(ids[0:5]), 25},
		{"past the end", MessageQuery{MatterID: m.ID, Page: 4, Limit: 10}, nil, 25},
		{"page overflowing offset", MessageQuery{MatterID: m.ID, Page: math.MaxInt, Limit: 100}, nil, 25},
		{"limit 100", MessageQuery{MatterID: m.ID, Page: 1, Limit: 100}, rev(ids), 25},
		{"after", MessageQuery{MatterID: m.ID, AfterID: ids[9], Limit: 5}, ids[10:15], 15},
		{"after ignores page", MessageQuery{MatterID: m.ID, AfterID: ids[9], Page: 3, Limit: 5}, ids[10:15], 15},
		{"after last", MessageQuery{MatterID: m.ID, AfterID: ids[24], Limit: 5}, nil, 0},
		{"after zero-th", MessageQuery{MatterID: m.ID, AfterID: 1, Limit: 100}, ids[1:], 24},
		{"before", MessageQuery{MatterID: m.ID, BeforeID: ids[10], Limit: 4}, rev(ids[6:10]), 10},
		{"before first", MessageQuery{MatterID: m.ID, BeforeID: ids[0], Limit: 4}, nil, 0},
		{"between", MessageQuery{MatterID: m.ID, AfterID: ids[2], BeforeID: ids[8], Limit: 3}, ids[3:6], 5},
		{"other matter", MessageQuery{MatterID: other.ID, Page: 1, Limit: 10}, nil, 3},
		{"missing matter", MessageQuery{MatterID: other.ID + 1000, Page: 1, Limit: 10}, nil, 0},
	}
	for _, tc := range cases {
		got, total, err := s.ListMessages(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.name == "other matter" {
			if total != tc.wantTotal || len(got) != 3 {
				t.Fatalf("%s: %d messages, total %d", tc.name, len(got), total)
			}
			continue
		}
		if got == nil {
			t.Fatalf("%s: nil slice, want empty", tc.name)
		}
		if fmt.Sprint(msgIDs(got)) != fmt.Sprint(append([]int64{}, tc.want...)) || total != tc.wantTotal {
			t.Fatalf("%s: ids %v total %d, want %v total %d", tc.name, msgIDs(got), total, tc.want, tc.wantTotal)
		}
	}

	page, _, err := s.ListMessages(ctx, MessageQuery{MatterID: m.ID, Page: 1, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if page[0].SenderName != "a" || page[1].SenderName != "b" || page[0].Body != "m24" || page[0].MatterID != m.ID {
		t.Fatalf("joined fields: %+v", page)
	}
	if _, _, err := s.ListMessages(ctx, MessageQuery{MatterID: m.ID, Limit: 0}); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

func testMarkRead(t *testing.T, s Store) {
	ctx := context.Background()
	a, b := mustUser(t, s, "a"), mustUser(t, s, "b")
	m := mustMatter(t, s, "m", a, b)
	msg := mustSend(t, s, m, a, "hi")

	first := time.Date(2026, 1, 1, 12, 0, 0, 123456789, time.UTC)
	r, created, err := s.MarkRead(ctx, msg.ID, b.ID, first)
	if err != nil {
		t.Fatal(err)
	}
	want := ReadReceipt{MessageID: msg.ID, MatterID: m.ID, SenderID: a.ID, ReaderID: b.ID, ReadAt: first.Truncate(time.Microsecond), ReadSeq: 1}
	if !created || r != want {
		t.Fatalf("MarkRead = %+v, %v; want %+v, true", r, created, want)
	}
	r, created, err = s.MarkRead(ctx, msg.ID, b.ID, first.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want.ReadSeq = 0 // nothing new
	if created || r != want {
		t.Fatalf("second MarkRead = %+v, %v; want %+v, false", r, created, want)
	}

	_, _, err = s.MarkRead(ctx, msg.ID+1000, b.ID, first)
	wantErr(t, "missing message", err, ErrNotFound)
	_, _, err = s.MarkRead(ctx, msg.ID, b.ID+1000, first)
	wantErr(t, "missing reader", err, ErrNotFound)
}

func testUnreadCounts(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c")
	m1 := mustMatter(t, s, "ab", a, b)
	m2 := mustMatter(t, s, "ac", a, c)
	m3 := mustMatter(t, s, "a alone", a)

	check := func(u User, want map[int64]int) {
		t.Helper()
		checkUnread(t, s, u, want)
	}
	check(a, map[int64]int{m1.ID: 0, m2.ID: 0, m3.ID: 0})

	a1 := mustSend(t, s, m1, a, "a1")
	mustSend(t, s, m1, a, "a2")
	b1 := mustSend(t, s, m1, b, "b1")
	mustSend(t, s, m1, b, "b2")
	mustSend(t, s, m1, b, "b3")
	c1 := mustSend(t, s, m2, c, "c1")
	mustSend(t, s, m2, c, "c2")

	check(a, map[int64]int{m1.ID: 3, m2.ID: 2, m3.ID: 0})
	check(b, map[int64]int{m1.ID: 2})
	check(c, map[int64]int{m2.ID: 0})

	for _, r := range []struct {
		msg    Message
		reader User
	}{{b1, a}, {b1, a}, {a1, a}, {c1, a}, {a1, b}} {
		if _, _, err := s.MarkRead(ctx, r.msg.ID, r.reader.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	check(a, map[int64]int{m1.ID: 2, m2.ID: 1, m3.ID: 0})
	check(b, map[int64]int{m1.ID: 1})

	// A non-member reading does not count anywhere, and unknown users have no matters.
	if _, _, err := s.MarkRead(ctx, c1.ID, b.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	check(b, map[int64]int{m1.ID: 1})
	check(User{ID: c.ID + 1000}, map[int64]int{})
}

// checkUnread checks UnreadCounts and that UnreadState agrees with it.
func checkUnread(t *testing.T, s Store, u User, want map[int64]int) {
	t.Helper()
	got, err := s.UnreadCounts(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("UnreadCounts(%s) = %v, want %v", u.Name, got, want)
	}
	state, err := s.UnreadState(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	fast := map[int64]int{}
	for id, st := range state {
		fast[id] = st.Unread
	}
	if fmt.Sprint(fast) != fmt.Sprint(want) {
		t.Fatalf("UnreadState(%s) = %v, want %v", u.Name, state, want)
	}
}

// testMarkReadUpTo: everything from others up to an id, once; the read
// version moves only when something was marked; read_up_to keeps later
// single reads and counts right.
func testMarkReadUpTo(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c, d := mustUser(t, s, "a"), mustUser(t, s, "b"), mustUser(t, s, "c"), mustUser(t, s, "d")
	m := mustMatter(t, s, "abc", a, b, c)
	other := mustMatter(t, s, "other", a, b)
	a1 := mustSend(t, s, m, a, "a1")
	c1 := mustSend(t, s, m, c, "c1")
	b1 := mustSend(t, s, m, b, "b1") // b's own: never marked
	mustSend(t, s, other, a, "elsewhere")
	a2 := mustSend(t, s, m, a, "a2")
	a3 := mustSend(t, s, m, a, "a3")
	if _, _, err := s.MarkRead(ctx, c1.ID, b.ID, time.Now()); err != nil { // already read singly
		t.Fatal(err)
	}
	checkUnread(t, s, b, map[int64]int{m.ID: 3, other.ID: 1})

	at := time.Date(2026, 2, 3, 4, 5, 6, 789000, time.UTC)
	r, err := s.MarkReadUpTo(ctx, m.ID, b.ID, a2.ID, at)
	if err != nil {
		t.Fatal(err)
	}
	want := ReadUpTo{MatterID: m.ID, ReaderID: b.ID, UpToID: a2.ID, ReadAt: at, Marked: 2, LastMarkedID: a2.ID, SenderIDs: []int64{a.ID}, ReadSeq: 2}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Fatalf("MarkReadUpTo = %+v, want %+v", r, want)
	}
	checkUnread(t, s, b, map[int64]int{m.ID: 1, other.ID: 1})
	if rr, created, err := s.MarkRead(ctx, a1.ID, b.ID, time.Now()); err != nil || created || !rr.ReadAt.Equal(at) {
		t.Fatalf("single read below read_up_to: %+v %v %v", rr, created, err)
	}
	// Again: nothing to mark, the version stays.
	if r, err := s.MarkReadUpTo(ctx, m.ID, b.ID, a2.ID, time.Now()); err != nil || r.Marked != 0 || r.ReadSeq != 2 || len(r.SenderIDs) != 0 {
		t.Fatalf("second MarkReadUpTo = %+v, %v", r, err)
	}
	// Past the end: everything, senders of both.
	c2 := mustSend(t, s, m, c, "c2")
	r, err = s.MarkReadUpTo(ctx, m.ID, b.ID, c2.ID+1000, at)
	if err != nil || r.Marked != 2 || r.LastMarkedID != c2.ID || fmt.Sprint(r.SenderIDs) != fmt.Sprint([]int64{a.ID, c.ID}) || r.ReadSeq != 3 {
		t.Fatalf("MarkReadUpTo past the end = %+v, %v (a3 %d)", r, err, a3.ID)
	}
	checkUnread(t, s, b, map[int64]int{m.ID: 0, other.ID: 1})
	checkUnread(t, s, c, map[int64]int{m.ID: 4})
	_ = b1
	_, err = s.MarkReadUpTo(ctx, m.ID, d.ID, c2.ID, at)
	wantErr(t, "non-member", err, ErrNotFound)
	_, err = s.MarkReadUpTo(ctx, m.ID+1000, b.ID, c2.ID, at)
	wantErr(t, "missing matter", err, ErrNotFound)
}

func testTimeRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	a := mustUser(t, s, "a")
	m := mustMatter(t, s, "m", a)
	zones := []*time.Location{time.UTC, time.FixedZone("E", 9*3600+1800), time.FixedZone("W", -11*3600)}
	times := []time.Time{
		time.Date(2024, 2, 29, 23, 59, 59, 999999999, zones[1]), // rolls the date over in UTC
		time.Date(2000, 1, 1, 0, 0, 0, 0, zones[0]),             // no fraction: shortest text form
		time.Date(1999, 12, 31, 23, 0, 0, 1000, zones[2]),       // exactly one microsecond
		time.Date(2099, 6, 15, 8, 30, 0, 500, zones[0]),         // below microsecond precision
		time.Now(), // with a monotonic reading
	}
	for _, at := range times {
		want := at.UTC().Truncate(time.Microsecond)
		msg, err := s.CreateMessage(ctx, m.ID, a.ID, "t", at)
		if err != nil {
			t.Fatal(err)
		}
		up, err := s.UpdateMessage(ctx, msg.ID, "t2", at)
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := s.MarkRead(ctx, msg.ID, a.ID, at)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.MessageByID(ctx, msg.ID)
		if err != nil {
			t.Fatal(err)
		}
		list, _, err := s.ListMessages(ctx, MessageQuery{MatterID: m.ID, Page: 1, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]time.Time{
			"create":        msg.CreatedAt,
			"update":        up.UpdatedAt,
			"update edited": *up.EditedAt,
			"read":          r.ReadAt,
			"by id created": got.CreatedAt,
			"by id edited":  *got.EditedAt,
			"list created":  list[0].CreatedAt,
			"list edited":   *list[0].EditedAt,
		} {
			if v != want {
				t.Errorf("%v: %s = %v (%v), want %v", at, name, v, v.Location(), want)
			}
		}
	}
}

func countMigrations(t *testing.T, s Store) int {
	t.Helper()
	var n int
	if err := rawDB(s).Get(&n, `SELECT COUNT(*) FROM schema_migrations`); err != nil {
		t.Fatal(err)
	}
	return n
}

func testMigrateTwice(t *testing.T, s Store) {
	migs, err := loadMigrations(s.Dialect())
	if err != nil {
		t.Fatal(err)
	}
	if len(migs) == 0 {
		t.Fatal("no migrations embedded")
	}
	a := mustUser(t, s, "before")
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if n := countMigrations(t, s); n != len(migs) {
		t.Fatalf("%d schema_migrations rows, want %d", n, len(migs))
	}
	if _, err := s.UserByID(context.Background(), a.ID); err != nil {
		t.Fatalf("data lost by second Migrate: %v", err)
	}
}

// testConcurrentMigrate opens two stores on one empty database, as two
// processes starting together would, and migrates both at once.
func testConcurrentMigrate(t *testing.T, b backend) {
	dbURL, dir := b.newDB(t)
	s1, s2 := openStore(t, dbURL, dir), openStore(t, dbURL, dir)
	errs := make(chan error, 2)
	start := make(chan struct{})
	for _, s := range []Store{s1, s2} {
		go func() {
			<-start
			errs <- s.Migrate(context.Background())
		}()
	}
	close(start)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	migs, err := loadMigrations(s1.Dialect())
	if err != nil {
		t.Fatal(err)
	}
	if n := countMigrations(t, s1); n != len(migs) {
		t.Fatalf("%d schema_migrations rows, want %d", n, len(migs))
	}
	u := mustUser(t, s1, "x")
	m := mustMatter(t, s2, "m", u)
	mustSend(t, s2, m, u, "works")
}

// testTwoStores writes through two stores on one database at once, as two
// processes sharing a SQLite file would; SQLite must wait out the other's
// write lock instead of failing with SQLITE_BUSY.
func testTwoStores(t *testing.T, b backend) {
	dbURL, dir := b.newDB(t)
	s1, s2 := openStore(t, dbURL, dir), openStore(t, dbURL, dir)
	if err := s1.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	u := mustUser(t, s1, "u")
	m := mustMatter(t, s1, "m", u)
	const perStore, goroutines = 30, 5
	var wg sync.WaitGroup
	errc := make(chan error, 2*goroutines)
	for _, s := range []Store{s1, s2} {
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perStore {
					msg, err := s.CreateMessage(context.Background(), m.ID, u.ID, "x", time.Now())
					if err == nil {
						_, _, err = s.MarkRead(context.Background(), msg.ID, u.ID, time.Now())
					}
					if err != nil {
						errc <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	_, total, err := s2.ListMessages(context.Background(), MessageQuery{MatterID: m.ID, Page: 1, Limit: 1})
	if err != nil || total != 2*goroutines*perStore {
		t.Fatalf("total = %d, %v; want %d", total, err, 2*goroutines*perStore)
	}
}

// testConcurrentSendAndRead has every member send while marking the others'
// messages read, then checks UnreadCounts against a tally kept in Go.
func testConcurrentSendAndRead(t *testing.T, s Store) {
	const workers, perWorker = 20, 20
	ctx := context.Background()
	users := make([]User, workers)
	for i := range users {
		users[i] = mustUser(t, s, fmt.Sprint("u", i))
	}
	m1 := mustMatter(t, s, "busy", users...)
	m2 := mustMatter(t, s, "half", users[:workers/2]...)

	type sent struct {
		id, matter, sender int64
	}
	var (
		mu    sync.Mutex
		msgs  []sent
		reads = map[[2]int64]bool{} // {message, reader}
	)
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			me := users[w]
			for i := range perWorker {
				matter := m1
				if w < workers/2 && i%3 == 0 {
					matter = m2
				}
				msg, err := s.CreateMessage(ctx, matter.ID, me.ID, fmt.Sprint(w, "-", i), time.Now())
				if err != nil {
					errc <- fmt.Errorf("send: %w", err)
					return
				}
				mu.Lock()
				msgs = append(msgs, sent{msg.ID, matter.ID, me.ID})
				// Read a few of the others' recent messages in m1.
				var toRead []int64
				for j := len(msgs) - 1; j >= 0 && len(toRead) < 2; j-- {
					if msgs[j].sender != me.ID && msgs[j].matter == m1.ID && (w+j)%2 == 0 {
						toRead = append(toRead, msgs[j].id)
					}
				}
				mu.Unlock()
				for _, id := range toRead {
					if _, _, err := s.MarkRead(ctx, id, me.ID, time.Now()); err != nil {
						errc <- fmt.Errorf("mark read: %w", err)
						return
					}
					mu.Lock()
					reads[[2]int64{id, me.ID}] = true
					mu.Unlock()
				}
				if i%5 == 0 {
					if _, err := s.UnreadCounts(ctx, me.ID); err != nil {
						errc <- fmt.Errorf("unread counts: %w", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if len(msgs) != workers*perWorker {
		t.Fatalf("%d messages sent, want %d", len(msgs), workers*perWorker)
	}

	member := func(matter int64, u int) bool { return matter == m1.ID || u < workers/2 }
	for ui, u := range users {
		want := map[int64]int{m1.ID: 0}
		if member(m2.ID, ui) {
			want[m2.ID] = 0
		}
		for _, msg := range msgs {
			if member(msg.matter, ui) && msg.sender != u.ID && !reads[[2]int64{msg.id, u.ID}] {
				want[msg.matter]++
			}
		}
		got, err := s.UnreadCounts(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("UnreadCounts(%s) = %v, want %v", u.Name, got, want)
		}
	}
	_, total, err := s.ListMessages(ctx, MessageQuery{MatterID: m1.ID, Page: 1, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	n1 := 0
	for _, msg := range msgs {
		if msg.matter == m1.ID {
			n1++
		}
	}
	if total != n1 {
		t.Fatalf("total %d, want %d", total, n1)
	}
}

// testClosedStore checks that a database that has gone away surfaces as an
// error distinct from the sentinel errors.
func testClosedStore(t *testing.T, s Store) {
	ctx := context.Background()
	u := mustUser(t, s, "a")
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkDown(t, s, u.ID)
}

func checkDown(t *testing.T, s Store, id int64) {
	t.Helper()
	ctx := context.Background()
	_, err1 := s.UserByID(ctx, id)
	_, err2 := s.CreateUser(ctx, "b", "b@example.com", "x")
	_, err3 := s.CreateMessage(ctx, 1, id, "x", time.Now())
	_, _, err4 := s.ListMessages(ctx, MessageQuery{MatterID: 1, Page: 1, Limit: 10})
	_, err5 := s.UnreadCounts(ctx, id)
	for i, err := range []error{s.Ping(ctx), err1, err2, err3, err4, err5, s.Migrate(ctx)} {
		if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
			t.Errorf("call %d on a down database: err = %v, want a plain error", i, err)
		}
	}
}

func TestUnreachablePostgres(t *testing.T) {
	// Nothing listens on port 1; connect_timeout bounds the wait if
	// something filters it instead.
	const dsn = "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"
	_, err := Open(context.Background(), dsn, "")
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Open on unreachable server: %v", err)
	}
	// A server that goes away after Open: same as one never reached.
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	migs, err := loadMigrations("postgres")
	if err != nil {
		t.Fatal(err)
	}
	checkDown(t, newPGStore(db, migs), 1)
}

func TestOpenSQLite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	s := openStore(t, "", dir)
	if s.Dialect() != "sqlite" {
		t.Fatalf("Dialect = %q", s.Dialect())
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, want 0700", fi.Mode().Perm())
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "parley.db")); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := rawDB(s).Get(&mode, `PRAGMA journal_mode`); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	for _, db := range []*sqlx.DB{s.(*sqliteStore).w, s.(*sqliteStore).r} {
		var fk, sync, busy int
		if err := db.Get(&fk, `PRAGMA foreign_keys`); err != nil || fk != 1 {
			t.Fatalf("foreign_keys = %d, %v", fk, err)
		}
		if err := db.Get(&sync, `PRAGMA synchronous`); err != nil || sync != 1 {
			t.Fatalf("synchronous = %d, %v", sync, err)
		}
		if err := db.Get(&busy, `PRAGMA busy_timeout`); err != nil || busy != 10000 {
			t.Fatalf("busy_timeout = %d, %v", busy, err)
		}
	}

	// A data dir that is a file cannot be opened.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), "", file); err == nil {
		t.Fatal("Open with a file as data dir succeeded")
	}
	if _, err := Open(context.Background(), "", ""); err == nil {
		t.Fatal("Open with no URL and no dir succeeded")
	}
}

func TestOpenPostgres(t *testing.T) {
	dbURL := storetest.PostgresURL(t)
	s := openStore(t, dbURL, "")
	if s.Dialect() != "postgres" {
		t.Fatalf("Dialect = %q", s.Dialect())
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSend measures a chat send (CreateMessage then a MarkRead by the
// same goroutine) from many goroutines at once.
func BenchmarkSend(b *testing.B) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			s := newMigratedStore(b, be)
			ctx := context.Background()
			u := mustUser(b, s, "u")
			m := mustMatter(b, s, "m")
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					msg, err := s.CreateMessage(ctx, m.ID, u.ID, "hello", time.Now())
					if err == nil {
						_, _, err = s.MarkRead(ctx, msg.ID, u.ID, time.Now())
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
