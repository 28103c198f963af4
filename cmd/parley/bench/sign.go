package bench

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

// hmacHex is hex(HMAC-SHA256(secret, msg)), the one primitive behind every
// Pusher signature.
func hmacHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// channelAuth is the auth value for a private channel subscription
// ("key:hex(HMAC(secret, socket_id:channel))") or, with channelData
// non-empty, for a presence channel (the data is appended to the signed
// string).
func channelAuth(key, secret, socketID, channel, channelData string) string {
	msg := socketID + ":" + channel
	if channelData != "" {
		msg += ":" + channelData
	}
	return key + ":" + hmacHex(secret, msg)
}

// signedQuery returns the query string for a signed Pusher HTTP API
// request: auth_key, auth_timestamp, auth_version, body_md5 (when there is
// a body) and auth_signature over "METHOD\nPATH\nsorted k=v&...". The
// signed string uses the unescaped values, as the Pusher SDKs do.
func signedQuery(key, secret, method, path string, body []byte, now time.Time) string {
	params := map[string]string{
		"auth_key":       key,
		"auth_timestamp": strconv.FormatInt(now.Unix(), 10),
		"auth_version":   "1.0",
	}
	if len(body) > 0 {
		sum := md5.Sum(body)
		params["body_md5"] = hex.EncodeToString(sum[:])
	}
	toSign := method + "\n" + path + "\n" + canonicalQuery(params)
	q := url.Values{}
	for k, v := range params {
		q.Set(k, v)
	}
	q.Set("auth_signature", hmacHex(secret, toSign))
	return q.Encode()
}

// canonicalQuery joins params as sorted lowercase "k=v" pairs with "&",
// leaving out auth_signature, without URL escaping.
func canonicalQuery(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if strings.ToLower(k) == "auth_signature" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return strings.ToLower(keys[i]) < strings.ToLower(keys[j]) })
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(strings.ToLower(k))
		b.WriteByte('=')
		b.WriteString(params[k])
	}
	return b.String()
}
