package pusher

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sign is hex(HMAC-SHA256(secret, message)), the one signature every part of
// the Pusher protocol uses: channel authorization, user sign-in, the HTTP
// API and webhooks.
func Sign(secret, message string) string { return SignBytes(secret, []byte(message)) }

// SignBytes is Sign of a byte message (a webhook's body).
func SignBytes(secret string, message []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(message)
	return hex.EncodeToString(m.Sum(nil))
}

// ValidAuth compares a presented signature (or "key:signature") with the
// expected one in constant time.
func ValidAuth(presented, expected string) bool {
	return hmac.Equal([]byte(presented), []byte(expected))
}

// ChannelAuth is the "auth" value a client must present to join a private,
// encrypted or presence channel: "key:" + Sign(secret,
// "socket_id:channel[:channel_data]"); channelData is empty except for
// presence.
func ChannelAuth(key, secret, socketID, channel, channelData string) string {
	msg := socketID + ":" + channel
	if channelData != "" {
		msg += ":" + channelData
	}
	return key + ":" + Sign(secret, msg)
}

// UserAuth is the "auth" value of pusher:signin.
func UserAuth(key, secret, socketID, userData string) string {
	return key + ":" + Sign(secret, socketID+"::user::"+userData)
}

// CanonicalQuery is the query string an HTTP API request's signature covers:
// lower-cased keys, sorted, values as sent (not escaped again),
// auth_signature left out.
func CanonicalQuery(q url.Values) string {
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

// RequestSignature is the auth_signature of an HTTP API request.
func RequestSignature(secret, method, path string, q url.Values) string {
	return Sign(secret, method+"\n"+path+"\n"+CanonicalQuery(q))
}

// BodyMD5 is the body_md5 parameter of a request with a body.
func BodyMD5(body []byte) string {
	sum := md5.Sum(body)
	return hex.EncodeToString(sum[:])
}

// SignRequest adds what a Pusher server SDK adds to an HTTP API request's
// query: auth_key, auth_timestamp, auth_version, body_md5 (with a body) and
// auth_signature. params may be nil.
func SignRequest(key, secret, method, path string, params url.Values, body []byte, now time.Time) url.Values {
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("auth_key", key)
	q.Set("auth_timestamp", strconv.FormatInt(now.Unix(), 10))
	q.Set("auth_version", "1.0")
	if len(body) > 0 {
		q.Set("body_md5", BodyMD5(body))
	}
	q.Set("auth_signature", RequestSignature(secret, method, path, q))
	return q
}
