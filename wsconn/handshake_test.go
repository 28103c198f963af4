package wsconn

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorilla/websocket"
)

func TestHelloIsRFC6455(t *testing.T) {
	// RFC 6455, section 1.3.
	got := string(appendHello(nil, "dGhlIHNhbXBsZSBub25jZQ=="))
	want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	if got != want {
		t.Fatalf("101 response\n got %q\nwant %q", got, want)
	}
	if len(got) != helloSize {
		t.Fatalf("helloSize %d, response is %d bytes", helloSize, len(got))
	}
}

func TestHandshakeChecks(t *testing.T) {
	for _, tc := range []struct {
		values []string
		token  string
		want   bool
	}{
		{[]string{"Upgrade"}, "upgrade", true},
		{[]string{"keep-alive, Upgrade"}, "upgrade", true},
		{[]string{"keep-alive", " upgrade\t"}, "upgrade", true},
		{[]string{" ,Upgrade"}, "upgrade", false}, // gorilla gives up at an empty element
		{[]string{"upgraded"}, "upgrade", false},
		{nil, "upgrade", false},
		{[]string{""}, "upgrade", false},
	} {
		if got := hasToken(tc.values, tc.token); got != tc.want {
			t.Errorf("hasToken(%q, %q) = %v", tc.values, tc.token, got)
		}
	}
	for key, want := range map[string]bool{
		"dGhlIHNhbXBsZSBub25jZQ==":     true,
		"dGhlIHNhbXBsZSBub25jZQ":       false, // no padding
		"dGhlIHNhbXBsZSBub25jZQ=x":     false,
		"":                             false,
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAA": false, // 21 bytes
	} {
		if got := validKey(key); got != want {
			t.Errorf("validKey(%q) = %v", key, got)
		}
	}
}

// gorillaAccepts reports whether gorilla's Upgrader passes the request's
// handshake checks: with a ResponseWriter that cannot be hijacked, passing
// them all ends in its 500 "does not implement http.Hijacker".
func gorillaAccepts(r *http.Request) bool {
	rec := httptest.NewRecorder()
	u := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	_, _ = u.Upgrade(rec, r, nil)
	return rec.Code == http.StatusInternalServerError
}

// FuzzHandshake: the hand-checked fast path never accepts a handshake that
// gorilla (which answers everything else) would refuse.
func FuzzHandshake(f *testing.F) {
	f.Add("GET", "Upgrade", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ==")
	f.Add("GET", "keep-alive, Upgrade", "WebSocket", "13", "AAAAAAAAAAAAAAAAAAAAAA==")
	f.Add("POST", "Upgrade", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ==")
	f.Add("GET", "Upgrade", "websocket", "8", "dGhlIHNhbXBsZSBub25jZQ==")
	f.Add("GET", "Upgrade", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ")
	f.Fuzz(func(t *testing.T, method, connection, upgrade, version, key string) {
		r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/app/k", nil)
		if err != nil {
			t.Skip()
		}
		r.Method = method
		r.Header.Set("Connection", connection)
		r.Header.Set("Upgrade", upgrade)
		r.Header.Set("Sec-Websocket-Version", version)
		r.Header.Set("Sec-Websocket-Key", key)
		ours := method == http.MethodGet && hasToken(r.Header["Connection"], "upgrade") &&
			hasToken(r.Header["Upgrade"], "websocket") && hasToken(r.Header["Sec-Websocket-Version"], "13") &&
			validKey(r.Header.Get("Sec-Websocket-Key"))
		if ours && !gorillaAccepts(r) {
			t.Fatalf("fast path accepts a handshake gorilla refuses: %s Connection=%q Upgrade=%q Version=%q Key=%q",
				method, connection, upgrade, version, key)
		}
	})
}
