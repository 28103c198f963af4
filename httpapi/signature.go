package httpapi

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
)

// MaxClockSkew is how far auth_timestamp may be from now (Pusher: 600 s).
const MaxClockSkew = 600 * time.Second

// signedQuery is the string Pusher signs: lower-cased keys, sorted, values
// as sent (not re-escaped), auth_signature left out.
func signedQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	lower := make(map[string]string, len(q))
	for k, v := range q {
		lk := strings.ToLower(k)
		if lk == "auth_signature" || len(v) == 0 {
			continue
		}
		keys = append(keys, lk)
		lower[lk] = v[0]
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(lower[k])
	}
	return b.String()
}

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
	if len(body) > 0 {
		sum := md5.Sum(body)
		if q.Get("body_md5") != hex.EncodeToString(sum[:]) {
			return "body_md5 does not match the body"
		}
	}
	sig := q.Get("auth_signature")
	if sig == "" {
		return "missing auth_signature"
	}
	want := actors.Sign(app.Secret, method+"\n"+path+"\n"+signedQuery(q))
	if !actors.ValidAuth(strings.ToLower(sig), want) {
		return "invalid auth_signature: expected hex(HMAC-SHA256(secret, \"METHOD\\nPATH\\nsorted query\")); check the app secret"
	}
	return ""
}
