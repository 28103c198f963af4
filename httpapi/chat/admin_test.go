package chat

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/pusher"
)

// startAdmin is a chat server built as `parley serve` builds it: httpapi's
// routes (Pusher HTTP API signing, the WebSocket upgrade) with the chat and
// its admin API mounted on them. A second app, app-2, exists beside the
// chat's app-1.
func startAdmin(t testing.TB, db database, mutate func(*config.Config)) *env {
	t.Helper()
	return startOn(t, db, func(cfg *config.Config) {
		cfg.Apps = append(cfg.Apps, config.App{ID: "app-2", Key: "key-2", Secret: "secret-2", MaxEventSize: config.DefaultMaxEventSize,
			ActivityTimeout: config.DefaultActivityTimeout, MaxChannelsPerConnection: config.DefaultMaxChannelsPerConnection})
		if mutate != nil {
			mutate(cfg)
		}
	}, nil, true)
}

// signer signs requests as the Pusher server SDKs do.
type signer struct{ appID, key, secret string }

var chatApp = signer{testkit.AppID, testkit.Key, testkit.Secret}

// signedRequest builds a request to /apps/{app}/admin{path}: auth_key,
// auth_timestamp, auth_version and body_md5 added to params, then
// auth_signature = HMAC-SHA256(secret, "METHOD\nPATH\nsorted query").
func (s signer) signedRequest(t testing.TB, base, method, path string, params url.Values, body any) *http.Request {
	t.Helper()
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("auth_key", s.key)
	q.Set("auth_timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	q.Set("auth_version", "1.0")
	var raw []byte
	if body != nil {
		if s, ok := body.(string); ok {
			raw = []byte(s)
		} else {
			raw, _ = json.Marshal(body)
		}
		sum := md5.Sum(raw)
		q.Set("body_md5", hex.EncodeToString(sum[:]))
	}
	full := "/apps/" + s.appID + "/admin" + path
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, strings.ToLower(k))
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+q.Get(k))
	}
	q.Set("auth_signature", pusher.Sign(s.secret, method+"\n"+full+"\n"+strings.Join(parts, "&")))
	req, err := http.NewRequest(method, base+full+"?"+q.Encode(), bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

func doRequest(t testing.TB, req *http.Request) response {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

// admin calls the admin API signed with the chat app's credentials.
func (e *env) admin(method, path string, params url.Values, body any) response {
	e.t.Helper()
	return doRequest(e.t, chatApp.signedRequest(e.t, e.url, method, path, params, body))
}

// wantError checks the status and an {"error": ...} containing text.
func (r response) wantError(t testing.TB, status int, text string) {
	t.Helper()
	b := r.want(t, status)
	if msg, _ := b["error"].(string); !strings.Contains(msg, text) {
		t.Fatalf("error %q does not contain %q (%s)", msg, text, r.raw)
	}
}

func ids(t testing.TB, list any) []int64 {
	t.Helper()
	items, ok := list.([]any)
	if !ok {
		t.Fatalf("not a list: %v", list)
	}
	out := []int64{}
	for _, it := range items {
		out = append(out, num(it.(map[string]any)["id"]))
	}
	return out
}

func idPath(format string, a ...int64) string {
	args := make([]any, len(a))
	for i, x := range a {
		args[i] = x
	}
	return fmt.Sprintf(format, args...)
}

func login(e *env, email, pw string) response {
	return e.call("POST", "/api/auth/login", "", map[string]any{"email": email, "password": pw})
}

func TestAdminAPIUsers(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := startAdmin(t, db, nil)

		// Create: with a password, and without one (an application's own user).
		ann := e.admin("POST", "/users", nil, map[string]any{"name": " Ann ", "email": "Ann@Example.com", "password": "long enough", "external_id": 41}).
			want(t, http.StatusCreated)
		if ann["name"] != "Ann" || ann["email"] != "ann@example.com" || ann["external_id"] != "41" || ann["has_password"] != true {
			t.Fatalf("created %v", ann)
		}
		if _, leaked := ann["password_hash"]; leaked {
			t.Fatalf("hash in answer: %v", ann)
		}
		annID := num(ann["id"])
		bob := e.admin("POST", "/users", nil, map[string]any{"name": "Bob", "email": "bob@example.com", "external_id": "laravel-7"}).
			want(t, http.StatusCreated)
		bobID := num(bob["id"])
		if bob["has_password"] != false {
			t.Fatalf("bob %v", bob)
		}
		cy := e.admin("POST", "/users", nil, map[string]any{"name": "Cy", "email": "cy@example.com"}).want(t, http.StatusCreated)
		cyID := num(cy["id"])

		// Conflicts and validation.
		e.admin("POST", "/users", nil, map[string]any{"name": "A2", "email": "ANN@example.com"}).wantError(t, http.StatusConflict, "email")
		e.admin("POST", "/users", nil, map[string]any{"name": "A2", "email": "a2@example.com", "external_id": "41"}).wantError(t, http.StatusConflict, "external id")
		e.admin("POST", "/users", nil, map[string]any{"email": "nope", "password": "short", "external_id": map[string]any{}}).
			wantInvalid(t, "name", "required", "email", "valid email", "password", "at least 8 characters", "external_id", "must be a string")
		e.admin("POST", "/users", nil, map[string]any{"name": "A", "email": "a@b.c", "password": strings.Repeat("x", 73)}).
			wantInvalid(t, "password", "72 bytes")
		e.admin("POST", "/users", nil, "{not json").wantError(t, http.StatusBadRequest, "JSON")

		// Log in: Ann with her password; Bob has none and cannot.
		login(e, "ann@example.com", "long enough").want(t, http.StatusOK)
		login(e, "bob@example.com", "").wantInvalid(t, "password", "required")
		login(e, "bob@example.com", "anything at all").wantInvalid(t, "email", "do not match")

		// Show, list, filters, pages.
		if got := e.admin("GET", idPath("/users/%d", bobID), nil, nil).want(t, http.StatusOK); got["email"] != "bob@example.com" {
			t.Fatalf("show %v", got)
		}
		e.admin("GET", "/users/999999", nil, nil).wantError(t, http.StatusNotFound, "no user with id 999999")
		e.admin("GET", "/users/abc", nil, nil).want(t, http.StatusNotFound)
		page := e.admin("GET", "/users", url.Values{"limit": {"2"}}, nil).want(t, http.StatusOK)
		if got := ids(t, page["users"]); fmt.Sprint(got) != fmt.Sprint([]int64{annID, bobID}) || num(page["next_after_id"]) != bobID {
			t.Fatalf("page 1 %v", page)
		}
		page = e.admin("GET", "/users", url.Values{"limit": {"2"}, "after_id": {strconv.FormatInt(bobID, 10)}}, nil).want(t, http.StatusOK)
		if got := ids(t, page["users"]); fmt.Sprint(got) != fmt.Sprint([]int64{cyID}) || page["next_after_id"] != nil {
			t.Fatalf("page 2 %v", page)
		}
		if got := ids(t, e.admin("GET", "/users", url.Values{"email": {"BOB@example.com"}}, nil).want(t, http.StatusOK)["users"]); fmt.Sprint(got) != fmt.Sprint([]int64{bobID}) {
			t.Fatalf("by email %v", got)
		}
		if got := ids(t, e.admin("GET", "/users", url.Values{"external_id": {"41"}}, nil).want(t, http.StatusOK)["users"]); fmt.Sprint(got) != fmt.Sprint([]int64{annID}) {
			t.Fatalf("by external id %v", got)
		}
		e.admin("GET", "/users", url.Values{"limit": {"101"}}, nil).wantInvalid(t, "limit", "between 1 and 100")

		// Partial update: a password for Bob, a new name for Ann, her external id cleared.
		up := e.admin("POST", idPath("/users/%d", bobID), nil, map[string]any{"password": "bobs password"}).want(t, http.StatusOK)
		if up["has_password"] != true || up["name"] != "Bob" || up["external_id"] != "laravel-7" {
			t.Fatalf("update %v", up)
		}
		login(e, "bob@example.com", "bobs password").want(t, http.StatusOK)
		up = e.admin("POST", idPath("/users/%d", annID), nil, map[string]any{"name": "Ann B", "external_id": nil}).want(t, http.StatusOK)
		if up["name"] != "Ann B" || up["external_id"] != nil || up["email"] != "ann@example.com" {
			t.Fatalf("update %v", up)
		}
		e.admin("POST", idPath("/users/%d", annID), nil, map[string]any{"email": "bob@example.com"}).wantError(t, http.StatusConflict, "email")
		e.admin("POST", idPath("/users/%d", annID), nil, map[string]any{"name": "", "password": "1234567"}).
			wantInvalid(t, "name", "required", "password", "at least 8")
		e.admin("POST", "/users/999999", nil, map[string]any{"name": "X"}).want(t, http.StatusNotFound)

		// Tokens: what createToken("chat") gives a Blade template.
		tok := e.admin("POST", idPath("/users/%d/tokens", bobID), nil, nil).want(t, http.StatusCreated)
		plain, _ := tok["token"].(string)
		if !strings.HasPrefix(plain, strconv.FormatInt(num(tok["id"]), 10)+"|") || num(tok["user_id"]) != bobID || tok["expires_at"] == nil {
			t.Fatalf("token %v", tok)
		}
		if me := e.call("GET", "/api/user", plain, nil).want(t, http.StatusOK); num(me["id"]) != bobID {
			t.Fatalf("token user %v", me)
		}
		forever := e.admin("POST", idPath("/users/%d/tokens", bobID), nil, map[string]any{"ttl_seconds": 0}).want(t, http.StatusCreated)
		if forever["expires_at"] != nil {
			t.Fatalf("ttl 0 %v", forever)
		}
		short := e.admin("POST", idPath("/users/%d/tokens", bobID), nil, map[string]any{"ttl_seconds": 60}).want(t, http.StatusCreated)
		if exp, _ := time.Parse(time.RFC3339, short["expires_at"].(string)); time.Until(exp) > time.Minute || time.Until(exp) < 50*time.Second {
			t.Fatalf("ttl 60 %v", short)
		}
		e.admin("POST", idPath("/users/%d/tokens", bobID), nil, map[string]any{"ttl_seconds": -1}).wantInvalid(t, "ttl_seconds", "between")
		e.admin("POST", "/users/999999/tokens", nil, nil).want(t, http.StatusNotFound)
		listRes := e.admin("GET", idPath("/users/%d/tokens", bobID), nil, nil)
		if got := ids(t, listRes.want(t, http.StatusOK)["tokens"]); len(got) != 4 { // and the login's
			t.Fatalf("tokens %s", listRes.raw)
		}
		if strings.Contains(listRes.raw, plain[strings.Index(plain, "|")+1:]) || strings.Contains(listRes.raw, "secret") {
			t.Fatalf("token list shows secrets: %s", listRes.raw)
		}
		e.admin("POST", idPath("/tokens/%d/revoke", num(tok["id"])), nil, nil).want(t, http.StatusOK)
		e.call("GET", "/api/user", plain, nil).wantMessage(t, http.StatusUnauthorized, msgUnauthenticated)
		e.admin("POST", idPath("/tokens/%d/revoke", num(tok["id"])), nil, nil).want(t, http.StatusNotFound)
		e.admin("DELETE", idPath("/tokens/%d", num(short["id"])), nil, nil).want(t, http.StatusOK)
		if r := e.admin("POST", idPath("/users/%d/tokens/revoke", bobID), nil, nil).want(t, http.StatusOK); num(r["revoked"]) != 2 {
			t.Fatalf("revoke all %v", r)
		}
		e.call("GET", "/api/user", forever["token"].(string), nil).want(t, http.StatusUnauthorized)

		// Delete: Ann's message stays readable, anonymised; she can no
		// longer log in or use a token; her id is never reused.
		annTok := e.admin("POST", idPath("/users/%d/tokens", annID), nil, nil).want(t, http.StatusCreated)["token"].(string)
		cyTok := e.admin("POST", idPath("/users/%d/tokens", cyID), nil, nil).want(t, http.StatusCreated)["token"].(string)
		m := e.admin("POST", "/matters", nil, map[string]any{"title": "Case", "member_ids": []int64{annID, cyID}}).want(t, http.StatusCreated)
		mid := num(m["id"])
		e.call("POST", "/api/messages/send", annTok, map[string]any{"message": "hi", "client_matter_id": mid}).want(t, http.StatusCreated)
		del := e.admin("POST", idPath("/users/%d/delete", annID), nil, nil).want(t, http.StatusOK)
		if del["deleted"] != true {
			t.Fatalf("delete %v", del)
		}
		e.call("GET", "/api/user", annTok, nil).want(t, http.StatusUnauthorized)
		login(e, "ann@example.com", "long enough").wantInvalid(t, "email", "do not match")
		e.admin("GET", idPath("/users/%d", annID), nil, nil).want(t, http.StatusNotFound)
		e.admin("POST", idPath("/users/%d/delete", annID), nil, nil).want(t, http.StatusNotFound)
		e.admin("DELETE", idPath("/users/%d", annID), nil, nil).want(t, http.StatusNotFound)
		e.admin("POST", idPath("/users/%d/tokens", annID), nil, nil).want(t, http.StatusNotFound)
		e.admin("POST", idPath("/matters/%d/members", mid), nil, map[string]any{"user_id": annID}).want(t, http.StatusNotFound)
		if got := ids(t, e.admin("GET", "/users", nil, nil).want(t, http.StatusOK)["users"]); fmt.Sprint(got) != fmt.Sprint([]int64{bobID, cyID}) {
			t.Fatalf("list after delete %v", got)
		}
		hist := e.call("GET", idPath("/api/messages?client_matter_id=%d", mid), cyTok, nil).want(t, http.StatusOK)
		msgs, _ := hist["data"].([]any)
		if len(msgs) != 1 || msgs[0].(map[string]any)["sender_name"] != persistence.DeletedUserName || msgs[0].(map[string]any)["message"] != "hi" {
			t.Fatalf("history after delete %v", hist)
		}
		shown := e.admin("GET", idPath("/matters/%d", mid), nil, nil).want(t, http.StatusOK)
		if got := ids(t, shown["members"]); fmt.Sprint(got) != fmt.Sprint([]int64{cyID}) {
			t.Fatalf("members after delete %v", shown)
		}
		again := e.admin("POST", "/users", nil, map[string]any{"name": "Ann", "email": "ann@example.com", "password": "long enough"}).want(t, http.StatusCreated)
		if num(again["id"]) <= cyID {
			t.Fatalf("an id was reused: %v", again)
		}
		e.admin("DELETE", idPath("/users/%d", cyID), nil, nil).want(t, http.StatusOK)
		e.call("GET", "/api/user", cyTok, nil).want(t, http.StatusUnauthorized)
	})
}

func TestAdminAPIMatters(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := startAdmin(t, db, nil)
		ann, bob, cy := e.user("Ann"), e.user("Bob"), e.user("Cy")

		m1 := e.admin("POST", "/matters", nil, map[string]any{"title": "Smith v Jones", "member_ids": []int64{ann.ID, bob.ID, ann.ID}}).
			want(t, http.StatusCreated)
		id1 := num(m1["id"])
		if m1["title"] != "Smith v Jones" || fmt.Sprint(ids(t, m1["members"])) != fmt.Sprint([]int64{ann.ID, bob.ID}) {
			t.Fatalf("created %v", m1)
		}
		id2 := num(e.admin("POST", "/matters", nil, map[string]any{"title": "Empty"}).want(t, http.StatusCreated)["id"])
		id3 := num(e.admin("POST", "/matters", nil, map[string]any{"title": "Bob's", "member_ids": []int64{bob.ID}}).want(t, http.StatusCreated)["id"])
		e.admin("POST", "/matters", nil, map[string]any{"title": " "}).wantInvalid(t, "title", "required")
		e.admin("POST", "/matters", nil, map[string]any{"title": "T", "member_ids": []int64{ann.ID, 999999}}).
			wantInvalid(t, "member_ids", "member id 999999 is invalid")
		e.admin("POST", "/matters", nil, map[string]any{"title": "T", "member_ids": "1"}).wantInvalid(t, "member_ids", "array")
		e.admin("POST", "/matters", nil, map[string]any{"title": "T", "member_ids": []any{"x"}}).wantInvalid(t, "member_ids.0", "integer")
		e.admin("POST", "/matters", nil, map[string]any{"title": strings.Repeat("é", 256)}).wantInvalid(t, "title", "255")
		if got := ids(t, e.admin("GET", "/matters", nil, nil).want(t, http.StatusOK)["matters"]); len(got) != 3 {
			t.Fatalf("an invalid create wrote a matter: %v", got)
		}

		// Lists: all, by member, paged.
		page := e.admin("GET", "/matters", url.Values{"limit": {"2"}}, nil).want(t, http.StatusOK)
		if fmt.Sprint(ids(t, page["matters"])) != fmt.Sprint([]int64{id1, id2}) || num(page["next_after_id"]) != id2 {
			t.Fatalf("page %v", page)
		}
		page = e.admin("GET", "/matters", url.Values{"after_id": {strconv.FormatInt(id2, 10)}}, nil).want(t, http.StatusOK)
		if fmt.Sprint(ids(t, page["matters"])) != fmt.Sprint([]int64{id3}) || page["next_after_id"] != nil {
			t.Fatalf("page 2 %v", page)
		}
		page = e.admin("GET", "/matters", url.Values{"user_id": {strconv.FormatInt(bob.ID, 10)}}, nil).want(t, http.StatusOK)
		if fmt.Sprint(ids(t, page["matters"])) != fmt.Sprint([]int64{id1, id3}) {
			t.Fatalf("bob's matters %v", page)
		}
		e.admin("GET", "/matters", url.Values{"user_id": {"x"}}, nil).wantInvalid(t, "user_id", "integer")

		// Show, rename.
		shown := e.admin("GET", idPath("/matters/%d", id2), nil, nil).want(t, http.StatusOK)
		if shown["title"] != "Empty" || len(shown["members"].([]any)) != 0 {
			t.Fatalf("show %v", shown)
		}
		e.admin("GET", "/matters/999999", nil, nil).wantError(t, http.StatusNotFound, "no matter with id 999999")
		if r := e.admin("POST", idPath("/matters/%d", id2), nil, map[string]any{"title": "Renamed"}).want(t, http.StatusOK); r["title"] != "Renamed" {
			t.Fatalf("rename %v", r)
		}
		e.admin("POST", "/matters/999999", nil, map[string]any{"title": "X"}).want(t, http.StatusNotFound)

		// Members: add (idempotent), remove (idempotent), unknown ids.
		r := e.admin("POST", idPath("/matters/%d/members", id2), nil, map[string]any{"user_id": cy.ID}).want(t, http.StatusOK)
		if r["added"] != true || r["member"] != true {
			t.Fatalf("add %v", r)
		}
		if r := e.admin("POST", idPath("/matters/%d/members", id2), nil, map[string]any{"user_id": cy.ID}).want(t, http.StatusOK); r["added"] != false {
			t.Fatalf("add again %v", r)
		}
		e.admin("POST", idPath("/matters/%d/members", id2), nil, map[string]any{"user_id": 999999}).wantError(t, http.StatusNotFound, "no user")
		e.admin("POST", "/matters/999999/members", nil, map[string]any{"user_id": cy.ID}).wantError(t, http.StatusNotFound, "no matter")
		e.admin("POST", idPath("/matters/%d/members", id2), nil, map[string]any{}).wantInvalid(t, "user_id", "required")
		e.send(cy, persistence.Matter{ID: id2}, "in")
		r = e.admin("POST", idPath("/matters/%d/members/%d/delete", id2, cy.ID), nil, nil).want(t, http.StatusOK)
		if r["removed"] != true || r["member"] != false {
			t.Fatalf("remove %v", r)
		}
		if r := e.admin("DELETE", idPath("/matters/%d/members/%d", id2, cy.ID), nil, nil).want(t, http.StatusOK); r["removed"] != false {
			t.Fatalf("remove again %v", r)
		}
		e.admin("DELETE", idPath("/matters/%d/members/999999", id2), nil, nil).wantError(t, http.StatusNotFound, "no user")
		e.call("POST", "/api/messages/send", cy.token, map[string]any{"message": "out", "client_matter_id": id2}).want(t, http.StatusForbidden)

		// Delete: the matter, its messages, receipts and members go.
		msg := e.send(ann, persistence.Matter{ID: id1}, "hello")
		e.call("PUT", idPath("/api/messages/%d/read", num(msg["id"])), bob.token, nil).want(t, http.StatusOK)
		del := e.admin("POST", idPath("/matters/%d/delete", id1), nil, nil).want(t, http.StatusOK)
		if del["deleted"] != true {
			t.Fatalf("delete %v", del)
		}
		e.admin("GET", idPath("/matters/%d", id1), nil, nil).want(t, http.StatusNotFound)
		e.admin("POST", idPath("/matters/%d/delete", id1), nil, nil).want(t, http.StatusNotFound)
		if _, err := e.st.MessageByID(context.Background(), num(msg["id"])); err == nil {
			t.Fatal("the deleted matter's message is still stored")
		}
		if ms, _ := e.st.MattersForUser(context.Background(), ann.ID); len(ms) != 0 {
			t.Fatalf("ann is still in %v", ms)
		}
		e.admin("DELETE", idPath("/matters/%d", id3), nil, nil).want(t, http.StatusOK)
		if got := ids(t, e.admin("GET", "/matters", nil, nil).want(t, http.StatusOK)["matters"]); fmt.Sprint(got) != fmt.Sprint([]int64{id2}) {
			t.Fatalf("after deletes %v", got)
		}
	})
}

func TestAdminAPISigning(t *testing.T) {
	e := startAdmin(t, sqliteDB(t), nil)
	body := map[string]any{"name": "Ann", "email": "ann@example.com"}

	wrong := signer{testkit.AppID, testkit.Key, "not-the-secret"}
	doRequest(t, wrong.signedRequest(t, e.url, "POST", "/users", nil, body)).wantError(t, http.StatusUnauthorized, "auth_signature")
	doRequest(t, wrong.signedRequest(t, e.url, "GET", "/users", nil, nil)).want(t, http.StatusUnauthorized)

	// A body changed after signing.
	req := chatApp.signedRequest(t, e.url, "POST", "/users", nil, body)
	req.Body = io.NopCloser(strings.NewReader(`{"name":"Mallory","email":"m@example.com"}`))
	req.ContentLength = -1
	doRequest(t, req).wantError(t, http.StatusUnauthorized, "body_md5")

	// Unsigned.
	res, err := http.Get(e.url + "/apps/" + testkit.AppID + "/admin/users")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d", res.StatusCode)
	}

	// Another app, correctly signed with its own secret: no admin API there.
	other := signer{"app-2", "key-2", "secret-2"}
	doRequest(t, other.signedRequest(t, e.url, "GET", "/users", nil, nil)).wantError(t, http.StatusNotFound, "admin API")
	doRequest(t, other.signedRequest(t, e.url, "POST", "/users", nil, body)).want(t, http.StatusNotFound)
	// The chat app's key with app-2's id is a wrong key for app-2.
	doRequest(t, signer{"app-2", testkit.Key, testkit.Secret}.signedRequest(t, e.url, "GET", "/users", nil, nil)).want(t, http.StatusUnauthorized)
	doRequest(t, signer{"app-9", "key-9", "s"}.signedRequest(t, e.url, "GET", "/users", nil, nil)).wantError(t, http.StatusNotFound, "unknown app")

	// None of it wrote anything; the right signature does.
	if got := ids(t, e.admin("GET", "/users", nil, nil).want(t, http.StatusOK)["users"]); len(got) != 0 {
		t.Fatalf("refused requests wrote users: %v", got)
	}
	e.admin("POST", "/users", nil, body).want(t, http.StatusCreated)
}

// The official PHP SDK's post() throws on any status but 200: creates
// answer it 200, with the same body, while other clients get 201.
func TestAdminAPIPHPSDKGets200(t *testing.T) {
	e := startAdmin(t, sqliteDB(t), nil)
	php := func(path string, body any) response {
		req := chatApp.signedRequest(t, e.url, "POST", path, nil, body)
		req.Header.Set("X-Pusher-Library", "pusher-http-php 7.2.4")
		return doRequest(t, req)
	}
	u := php("/users", map[string]any{"name": "Ann", "email": "ann@example.com", "external_id": 5}).want(t, http.StatusOK)
	if u["email"] != "ann@example.com" || num(u["id"]) == 0 {
		t.Fatalf("user %v", u)
	}
	if tok := php(idPath("/users/%d/tokens", num(u["id"])), map[string]any{}).want(t, http.StatusOK); tok["token"] == nil {
		t.Fatalf("token %v", tok)
	}
	php("/matters", map[string]any{"title": "T", "member_ids": []int64{num(u["id"])}}).want(t, http.StatusOK)
	// json_encode([]) is "[]".
	php(idPath("/users/%d/tokens", num(u["id"])), "[]").want(t, http.StatusOK)
	php(idPath("/users/%d/tokens", num(u["id"])), "[1]").wantError(t, http.StatusBadRequest, "JSON object")
	// Its errors keep their status (the SDK raises them with the body).
	php("/users", map[string]any{"name": "Ann", "email": "ann@example.com"}).want(t, http.StatusConflict)
	e.admin("POST", "/users", nil, map[string]any{"name": "Bob", "email": "bob@example.com"}).want(t, http.StatusCreated)
}

// unreadEvent reads w's next frame, an UnreadCountUpdated for p, and returns its data.
func unreadEvent(t testing.TB, w *wsClient, p person) map[string]any {
	t.Helper()
	return w.ExpectOn(ev("UnreadCountUpdated"), userChannel(p.ID)).DataMap(t)
}

func TestAdminAPIUnreadCounts(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := startAdmin(t, db, nil)
		ann, bob := e.user("Ann"), e.user("Bob")
		mid := num(e.admin("POST", "/matters", nil, map[string]any{"title": "Case", "member_ids": []int64{ann.ID, bob.ID}}).
			want(t, http.StatusCreated)["id"])
		other := num(e.admin("POST", "/matters", nil, map[string]any{"title": "Other", "member_ids": []int64{ann.ID, bob.ID}}).
			want(t, http.StatusCreated)["id"])
		w := e.dialAs(bob, userChannel(bob.ID))
		e.send(ann, persistence.Matter{ID: mid}, "one")
		e.send(ann, persistence.Matter{ID: mid}, "two")
		e.send(ann, persistence.Matter{ID: other}, "three")
		e.settleUnread(bob.ID)
		for {
			f := w.Next()
			if f.Event == ev("UnreadCountUpdated") && num(f.DataMap(t)["unread_count"]) == 3 {
				break
			}
		}

		// Removed from the matter: at once, 1 unread, and the API agrees.
		e.admin("POST", idPath("/matters/%d/members/%d/delete", mid, bob.ID), nil, nil).want(t, http.StatusOK)
		d := unreadEvent(t, w, bob)
		if num(d["unread_count"]) != 1 || fmt.Sprint(d["matters"]) != fmt.Sprintf("map[%d:1]", other) {
			t.Fatalf("after removal %v", d)
		}
		if got, total := e.unread(bob); total != 1 || fmt.Sprint(got) != fmt.Sprint(e.truth(bob)) {
			t.Fatalf("unread-count %v %d, database %v", got, total, e.truth(bob))
		}

		// Added back: the two unread messages count again.
		e.admin("POST", idPath("/matters/%d/members", mid), nil, map[string]any{"user_id": bob.ID}).want(t, http.StatusOK)
		if d := unreadEvent(t, w, bob); num(d["unread_count"]) != 3 {
			t.Fatalf("after adding back %v", d)
		}
		// Adding a member again changes nothing and sends nothing.
		e.admin("POST", idPath("/matters/%d/members", mid), nil, map[string]any{"user_id": bob.ID}).want(t, http.StatusOK)
		w.expectNothingBeforeMarker()

		// The matter deleted: its messages no longer count.
		e.admin("DELETE", idPath("/matters/%d", mid), nil, nil).want(t, http.StatusOK)
		if d := unreadEvent(t, w, bob); num(d["unread_count"]) != 1 || fmt.Sprint(d["matters"]) != fmt.Sprintf("map[%d:1]", other) {
			t.Fatalf("after matter delete %v", d)
		}
		if got, total := e.unread(bob); total != 1 || fmt.Sprint(got) != fmt.Sprint(e.truth(bob)) {
			t.Fatalf("unread-count %v %d, database %v", got, total, e.truth(bob))
		}
	})
}
