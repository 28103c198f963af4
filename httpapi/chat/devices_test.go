package chat

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// testSubscription is a Web Push subscription as a browser's
// PushSubscription.toJSON() gives it, with a fresh P-256 key.
func testSubscription(t testing.TB, endpoint string) map[string]any {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 16)
	rand.Read(secret)
	return map[string]any{"endpoint": endpoint, "keys": map[string]any{
		"p256dh": base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
		"auth":   base64.RawURLEncoding.EncodeToString(secret),
	}}
}

// TestDevicesAPI: POST /api/devices registers (idempotent per token, a
// token moves to whoever registers it last), GET lists the caller's own,
// DELETE removes only the caller's; the admin API lists and removes a
// user's devices.
func TestDevicesAPI(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := startAdmin(t, db, nil)
		ann, bob := e.user("Ann"), e.user("Bob")
		e.call("POST", "/api/devices", "", map[string]any{"platform": "fcm", "token": "x"}).want(t, http.StatusUnauthorized)
		e.call("POST", "/api/devices", ann.token, map[string]any{"platform": "sms", "token": "x"}).wantInvalid(t, "platform", "one of")
		e.call("POST", "/api/devices", ann.token, map[string]any{"platform": "fcm"}).wantInvalid(t, "token", "required")
		e.call("POST", "/api/devices", ann.token, map[string]any{"platform": "apns", "token": "not-hex"}).wantInvalid(t, "token", "hexadecimal")
		e.call("POST", "/api/devices", ann.token, map[string]any{"platform": "webpush", "subscription": map[string]any{"endpoint": "http://insecure.example/1"}}).
			wantInvalid(t, "subscription.endpoint", "https", "subscription.keys.p256dh", "P-256", "subscription.keys.auth", "16 bytes")

		fcm := data(t, e.call("POST", "/api/devices", ann.token, map[string]any{"platform": "fcm", "token": "fcm-token-1"}).want(t, http.StatusCreated))
		if fcm["platform"] != "fcm" || fcm["token"] != "fcm-token-1" || num(fcm["user_id"]) != ann.ID {
			t.Fatalf("registered %v", fcm)
		}
		again := data(t, e.call("POST", "/api/devices", ann.token, map[string]any{"platform": "fcm", "token": "fcm-token-1"}).want(t, http.StatusOK))
		if num(again["id"]) != num(fcm["id"]) {
			t.Fatalf("a repeat made device %v, want %v", again["id"], fcm["id"])
		}
		apns := strings.Repeat("ab", 32)
		apnsDev := data(t, e.call("POST", "/api/devices", ann.token, map[string]any{"platform": "apns", "token": apns}).want(t, http.StatusCreated))
		web := data(t, e.call("POST", "/api/devices", ann.token, map[string]any{"platform": "webpush",
			"subscription": testSubscription(t, "https://push.example/send/abc")}).want(t, http.StatusCreated))
		if web["endpoint"] != "https://push.example/send/abc" || web["token"] != nil {
			t.Fatalf("web push device %v", web)
		}
		list := e.call("GET", "/api/devices", ann.token, nil).want(t, http.StatusOK)["data"]
		if got := fmt.Sprint(ids(t, list)); got != fmt.Sprint([]int64{num(fcm["id"]), num(apnsDev["id"]), num(web["id"])}) {
			t.Fatalf("Ann's devices %s: %v", got, list)
		}

		// Bob cannot delete Ann's; the token moves to Bob when his phone registers it.
		e.call("DELETE", fmt.Sprintf("/api/devices/%d", num(fcm["id"])), bob.token, nil).wantMessage(t, http.StatusNotFound, "Device not found.")
		moved := data(t, e.call("POST", "/api/devices", bob.token, map[string]any{"platform": "fcm", "token": "fcm-token-1"}).want(t, http.StatusCreated))
		if num(moved["id"]) != num(fcm["id"]) || num(moved["user_id"]) != bob.ID {
			t.Fatalf("moved %v", moved)
		}
		if n := len(e.call("GET", "/api/devices", ann.token, nil).want(t, http.StatusOK)["data"].([]any)); n != 2 {
			t.Fatalf("Ann keeps %d devices, want 2", n)
		}
		e.call("DELETE", fmt.Sprintf("/api/devices/%d", num(fcm["id"])), bob.token, nil).want(t, http.StatusNoContent)
		e.call("DELETE", fmt.Sprintf("/api/devices/%d", num(fcm["id"])), bob.token, nil).want(t, http.StatusNotFound)

		// The admin API.
		got := e.admin("GET", idPath("/users/%d/devices", ann.ID), nil, nil).want(t, http.StatusOK)
		if len(got["devices"].([]any)) != 2 {
			t.Fatalf("admin list %v", got)
		}
		e.admin("POST", idPath("/users/%d/devices/%d/delete", bob.ID, num(web["id"])), nil, nil).wantError(t, http.StatusNotFound, "no device")
		e.admin("DELETE", idPath("/users/%d/devices/%d", ann.ID, num(web["id"])), nil, nil).want(t, http.StatusOK)
		if r := e.admin("POST", idPath("/users/%d/devices/delete", ann.ID), nil, nil).want(t, http.StatusOK); num(r["removed"]) != 1 {
			t.Fatalf("remove all: %v", r)
		}
		e.admin("GET", "/users/999999/devices", nil, nil).wantError(t, http.StatusNotFound, "no user")
	})
}

// TestMatterSettings: PUT /api/matters/{id}/settings {"muted"} and GET.
func TestMatterSettings(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		ann, bob := e.user("Ann"), e.user("Bob")
		m := e.matter("M", ann)
		path := fmt.Sprintf("/api/matters/%d/settings", m.ID)
		if d := data(t, e.call("GET", path, ann.token, nil).want(t, http.StatusOK)); d["muted"] != false || num(d["client_matter_id"]) != m.ID {
			t.Fatalf("default %v", d)
		}
		e.call("PUT", path, ann.token, map[string]any{"muted": "yes"}).wantInvalid(t, "muted", "true or false")
		e.call("PUT", path, bob.token, map[string]any{"muted": true}).wantMessage(t, http.StatusForbidden, msgForbidden)
		e.call("GET", path, bob.token, nil).want(t, http.StatusForbidden)
		e.call("PUT", "/api/matters/999999/settings", ann.token, map[string]any{"muted": true}).wantMessage(t, http.StatusNotFound, "Matter not found.")
		if d := data(t, e.call("PUT", path, ann.token, map[string]any{"muted": true}).want(t, http.StatusOK)); d["muted"] != true {
			t.Fatalf("muted %v", d)
		}
		if d := data(t, e.call("GET", path, ann.token, nil).want(t, http.StatusOK)); d["muted"] != true {
			t.Fatalf("after PUT %v", d)
		}
	})
}
