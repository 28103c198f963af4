package httpapi

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/pusher"
)

// MaxClockSkew is how far auth_timestamp may be from now (Pusher: 600 s).
const MaxClockSkew = 600 * time.Second

// verifyRequest checks a signed Pusher HTTP API request. It returns a message
// saying what is wrong, or "".
func verifyRequest(app *config.App, method, path string, q url.Values, body []byte, now time.Time) string {
	key := q.Get("auth_key")
	if key == "" {
		return "missing auth_key: sign the request with a Pusher server SDK"
	}
	if key != app.Key {
		return "auth_key does not match this app's key"
	}
	ts, err := strconv.ParseInt(q.Get("auth_timestamp"), 10, 64)
	if err != nil {
		return "missing or invalid auth_timestamp"
	}
	if d := now.Sub(time.Unix(ts, 0)); d > MaxClockSkew || d < -MaxClockSkew {
		return fmt.Sprintf("auth_timestamp is %s away from the server's time; the limit is 600s (check the clock)", d.Round(time.Second))
	}
	if v := q.Get("auth_version"); v != "" && v != "1.0" {
		return "auth_version must be 1.0"
	}
	if len(body) > 0 && q.Get("body_md5") != pusher.BodyMD5(body) {
		return "body_md5 does not match the body"
	}
	sig := q.Get("auth_signature")
	if sig == "" {
		return "missing auth_signature"
	}
	want := pusher.RequestSignature(app.Secret, method, path, q)
	if !pusher.ValidAuth(strings.ToLower(sig), want) {
		return "invalid auth_signature: expected hex(HMAC-SHA256(secret, \"METHOD\\nPATH\\nsorted query\")); check the app secret"
	}
	return ""
}
