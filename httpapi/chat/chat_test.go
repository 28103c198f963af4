package chat

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/pusher"
)

func TestLoginLogoutAndUser(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	ann := e.user("Ann")

	res := e.call("POST", "/api/auth/login", "", map[string]any{"email": " ANN@example.com ", "password": password})
	b := res.want(t, http.StatusOK)
	tok, _ := b["token"].(string)
	user, _ := b["user"].(map[string]any)
	if _, _, ok := parseToken(tok); !ok || user["id"] != float64(ann.ID) || user["name"] != "Ann" || user["password_hash"] != nil {
		t.Fatalf("login: %v", b)
	}
	exp, err := time.Parse(time.RFC3339, b["expires_at"].(string))
	if err != nil || time.Until(exp) < LoginTokenTTL-time.Minute || time.Until(exp) > LoginTokenTTL {
		t.Fatalf("expires_at %v %v", b["expires_at"], err)
	}
	me := e.call("GET", "/api/user", tok, nil).want(t, http.StatusOK)
	if me["id"] != float64(ann.ID) || me["email"] != "ann@example.com" {
		t.Fatalf("/api/user: %v", me)
	}

	// pusher-js style form bodies work too.
	e.call("POST", "/api/auth/login", "", form{"email": {"ann@example.com"}, "password": {password}}).want(t, http.StatusOK)

	e.call("POST", "/api/auth/login", "", map[string]any{"email": "ann@example.com", "password": "wrong"}).
		wantInvalid(t, "email", "These credentials do not match our records.")
	e.call("POST", "/api/auth/login", "", map[string]any{"email": "nobody@example.com", "password": password}).
		wantInvalid(t, "email", "These credentials do not match our records.")
	r := e.call("POST", "/api/auth/login", "", map[string]any{"password": 5})
	r.wantInvalid(t, "email", "The email field is required.", "password", "must be a string")
	if r.body["message"] != "The email field is required. (and 1 more error)" {
		t.Fatalf("422 message %q", r.body["message"])
	}
	e.call("POST", "/api/auth/login", "", `{"email":`).want(t, http.StatusBadRequest)

	e.call("POST", "/api/auth/logout", tok, nil).want(t, http.StatusOK)
	e.call("GET", "/api/user", tok, nil).wantMessage(t, http.StatusUnauthorized, "Unauthenticated.")
	e.call("GET", "/api/user", ann.token, nil).want(t, http.StatusOK) // other tokens live on
}

func TestUnauthenticated(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	ann := e.user("Ann")
	id, secret, _ := parseToken(ann.token)
	short, _, err := IssueToken(context.Background(), e.st, ann.ID, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)

	for _, tc := range []struct{ name, header string }{
		{"none", ""},
		{"not bearer", "Basic " + ann.token},
		{"no id", "Bearer " + secret},
		{"wrong secret", fmt.Sprintf("Bearer %d|%s", id, strings.Repeat("x", 40))},
		{"unknown id", fmt.Sprintf("Bearer %d|%s", id+100, secret)},
		{"expired", "Bearer " + short},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.call("GET", "/api/user", "", nil, "Authorization", tc.header).wantMessage(t, http.StatusUnauthorized, "Unauthenticated.")
		})
	}
	// Every route but login is behind the token.
	for _, rt := range [][2]string{
		{"POST", "/api/auth/logout"}, {"GET", "/api/user"}, {"GET", "/api/matters"},
		{"POST", "/api/messages/send"}, {"GET", "/api/messages?client_matter_id=1"},
		{"GET", "/api/messages/unread-count"}, {"PUT", "/api/messages/1/read"}, {"PUT", "/api/messages/1"},
		{"POST", "/api/broadcasting/auth"}, {"POST", "/broadcasting/auth"},
	} {
		e.call(rt[0], rt[1], "", nil).wantMessage(t, http.StatusUnauthorized, "Unauthenticated.")
	}
}

func TestTokenLastUsedIsTouchedSparingly(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	ann := e.user("Ann")
	id, _, _ := parseToken(ann.token)
	e.call("GET", "/api/user", ann.token, nil).want(t, http.StatusOK)
	first, err := e.st.TokenByID(context.Background(), id)
	if err != nil || first.LastUsedAt == nil {
		t.Fatalf("last_used_at not set: %v %v", first.LastUsedAt, err)
	}
	e.call("GET", "/api/user", ann.token, nil).want(t, http.StatusOK)
	second, _ := e.st.TokenByID(context.Background(), id)
	if !second.LastUsedAt.Equal(*first.LastUsedAt) {
		t.Fatalf("touched again within a minute: %v then %v", first.LastUsedAt, second.LastUsedAt)
	}
}

// TestMessageFlow walks one conversation and checks every event on the wire.
func TestMessageFlow(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	ann, bob, cat := e.user("Ann"), e.user("Bob"), e.user("Cat")
	m := e.matter("Smith v Jones", ann, bob, cat)

	annWS := e.dialAs(ann, userChannel(ann.ID), matterChannel(m.ID))
	annWS2 := e.dialAs(ann, matterChannel(m.ID))
	bobWS := e.dialAs(bob, userChannel(bob.ID), matterChannel(m.ID))

	// Send, excluding Ann's first socket (toOthers()).
	msg := e.send(ann, m, "  Hello Bob  ", "X-Socket-ID", annWS.SocketID)
	if msg["message"] != "Hello Bob" || num(msg["client_matter_id"]) != m.ID || num(msg["sender_id"]) != ann.ID ||
		msg["sender_name"] != "Ann" || msg["edited_at"] != nil || msg["read_at"] != nil || num(msg["id"]) <= 0 ||
		msg["is_read"] != true || msg["deleted_at"] != nil || fmt.Sprint(msg["read_by"]) != "[]" {
		t.Fatalf("sent message %v", msg)
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if ts, _ := msg[k].(string); !strings.HasSuffix(ts, "Z") {
			t.Fatalf("%s %q is not RFC 3339 UTC", k, ts)
		} else if _, err := time.Parse(time.RFC3339, ts); err != nil {
			t.Fatal(err)
		}
	}
	if p, ok := msg["previous_id"]; !ok || num(p) != 0 {
		t.Fatalf("the matter's first message: previous_id %v (present %v), want 0", p, ok)
	}
	annWS.expectNothingBeforeMarker()
	got := annWS2.ExpectOn(ev("MessageSent"), matterChannel(m.ID)).DataMap(t)
	if !reflect.DeepEqual(got["message"], asEvent(msg)) {
		t.Fatalf("event message %v, REST %v", got["message"], msg)
	}
	// Bob hears it on the matter and on his own channel, then his unread
	// count on his own channel. Order is kept per channel only, so the
	// matter's MessageSent may come before or after the count.
	seen := map[string]bool{}
	var uc map[string]any
	for range 3 {
		f := bobWS.Next()
		switch {
		case f.Event == ev("MessageSent") && reflect.DeepEqual(f.DataMap(t)["message"], asEvent(msg)):
			if f.Channel == userChannel(bob.ID) && uc != nil {
				t.Fatalf("UnreadCountUpdated came before MessageSent on %s", f.Channel)
			}
			seen[f.Channel] = true
		case f.Event == ev("UnreadCountUpdated") && f.Channel == userChannel(bob.ID):
			uc = f.DataMap(t)
		default:
			t.Fatalf("bob got %+v", f)
		}
	}
	if !seen[userChannel(bob.ID)] || !seen[matterChannel(m.ID)] || uc == nil {
		t.Fatalf("bob got MessageSent on %v, count %v", seen, uc)
	}
	if num(uc["user_id"]) != bob.ID || num(uc["unread_count"]) != 1 || !maps.Equal(unreadMap(t, uc), map[int64]int{m.ID: 1}) {
		t.Fatalf("UnreadCountUpdated %v", uc)
	}
	if counts, total := e.unread(bob); total != 1 || counts[m.ID] != 1 {
		t.Fatalf("bob unread %v %d", counts, total)
	}
	if counts, total := e.unread(ann); total != 0 || counts[m.ID] != 0 {
		t.Fatalf("ann unread %v %d", counts, total)
	}
	matters := e.call("GET", "/api/matters", cat.token, nil).want(t, http.StatusOK)["data"].([]any)
	if len(matters) != 1 || num(matters[0].(map[string]any)["unread_count"]) != 1 || matters[0].(map[string]any)["title"] != "Smith v Jones" {
		t.Fatalf("cat's matters %v", matters)
	}

	// Bob reads: a receipt to Ann's user channel and the matter, then his count.
	path := fmt.Sprintf("/api/messages/%d/read", num(msg["id"]))
	rd := data(t, e.call("PUT", path, bob.token, nil).want(t, http.StatusOK))
	if num(rd["message_id"]) != num(msg["id"]) || num(rd["reader_id"]) != bob.ID || num(rd["client_matter_id"]) != m.ID || rd["read_at"] == nil {
		t.Fatalf("read %v", rd)
	}
	seen = map[string]bool{}
	for range 2 {
		f := annWS.Next()
		if f.Event != ev("MessageReceived") || !reflect.DeepEqual(f.DataMap(t), rd) {
			t.Fatalf("ann got %+v, want the receipt %v", f, rd)
		}
		seen[f.Channel] = true
	}
	if !seen[userChannel(ann.ID)] || !seen[matterChannel(m.ID)] {
		t.Fatalf("receipt went to %v", seen)
	}
	// Two channels, so either order.
	uc = nil
	for range 2 {
		switch f := bobWS.Next(); {
		case f.Event == ev("MessageReceived") && f.Channel == matterChannel(m.ID):
		case f.Event == ev("UnreadCountUpdated") && f.Channel == userChannel(bob.ID):
			uc = f.DataMap(t)
		default:
			t.Fatalf("bob got %+v after reading", f)
		}
	}
	if num(uc["unread_count"]) != 0 {
		t.Fatalf("after read %v", uc)
	}
	// Again: same read_at, nothing broadcast.
	again := data(t, e.call("PUT", path, bob.token, nil).want(t, http.StatusOK))
	if again["read_at"] != rd["read_at"] {
		t.Fatalf("second read_at %v, first %v", again["read_at"], rd["read_at"])
	}
	// Ann reading her own message: a no-op.
	own := data(t, e.call("PUT", path, ann.token, nil).want(t, http.StatusOK))
	if own["read_at"] != nil {
		t.Fatalf("own read %v", own)
	}
	annWS.expectNothingBeforeMarker()
	bobWS.expectNothingBeforeMarker()

	// Edit: sender only; MessageUpdated to the matter and the others.
	editPath := fmt.Sprintf("/api/messages/%d", num(msg["id"]))
	e.call("PUT", editPath, bob.token, map[string]any{"message": "hijack"}).wantMessage(t, http.StatusForbidden, "This action is unauthorized.")
	e.call("PUT", editPath, ann.token, map[string]any{"message": "   "}).wantInvalid(t, "message", "required")
	e.call("PUT", editPath, ann.token, map[string]any{"message": strings.Repeat("x", 5001)}).wantInvalid(t, "message", "not be greater than 5000 characters")
	e.call("PUT", "/api/messages/999999", ann.token, map[string]any{"message": "x"}).want(t, http.StatusNotFound)
	e.call("PUT", "/api/messages/abc", ann.token, map[string]any{"message": "x"}).want(t, http.StatusNotFound)
	ed := data(t, e.call("PUT", editPath, ann.token, map[string]any{"message": "Hello again"}).want(t, http.StatusOK))
	if ed["message"] != "Hello again" || ed["edited_at"] == nil || ed["created_at"] != msg["created_at"] {
		t.Fatalf("edited %v", ed)
	}
	f := annWS.ExpectOn(ev("MessageUpdated"), matterChannel(m.ID))
	if !reflect.DeepEqual(f.DataMap(t)["message"], asEvent(ed)) {
		t.Fatalf("MessageUpdated %v, REST %v", f.Data, ed)
	}
	for range 2 {
		if f := bobWS.Next(); f.Event != ev("MessageUpdated") {
			t.Fatalf("bob got %+v", f)
		}
	}
	annWS.expectNothingBeforeMarker() // not to the sender's own user channel
	bobWS.expectNothingBeforeMarker() // an edit changes no unread count

	// The listing returns what was sent and edited.
	list := e.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d", m.ID), bob.token, nil).want(t, http.StatusOK)
	if rows := list["data"].([]any); len(rows) != 1 || !reflect.DeepEqual(rows[0], ed) {
		t.Fatalf("list %v", list)
	}
}

func TestReadErrors(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	ann, bob, dan := e.user("Ann"), e.user("Bob"), e.user("Dan")
	m := e.matter("M", ann, bob)
	msg := e.send(ann, m, "hi")
	if reply := e.send(bob, m, "hello"); num(reply["previous_id"]) != num(msg["id"]) {
		t.Fatalf("the reply's previous_id %v, want %v", reply["previous_id"], msg["id"])
	}
	e.call("PUT", "/api/messages/999999/read", bob.token, nil).wantMessage(t, http.StatusNotFound, "Message not found.")
	e.call("PUT", "/api/messages/0/read", bob.token, nil).want(t, http.StatusNotFound)
	e.call("PUT", fmt.Sprintf("/api/messages/%d/read", num(msg["id"])), dan.token, nil).wantMessage(t, http.StatusForbidden, "This action is unauthorized.")
	if _, total := e.unread(bob); total != 1 {
		t.Fatalf("bob unread %d", total)
	}
}

func TestSendValidation(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	ann, dan := e.user("Ann"), e.user("Dan")
	m := e.matter("M", ann)
	send := func(p person, body any) response { return e.call("POST", "/api/messages/send", p.token, body) }

	send(ann, map[string]any{"client_matter_id": m.ID}).wantInvalid(t, "message", "The message field is required.")
	send(ann, map[string]any{"message": " \n ", "client_matter_id": m.ID}).wantInvalid(t, "message", "The message field is required.")
	send(ann, map[string]any{"message": 42, "client_matter_id": m.ID}).wantInvalid(t, "message", "The message field must be a string.")
	// The limit counts characters, not bytes.
	send(ann, map[string]any{"message": strings.Repeat("é", 5000), "client_matter_id": m.ID}).want(t, http.StatusCreated)
	send(ann, map[string]any{"message": strings.Repeat("é", 5001), "client_matter_id": m.ID}).
		wantInvalid(t, "message", "The message field must not be greater than 5000 characters.")
	send(ann, map[string]any{"message": "hi"}).wantInvalid(t, "client_matter_id", "The client matter id field is required.")
	send(ann, map[string]any{"message": "hi", "client_matter_id": "four"}).wantInvalid(t, "client_matter_id", "must be an integer")
	send(ann, map[string]any{"message": "hi", "client_matter_id": 1.5}).wantInvalid(t, "client_matter_id", "must be an integer")
	send(ann, map[string]any{"message": "hi", "client_matter_id": 999}).wantInvalid(t, "client_matter_id", "The selected client matter id is invalid.")
	r := send(ann, map[string]any{})
	r.wantInvalid(t, "message", "required", "client_matter_id", "required")
	if r.body["message"] != "The message field is required. (and 1 more error)" {
		t.Fatalf("message %q", r.body["message"])
	}
	send(dan, map[string]any{"message": "hi", "client_matter_id": m.ID}).wantMessage(t, http.StatusForbidden, "This action is unauthorized.")
	send(ann, `[1,2]`).want(t, http.StatusBadRequest)
	send(ann, `{"message": "`+strings.Repeat("x", maxBody)+`"}`).want(t, http.StatusRequestEntityTooLarge)

	// Strings of digits pass the integer rule, and form bodies are accepted.
	send(ann, map[string]any{"message": "hi", "client_matter_id": strconv.FormatInt(m.ID, 10)}).want(t, http.StatusCreated)
	send(ann, form{"message": {"from a form"}, "client_matter_id": {strconv.FormatInt(m.ID, 10)}}).want(t, http.StatusCreated)

	// A configured limit applies.
	e2 := start(t, sqliteDB(t), func(c *config.Config) { c.MaxMessageLength = 3 })
	a2 := e2.user("Ann")
	m2 := e2.matter("M", a2)
	e2.call("POST", "/api/messages/send", a2.token, map[string]any{"message": "four", "client_matter_id": m2.ID}).
		wantInvalid(t, "message", "not be greater than 3 characters")
}

func TestListMessages(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	ann, bob, dan := e.user("Ann"), e.user("Bob"), e.user("Dan")
	m := e.matter("M", ann, bob)
	other := e.matter("Other", ann, bob)
	var ids []int64
	for i := range 25 {
		ids = append(ids, num(e.send(ann, m, fmt.Sprint("m", i))["id"]))
	}
	e.send(ann, other, "elsewhere")
	list := func(q string) map[string]any {
		return e.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d%s", m.ID, q), bob.token, nil).want(t, http.StatusOK)
	}
	idsOf := func(b map[string]any) []int64 {
		var out []int64
		for _, r := range b["data"].([]any) {
			out = append(out, num(r.(map[string]any)["id"]))
		}
		return out
	}
	page := func(b map[string]any, current, per, total, last int, from, to any) {
		t.Helper()
		want := map[string]any{"current_page": float64(current), "per_page": float64(per), "total": float64(total), "last_page": float64(last), "from": from, "to": to}
		for k, v := range want {
			if b[k] != v {
				t.Fatalf("%s = %v, want %v (%v)", k, b[k], v, b)
			}
		}
	}
	rev := func(s []int64) []int64 {
		out := make([]int64, len(s))
		for i, v := range s {
			out[len(s)-1-i] = v
		}
		return out
	}

	// Default: newest first, 20 a page.
	b := list("")
	page(b, 1, 20, 25, 2, float64(1), float64(20))
	if got := idsOf(b); !reflect.DeepEqual(got, rev(ids)[:20]) {
		t.Fatalf("page 1 %v", got)
	}
	b = list("&page=3&limit=10")
	page(b, 3, 10, 25, 3, float64(21), float64(25))
	if got := idsOf(b); !reflect.DeepEqual(got, rev(ids)[20:]) {
		t.Fatalf("page 3 %v", got)
	}
	b = list("&page=9&limit=10")
	page(b, 9, 10, 25, 3, nil, nil)
	if len(b["data"].([]any)) != 0 {
		t.Fatalf("past the end: %v", b)
	}
	// Catch-up after being offline: everything after the last id seen, oldest first.
	b = list(fmt.Sprintf("&after_id=%d&limit=10", ids[9]))
	page(b, 1, 10, 15, 2, float64(1), float64(10))
	if got := idsOf(b); !reflect.DeepEqual(got, ids[10:20]) {
		t.Fatalf("after_id %v", got)
	}
	b = list(fmt.Sprintf("&after_id=%d", ids[19]))
	if got := idsOf(b); !reflect.DeepEqual(got, ids[20:]) {
		t.Fatalf("after_id rest %v", got)
	}
	// Scrolling back: newest before the cursor first.
	b = list(fmt.Sprintf("&before_id=%d&limit=5", ids[10]))
	page(b, 1, 5, 10, 2, float64(1), float64(5))
	if got := idsOf(b); !reflect.DeepEqual(got, rev(ids[5:10])) {
		t.Fatalf("before_id %v", got)
	}

	for _, tc := range []struct{ q, field, text string }{
		{"&limit=0", "limit", "at least 1"},
		{"&limit=101", "limit", "not be greater than 100"},
		{"&page=0", "page", "at least 1"},
		{"&page=abc", "page", "must be an integer"},
		{"&after_id=-1", "after_id", "at least 1"},
		{"&before_id=x", "before_id", "must be an integer"},
		{fmt.Sprintf("&page=2&after_id=%d", ids[0]), "page", "cannot be combined"},
	} {
		list2 := e.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d%s", m.ID, tc.q), bob.token, nil)
		list2.wantInvalid(t, tc.field, tc.text)
	}
	e.call("GET", "/api/messages", bob.token, nil).wantInvalid(t, "client_matter_id", "required")
	e.call("GET", "/api/messages?client_matter_id=999", bob.token, nil).wantInvalid(t, "client_matter_id", "invalid")
	e.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d", m.ID), dan.token, nil).wantMessage(t, http.StatusForbidden, "This action is unauthorized.")
}

func TestBroadcastingAuth(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	ann, dan := e.user("Ann"), e.user("Dan")
	m := e.matter("M", ann)
	const sock = "123.456"
	auth := func(path string, p person, channel string, asJSON bool) response {
		if asJSON {
			return e.call("POST", path, p.token, map[string]any{"socket_id": sock, "channel_name": channel})
		}
		return e.call("POST", path, p.token, form{"socket_id": {sock}, "channel_name": {channel}})
	}
	for _, path := range []string{"/broadcasting/auth", "/api/broadcasting/auth"} {
		for _, asJSON := range []bool{false, true} {
			ch := userChannel(ann.ID)
			b := auth(path, ann, ch, asJSON).want(t, http.StatusOK)
			if b["auth"] != pusher.ChannelAuth(testkit.Key, testkit.Secret, sock, ch, "") || b["channel_data"] != nil {
				t.Fatalf("%s %s: %v", path, ch, b)
			}
			ch = matterChannel(m.ID)
			b = auth(path, ann, ch, asJSON).want(t, http.StatusOK)
			if b["auth"] != pusher.ChannelAuth(testkit.Key, testkit.Secret, sock, ch, "") {
				t.Fatalf("%s %s: %v", path, ch, b)
			}
			ch = fmt.Sprintf("presence-matter.%d", m.ID)
			b = auth(path, ann, ch, asJSON).want(t, http.StatusOK)
			wantCD := fmt.Sprintf(`{"user_id":"%d","user_info":{"id":%d,"name":"Ann"}}`, ann.ID, ann.ID)
			if b["channel_data"] != wantCD || b["auth"] != pusher.ChannelAuth(testkit.Key, testkit.Secret, sock, ch, wantCD) {
				t.Fatalf("%s %s: %v", path, ch, b)
			}
		}
	}
	for _, ch := range []string{
		userChannel(ann.ID),                                          // someone else's user channel
		matterChannel(m.ID), fmt.Sprintf("presence-matter.%d", m.ID), // not a member
		matterChannel(999), "private-matter.01", "private-matter.x", "private-user.", "private-other.1", "public", "presence-user.1",
	} {
		auth("/broadcasting/auth", dan, ch, false).wantMessage(t, http.StatusForbidden, "This action is unauthorized.")
	}
	e.call("POST", "/broadcasting/auth", ann.token, form{"socket_id": {"abc"}, "channel_name": {userChannel(ann.ID)}}).
		wantInvalid(t, "socket_id", "format is invalid")
	e.call("POST", "/broadcasting/auth", ann.token, form{}).
		wantInvalid(t, "socket_id", "required", "channel_name", "required")

	// On the wire: a member's subscription succeeds; a non-member cannot
	// get a signature, and a subscription without one is refused.
	e.dialAs(ann, matterChannel(m.ID), fmt.Sprintf("presence-matter.%d", m.ID))
	d := e.dial()
	e.call("POST", "/broadcasting/auth", dan.token, form{"socket_id": {d.SocketID}, "channel_name": {matterChannel(m.ID)}}).want(t, http.StatusForbidden)
	_ = d.Conn.WriteJSON(map[string]any{"event": "pusher:subscribe", "data": map[string]any{"channel": matterChannel(m.ID), "auth": testkit.Key + ":forged"}})
	if f := d.Next(); f.Event != "pusher:subscription_error" && f.Event != "pusher:error" {
		t.Fatalf("forged subscription: %+v", f)
	}
}

func TestRateLimit(t *testing.T) {
	e := start(t, sqliteDB(t), func(c *config.Config) { c.APIRateLimit = 3 })
	ann, bob := e.user("Ann"), e.user("Bob")
	for i := range 3 {
		r := e.call("GET", "/api/user", ann.token, nil)
		r.want(t, http.StatusOK)
		if r.header.Get("X-RateLimit-Limit") != "3" || r.header.Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) {
			t.Fatalf("request %d headers %v", i, r.header)
		}
	}
	r := e.call("GET", "/api/user", ann.token, nil)
	r.wantMessage(t, http.StatusTooManyRequests, "Too Many Attempts.")
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("remaining %q", r.header.Get("X-RateLimit-Remaining"))
	}
	e.call("GET", "/api/user", bob.token, nil).want(t, http.StatusOK) // per token
}

// TestChannelAuthRateLimit: channel authorizations have their own budget,
// so a client joining many matters is not refused by the API's limit (and
// does not use it up), while the authorizations are limited on their own.
func TestChannelAuthRateLimit(t *testing.T) {
	e := start(t, sqliteDB(t), func(c *config.Config) { c.APIRateLimit, c.AuthRateLimit = 2, 4 })
	ann := e.user("Ann")
	ch := userChannel(ann.ID)
	for i, path := range []string{"/api/broadcasting/auth", "/broadcasting/auth", "/api/broadcasting/auth", "/broadcasting/auth"} {
		r := e.call("POST", path, ann.token, form{"socket_id": {"1.1"}, "channel_name": {ch}})
		r.want(t, http.StatusOK)
		if r.header.Get("X-RateLimit-Limit") != "4" || r.header.Get("X-RateLimit-Remaining") != strconv.Itoa(3-i) {
			t.Fatalf("authorization %d headers %v", i, r.header)
		}
	}
	e.call("POST", "/broadcasting/auth", ann.token, form{"socket_id": {"1.1"}, "channel_name": {ch}}).
		wantMessage(t, http.StatusTooManyRequests, "Too Many Attempts.")
	// The API's own budget is untouched.
	for range 2 {
		e.call("GET", "/api/user", ann.token, nil).want(t, http.StatusOK)
	}
	e.call("GET", "/api/user", ann.token, nil).want(t, http.StatusTooManyRequests)
}

func TestLimiterWindow(t *testing.T) {
	l := newLimiter(2, time.Minute)
	t0 := time.Unix(1000, 0)
	for i, want := range []bool{true, true, false} {
		if _, _, ok := l.take(1, t0.Add(time.Duration(i)*time.Second)); ok != want {
			t.Fatalf("request %d: ok=%v", i, ok)
		}
	}
	if _, retry, _ := l.take(1, t0.Add(30*time.Second)); retry != 30*time.Second {
		t.Fatalf("retry %v", retry)
	}
	if rem, _, ok := l.take(1, t0.Add(time.Minute)); !ok || rem != 1 {
		t.Fatalf("new window: %v %v", rem, ok)
	}
	l.take(2, t0.Add(3*time.Minute)) // sweeps finished windows
	if len(l.windows) != 1 {
		t.Fatalf("%d windows kept", len(l.windows))
	}
}

func TestCORS(t *testing.T) {
	e := start(t, sqliteDB(t), func(c *config.Config) { c.Apps[0].AllowedOrigins = []string{"app.example.com"} })
	ann := e.user("Ann")
	r := e.call("OPTIONS", "/api/messages/send", "", nil, "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST")
	r.want(t, http.StatusNoContent)
	if r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "X-Socket-ID") ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight headers %v", r.header)
	}
	e.call("OPTIONS", "/broadcasting/auth", "", nil, "Origin", "https://app.example.com").want(t, http.StatusNoContent)
	r = e.call("GET", "/api/user", ann.token, nil, "Origin", "https://app.example.com")
	if r.want(t, http.StatusOK); r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("no CORS header: %v", r.header)
	}
	r = e.call("GET", "/api/user", "", nil, "Origin", "https://app.example.com")
	if r.want(t, http.StatusUnauthorized); r.header.Get("Access-Control-Allow-Origin") == "" {
		t.Fatal("a 401 must be readable by the browser too")
	}
	r = e.call("GET", "/api/user", ann.token, nil, "Origin", "https://evil.example.org")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("disallowed origin allowed: %v", r.header)
	}
	e.call("OPTIONS", "/api/user", "", nil, "Origin", "https://evil.example.org").want(t, http.StatusForbidden)
}

func TestEventNamespace(t *testing.T) {
	for _, tc := range []struct{ ns, want string }{
		{"", "MessageSent"},
		{`Chat\Events\`, `Chat\Events\MessageSent`},
	} {
		e := start(t, sqliteDB(t), func(c *config.Config) { c.EventNamespace = tc.ns })
		ann, bob := e.user("Ann"), e.user("Bob")
		m := e.matter("M", ann, bob)
		w := e.dialAs(bob, matterChannel(m.ID))
		e.send(ann, m, "hi")
		w.ExpectOn(tc.want, matterChannel(m.ID))
	}
}

// TestDatabaseUnavailable: real database failures (a closed store; a
// trigger that makes inserts fail after authentication succeeded) answer 503
// and publish nothing, and leave no half-written data.
func TestDatabaseUnavailable(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		ann, bob := e.user("Ann"), e.user("Bob")
		m := e.matter("M", ann, bob)
		first := e.send(ann, m, "before the outage")
		e.unread(bob) // its UnreadCountUpdated has been published by now
		w := e.dial()
		w.join(ann, userChannel(ann.ID))
		w.join(bob, userChannel(bob.ID))
		w.join(bob, matterChannel(m.ID))
		w.expectNothingBeforeMarker()

		undo := db.failInserts(t, "messages")
		e.call("POST", "/api/messages/send", ann.token, map[string]any{"message": "lost?", "client_matter_id": m.ID}).
			wantMessage(t, http.StatusServiceUnavailable, "The database is unavailable; try again.")
		undo()
		undo = db.failInserts(t, "message_reads")
		r := e.call("PUT", fmt.Sprintf("/api/messages/%d/read", num(first["id"])), bob.token, nil)
		r.wantMessage(t, http.StatusServiceUnavailable, "The database is unavailable; try again.")
		if r.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		undo()
		w.expectNothingBeforeMarker()
		msgs, total, err := e.st.ListMessages(context.Background(), persistence.MessageQuery{MatterID: m.ID, Page: 1, Limit: 10})
		if err != nil || total != 1 || msgs[0].Body != "before the outage" {
			t.Fatalf("after the outage: %v %d %v", msgs, total, err)
		}
		if counts, _ := e.unread(bob); counts[m.ID] != 1 {
			t.Fatalf("bob unread %v", counts)
		}

		// The database gone altogether.
		e.st.Close()
		for _, rt := range []struct {
			method, path string
			body         any
		}{
			// (GET /api/user answers from the token cache: no query.)
			{"GET", "/api/matters", nil},
			{"POST", "/api/messages/send", map[string]any{"message": "x", "client_matter_id": m.ID}},
			{"PUT", fmt.Sprintf("/api/messages/%d/read", num(first["id"])), nil},
			{"POST", "/api/auth/login", map[string]any{"email": "ann@example.com", "password": password}},
		} {
			e.call(rt.method, rt.path, bob.token, rt.body).wantMessage(t, http.StatusServiceUnavailable, "The database is unavailable; try again.")
		}
		w.expectNothingBeforeMarker()
	})
}

// TestUnreadCountFailureIs503: the counters answer from the database; when
// it is down, so is the count.
func TestUnreadCountFailureIs503(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	ann := e.user("Ann")
	e.matter("M", ann)
	// Authenticate against a live store, then break the counts query only.
	e.db.exec(t, `ALTER TABLE members RENAME TO members_gone`)
	e.call("GET", "/api/messages/unread-count", ann.token, nil).wantMessage(t, http.StatusServiceUnavailable, "The database is unavailable; try again.")
	e.call("GET", "/api/matters", ann.token, nil).want(t, http.StatusServiceUnavailable)
}

// TestRestart: history, read state, tokens and unread counts survive a
// restart on the same database.
func TestRestart(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		ann, bob := e.user("Ann"), e.user("Bob")
		m := e.matter("M", ann, bob)
		var ids []int64
		for i := range 3 {
			ids = append(ids, num(e.send(ann, m, fmt.Sprint("m", i))["id"]))
		}
		readAt := data(t, e.call("PUT", fmt.Sprintf("/api/messages/%d/read", ids[0]), bob.token, nil).want(t, http.StatusOK))["read_at"]
		e.close()

		e2 := start(t, db, nil)
		list := e2.call("GET", fmt.Sprintf("/api/messages?client_matter_id=%d", m.ID), bob.token, nil).want(t, http.StatusOK)
		if num(list["total"]) != 3 {
			t.Fatalf("history after restart %v", list)
		}
		if counts, total := e2.unread(bob); total != 2 || counts[m.ID] != 2 {
			t.Fatalf("bob unread after restart %v %d", counts, total)
		}
		w := e2.dialAs(ann, userChannel(ann.ID))
		again := data(t, e2.call("PUT", fmt.Sprintf("/api/messages/%d/read", ids[0]), bob.token, nil).want(t, http.StatusOK))
		if again["read_at"] != readAt {
			t.Fatalf("read_at %v after restart, was %v", again["read_at"], readAt)
		}
		w.expectNothingBeforeMarker() // already read: no second receipt
	})
}
