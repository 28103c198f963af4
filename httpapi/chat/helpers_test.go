package chat

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/persistence/storetest"

	"github.com/gin-gonic/gin"
	_ "github.com/lib/pq"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/httpapi"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/wsconn"
	"golang.org/x/crypto/bcrypt"
	_ "modernc.org/sqlite"
)

func TestMain(m *testing.M) {
	BcryptCost = bcrypt.MinCost
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

const password = "correct horse"

// database is where a test server keeps its data: the arguments of
// persistence.Open. The same database may back several servers in turn.
type database struct {
	dialect string
	url     string // PostgreSQL, with search_path set to the test's schema
	dir     string // embedded database
}

func sqliteDB(t testing.TB) database { return database{dialect: "sqlite", dir: t.TempDir()} }

// postgresDB is a fresh PostgreSQL schema (see storetest.PostgresURL).
func postgresDB(t testing.TB) database {
	return database{dialect: "postgres", url: storetest.PostgresURL(t)}
}

// databases are the backends a database-related test runs on.
func databases() []func(testing.TB) database {
	return []func(testing.TB) database{sqliteDB, postgresDB}
}

// onEachDatabase runs test as a subtest on each backend.
func onEachDatabase(t *testing.T, test func(t *testing.T, db database)) {
	for _, open := range databases() {
		db := open(t)
		t.Run(db.dialect, func(t *testing.T) { test(t, db) })
	}
}

// exec runs SQL on the database behind the store's back (fault injection
// with real database errors, never a mock).
func (d database) exec(t testing.TB, stmts ...string) {
	t.Helper()
	var db *sql.DB
	var err error
	if d.dialect == "postgres" {
		db, err = sql.Open("postgres", d.url)
	} else {
		db, err = sql.Open("sqlite", "file:"+filepath.Join(d.dir, "parley.db")+"?_pragma=busy_timeout(5000)")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// failInserts makes every INSERT into table fail with a database error until
// the returned function undoes it.
func (d database) failInserts(t testing.TB, table string) (undo func()) {
	t.Helper()
	name := "parley_test_outage_" + table
	if d.dialect == "postgres" {
		d.exec(t,
			`CREATE FUNCTION `+name+`() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'simulated outage'; END $$ LANGUAGE plpgsql`,
			`CREATE TRIGGER `+name+` BEFORE INSERT ON `+table+` FOR EACH ROW EXECUTE FUNCTION `+name+`()`)
		return func() { d.exec(t, `DROP TRIGGER `+name+` ON `+table, `DROP FUNCTION `+name+`()`) }
	}
	d.exec(t, `CREATE TRIGGER `+name+` BEFORE INSERT ON `+table+` BEGIN SELECT RAISE(ABORT, 'simulated outage'); END`)
	return func() { d.exec(t, `DROP TRIGGER `+name) }
}

// env is a running chat server: the real routes, the real node, a real
// database, on 127.0.0.1.
type env struct {
	t     testing.TB
	db    database
	cfg   *config.Config
	st    persistence.Store
	node  *actors.Node
	svc   *Service
	srv   *httptest.Server
	url   string
	close func() // stops everything; idempotent
}

func start(t testing.TB, db database, mutate func(*config.Config)) *env {
	t.Helper()
	return startWith(t, db, mutate, LoginOptions{})
}

// startWith is start with login options.
func startWith(t testing.TB, db database, mutate func(*config.Config), login LoginOptions) *env {
	t.Helper()
	return startDeps(t, db, mutate, func(d *Deps) { d.Login = login })
}

// startDeps is start with a say in the chat service's Deps.
func startDeps(t testing.TB, db database, mutate func(*config.Config), deps func(*Deps)) *env {
	t.Helper()
	return startOn(t, db, mutate, deps, false)
}

// startOn builds the test server: with served, as `parley serve` builds it
// (httpapi's routes, Pusher HTTP API signing, the WebSocket upgrade, with the
// chat mounted on them); otherwise the chat on a bare gin engine with the
// WebSocket route only.
func startOn(t testing.TB, db database, mutate func(*config.Config), deps func(*Deps), served bool) *env {
	t.Helper()
	cfg := testkit.Config(t, db.dir, nil)
	cfg.DatabaseURL = db.url
	cfg.APIRateLimit = 0
	if mutate != nil {
		mutate(cfg)
	}
	ctx := context.Background()
	st, err := persistence.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	node := actors.NewNode(cfg, log)
	d := Deps{Config: cfg, Store: st, Node: node, App: &cfg.Apps[0], Log: log}
	var e *gin.Engine
	var h http.Handler
	if served {
		api := httpapi.New(cfg, node, log)
		e, h, d.Signed = api.Engine(), api.Handler(), api.Signed()
	} else {
		e = gin.New()
		e.GET("/app/:key", func(c *gin.Context) {
			conn, err := wsconn.Upgrade(c.Writer, c.Request, node.ConnOptions())
			if err == nil {
				node.Accept(conn, c.Param("key"), c.Query("protocol"), c.GetHeader("Origin"), "")
			}
		})
		h = e
	}
	if deps != nil {
		deps(&d)
	}
	svc := Mount(e, d)
	srv := httptest.NewServer(h)
	en := &env{t: t, db: db, cfg: cfg, st: st, node: node, svc: svc, srv: srv, url: srv.URL}
	var once sync.Once
	en.close = func() {
		once.Do(func() {
			srv.CloseClientConnections()
			srv.Close()
			svc.Stop()
			node.Stop()
			st.Close()
		})
	}
	t.Cleanup(en.close)
	return en
}

// person is a user with a token.
type person struct {
	persistence.User
	token string
}

func (e *env) user(name string) person {
	e.t.Helper()
	ctx := context.Background()
	hash, err := HashPassword(password)
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := e.st.CreateUser(ctx, name, strings.ToLower(name)+"@example.com", hash)
	if err != nil {
		e.t.Fatal(err)
	}
	plain, _, err := IssueToken(ctx, e.st, u.ID, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return person{User: u, token: plain}
}

func (e *env) matter(title string, members ...person) persistence.Matter {
	e.t.Helper()
	ctx := context.Background()
	m, err := e.st.CreateMatter(ctx, title)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range members {
		if err := e.st.AddMember(ctx, m.ID, p.ID); err != nil {
			e.t.Fatal(err)
		}
	}
	return m
}

// response is an API answer with its body decoded.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// form marks a body to send form-encoded, as pusher-js does.
type form url.Values

// call makes an API request. body is nil, a string (sent as is, JSON), a
// form, or anything else (sent as JSON). hdr adds headers ("Name", "value"...).
func (e *env) call(method, path, token string, body any, hdr ...string) response {
	e.t.Helper()
	r, err := e.do(method, path, token, body, hdr...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// do is call for goroutines other than the test's: it returns the error.
func (e *env) do(method, path, token string, body any, hdr ...string) (response, error) {
	var r io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		r, ct = strings.NewReader(b), "application/json"
	case form:
		r, ct = strings.NewReader(url.Values(b).Encode()), "application/x-www-form-urlencoded"
	default:
		j, _ := json.Marshal(b)
		r, ct = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(method, e.url+path, r)
	if err != nil {
		return response{}, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &out.body)
	return out, err
}

// want checks the status and returns the body.
func (r response) want(t testing.TB, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r.body
}

// wantMessage checks the status and Laravel's {"message": ...}.
func (r response) wantMessage(t testing.TB, status int, msg string) {
	t.Helper()
	b := r.want(t, status)
	if b["message"] != msg {
		t.Fatalf("message %q, want %q (%s)", b["message"], msg, r.raw)
	}
}

// wantInvalid checks a 422 and that each field has an error containing its text.
func (r response) wantInvalid(t testing.TB, fieldText ...string) {
	t.Helper()
	b := r.want(t, http.StatusUnprocessableEntity)
	errs, _ := b["errors"].(map[string]any)
	msg, _ := b["message"].(string)
	if msg == "" || errs == nil {
		t.Fatalf("422 without Laravel's message/errors shape: %s", r.raw)
	}
	for i := 0; i+1 < len(fieldText); i += 2 {
		list, _ := errs[fieldText[i]].([]any)
		found := false
		for _, m := range list {
			if s, _ := m.(string); strings.Contains(s, fieldText[i+1]) {
				found = true
			}
		}
		if !found {
			t.Fatalf("no %q error on %s: %s", fieldText[i+1], fieldText[i], r.raw)
		}
	}
	if n := len(fieldText) / 2; n > 0 && len(errs) != n {
		t.Fatalf("errors on %d fields, want %d: %s", len(errs), n, r.raw)
	}
}

func data(t testing.TB, b map[string]any) map[string]any {
	t.Helper()
	d, ok := b["data"].(map[string]any)
	if !ok {
		t.Fatalf("no data object in %v", b)
	}
	return d
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

// send posts a message and returns the message object.
func (e *env) send(p person, m persistence.Matter, text string, hdr ...string) map[string]any {
	e.t.Helper()
	return data(e.t, e.call("POST", "/api/messages/send", p.token,
		map[string]any{"message": text, "client_matter_id": m.ID}, hdr...).want(e.t, http.StatusCreated))
}

// unread is GET /api/messages/unread-count as {matter id: n} plus the total.
func (e *env) unread(p person) (map[int64]int, int) {
	e.t.Helper()
	b := e.call("GET", "/api/messages/unread-count", p.token, nil).want(e.t, http.StatusOK)
	return unreadMap(e.t, b), int(num(b["unread_count"]))
}

func unreadMap(t testing.TB, b map[string]any) map[int64]int {
	t.Helper()
	ms, ok := b["matters"].(map[string]any)
	if !ok {
		t.Fatalf("no matters object in %v", b)
	}
	out := map[int64]int{}
	for k, v := range ms {
		var id int64
		if _, err := fmt.Sscan(k, &id); err != nil {
			t.Fatalf("matter key %q", k)
		}
		out[id] = int(num(v))
	}
	return out
}

func (e *env) truth(p person) map[int64]int {
	e.t.Helper()
	m, err := e.st.UnreadCounts(context.Background(), p.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// ---- WebSocket clients ----

type frame = testkit.Frame

// wsClient is a test's socket. Its reads pass over markers (see
// expectMarker): a marker meant for one socket's absence check may reach
// others in the same channel, and they have no use for it.
type wsClient struct {
	*testkit.Client
	e      *env
	joined []string // channels joined, in order
}

// dial connects a socket as pusher-js does and reads connection_established.
func (e *env) dial() *wsClient {
	e.t.Helper()
	u := "ws" + strings.TrimPrefix(e.url, "http") + "/app/" + testkit.Key + "?protocol=7&client=js&version=8.4.0"
	c := testkit.Dial(e.t, u, testkit.DialOptions{Buffer: 1 << 14})
	c.Skip, c.Timeout = isMarker, 3*time.Second
	c.Established()
	return &wsClient{Client: c, e: e}
}

// dialAs connects a socket and joins channels as p.
func (e *env) dialAs(p person, channels ...string) *wsClient {
	e.t.Helper()
	w := e.dial()
	for _, ch := range channels {
		w.join(p, ch)
	}
	return w
}

// Absence is asserted with markers, never by waiting: after the deed that
// must broadcast nothing, the test publishes a marker by a path the server
// orders after any event the deed could have caused, and the marker must be
// the socket's next frame. Waiting a fixed time would pass whenever the
// forbidden event is merely slow.
const markerEvent = "test-marker"

var markerSeq atomic.Int64

func isMarker(f frame) bool { return f.Event == markerEvent }

// isMarkerOf says which frame is the marker carrying data.
func isMarkerOf(data string) func(frame) bool {
	return func(f frame) bool { return f.Event == markerEvent && f.Data == data }
}

// expectMarker asserts that the marker carrying data is w's next frame:
// nothing may come before it but other checks' markers.
func (w *wsClient) expectMarker(data string) {
	w.T.Helper()
	w.ExpectNext(data, isMarkerOf(data))
}

// markEach publishes a marker on each channel w joined, in turn, and has
// read read up to it. The channel's actor delivers the marker after
// everything published to it before. A user channel also carries
// UnreadCountUpdated, which the user's counter publishes on its own time;
// asking the counter first makes it publish any change it was told of.
func (w *wsClient) markEach(read func(marker string)) {
	w.T.Helper()
	for _, ch := range w.joined {
		var uid int64
		if _, err := fmt.Sscanf(ch, "private-user.%d", &uid); err == nil && ch == userChannel(uid) {
			w.e.settleUnread(uid)
		}
		m := fmt.Sprintf("marker-%d", markerSeq.Add(1))
		if err := w.e.node.Publish(actors.Event{AppID: testkit.AppID, Channels: []string{ch}, Name: markerEvent, Data: m}); err != nil {
			w.T.Fatal(err)
		}
		read(m)
	}
}

// expectNothingBeforeMarker asserts that nothing broadcast until now reached
// w on the channels it joined (see markEach).
func (w *wsClient) expectNothingBeforeMarker() {
	w.T.Helper()
	w.markEach(w.expectMarker)
}

// drain returns, by event, every frame that reached w on the channels it
// joined until now (see markEach).
func (w *wsClient) drain() map[string][]frame {
	w.T.Helper()
	out := map[string][]frame{}
	w.markEach(func(m string) {
		for _, f := range w.Before(m, isMarkerOf(m), 3*time.Second) {
			out[f.Event] = append(out[f.Event], f)
		}
	})
	return out
}

// settleUnread returns once the user's counter has handled every change
// notification sent before and published what coalescing held back: on one
// node, as here, Settle is queued behind them in the manager's mailbox and
// answers after the pending publish. An answer that is a failed load (the
// database is down) counts too; no answer does not.
func (e *env) settleUnread(userID int64) {
	e.t.Helper()
	if _, err := e.svc.counters.Settle(userID); err != nil && strings.Contains(err.Error(), "did not answer") {
		e.t.Fatalf("unread counter of user %d: %v", userID, err)
	}
}

// join authorizes channel through the API as Echo does, then subscribes.
func (w *wsClient) join(p person, channel string) {
	w.T.Helper()
	b := w.e.call("POST", "/broadcasting/auth", p.token, form{"socket_id": {w.SocketID}, "channel_name": {channel}}).want(w.T, http.StatusOK)
	d := map[string]any{"channel": channel, "auth": b["auth"]}
	if cd, ok := b["channel_data"]; ok {
		d["channel_data"] = cd
	}
	w.Send(map[string]any{"event": "pusher:subscribe", "data": d})
	for {
		f := w.Next()
		if f.Event == "pusher_internal:subscription_succeeded" && f.Channel == channel {
			w.joined = append(w.joined, channel)
			return
		}
		if strings.HasPrefix(f.Event, "pusher:") && f.Event != "pusher:pong" {
			w.T.Fatalf("subscribe %s: %+v", channel, f)
		}
	}
}

func ev(bare string) string { return `App\Events\` + bare }

// asEvent is a message object from the REST API as events carry it: events
// are shared by every receiver, so they hold no one's read state.
func asEvent(m map[string]any) map[string]any {
	out := maps.Clone(m)
	out["is_read"] = m["deleted_at"] != nil
	out["read_at"] = nil
	out["read_by"] = []any{}
	return out
}
