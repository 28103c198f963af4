package chat

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/parley-chat/parley/persistence"
)

// TestTextInputRejectsNULAndBadUTF8: PostgreSQL refuses NUL in text (error
// 22021) and SQLite would store it; both must answer 422 naming the field
// before the database sees the value.
func TestTextInputRejectsNULAndBadUTF8(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		ann := e.user("Ann")
		m := e.matter("M", ann)
		msg := e.send(ann, m, "clean")
		mid := strconv.FormatInt(m.ID, 10)
		const nul = "must not contain NUL characters"
		const utf = "must be valid UTF-8"

		for _, tc := range []struct {
			name, method, path, token string
			body                      any
			field, text               string
		}{
			{"login email NUL", "POST", "/api/auth/login", "", map[string]any{"email": "ann\x00@example.com", "password": password}, "email", nul},
			{"login password NUL", "POST", "/api/auth/login", "", map[string]any{"email": "ann@example.com", "password": password + "\x00"}, "password", nul},
			{"login email bad UTF-8 (form)", "POST", "/api/auth/login", "", form{"email": {"ann\xff@example.com"}, "password": {password}}, "email", utf},
			{"send NUL", "POST", "/api/messages/send", ann.token, map[string]any{"message": "a\x00b", "client_matter_id": m.ID}, "message", nul},
			{"send bad UTF-8 (form)", "POST", "/api/messages/send", ann.token, form{"message": {"a\xc3\x28"}, "client_matter_id": {mid}}, "message", utf},
			{"edit NUL", "PUT", fmt.Sprintf("/api/messages/%d", num(msg["id"])), ann.token, map[string]any{"message": "\x00"}, "message", nul},
			{"auth socket id NUL", "POST", "/broadcasting/auth", ann.token, form{"socket_id": {"1.2\x00"}, "channel_name": {"private-user.1"}}, "socket_id", nul},
			{"auth channel NUL", "POST", "/api/broadcasting/auth", ann.token, map[string]any{"socket_id": "1.2", "channel_name": "private-user.1\x00"}, "channel_name", nul},
			{"history id NUL", "GET", "/api/messages?client_matter_id=" + mid + "%00", ann.token, nil, "client_matter_id", "must be an integer"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e.call(tc.method, tc.path, tc.token, tc.body).wantInvalid(t, tc.field, tc.text)
			})
		}
		msgs, total, err := e.st.ListMessages(context.Background(), persistence.MessageQuery{MatterID: m.ID, Page: 1, Limit: 10})
		if err != nil || total != 1 || msgs[0].Body != "clean" {
			t.Fatalf("history: %v %d %v", msgs, total, err)
		}
		// The API is still fine for clean input.
		e.call("POST", "/api/auth/login", "", map[string]any{"email": "ann@example.com", "password": password}).want(t, http.StatusOK)
	})
}
