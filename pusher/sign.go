package pusher

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"hash"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Sign is hex(HMAC-SHA256(secret, message)), the one signature every part of
// the Pusher protocol uses: channel authorization, user sign-in, the HTTP
// API and webhooks.
func Sign(secret, message string) string {
	s := getSigner(secret)
	defer s.put()
	s.msg = append(s.msg[:0], message...)
	return string(s.sign(nil))
}

// SignBytes is Sign of a byte message (a webhook's body).
func SignBytes(secret string, message []byte) string {
	s := getSigner(secret)
	defer s.put()
	s.mac.Write(message)
	return string(hex.AppendEncode(nil, s.mac.Sum(s.sum[:0])))
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
	s := getSigner(secret)
	defer s.put()
	return string(s.channelAuth(key, socketID, channel, channelData))
}

// ValidChannelAuth is ValidAuth(presented, ChannelAuth(key, secret,
// socketID, channel, channelData)) without allocating: it runs for every
// private and presence subscribe.
func ValidChannelAuth(presented, key, secret, socketID, channel, channelData string) bool {
	s := getSigner(secret)
	defer s.put()
	want := s.channelAuth(key, socketID, channel, channelData)
	// hmac.Equal, on the string's bytes without a copy.
	return subtle.ConstantTimeCompare(unsafe.Slice(unsafe.StringData(presented), len(presented)), want) == 1
}

// UserAuth is the "auth" value of pusher:signin.
func UserAuth(key, secret, socketID, userData string) string {
	s := getSigner(secret)
	defer s.put()
	s.msg = append(append(append(s.msg[:0], socketID...), "::user::"...), userData...)
	return string(s.sign(append(append(s.out[:0], key...), ':')))
}

// signer is an HMAC-SHA256 keyed with one secret, with its buffers. Keying
// one hashes two blocks and allocates a dozen times; a signer is keyed once
// and reset after each use (hmac's Reset goes back to the keyed state).
type signer struct {
	mac  hash.Hash
	pool *sync.Pool // where it goes back
	msg  []byte     // the message to sign
	out  []byte     // key:hex(signature)
	sum  [sha256.Size]byte
}

// channelAuth is ChannelAuth in s.out, valid until s goes back.
func (s *signer) channelAuth(key, socketID, channel, channelData string) []byte {
	s.msg = append(append(append(s.msg[:0], socketID...), ':'), channel...)
	if channelData != "" {
		s.msg = append(append(s.msg, ':'), channelData...)
	}
	return s.sign(append(append(s.out[:0], key...), ':'))
}

// sign appends hex(HMAC(s.msg)) to dst, which is s.out or nil, and keeps
// the result as s.out.
func (s *signer) sign(dst []byte) []byte {
	s.mac.Write(s.msg)
	s.out = hex.AppendEncode(dst, s.mac.Sum(s.sum[:0]))
	return s.out
}

func (s *signer) put() {
	s.mac.Reset()
	if cap(s.msg) > 4<<10 || cap(s.out) > 4<<10 { // a big presence channel_data: not kept
		s.msg, s.out = nil, nil
	}
	s.pool.Put(s)
}

// signers holds a pool of signers per secret. Parley signs with its apps'
// secrets only; past maxSignerSecrets others get a fresh signer each time.
var (
	signersMu sync.RWMutex
	signers   = map[string]*sync.Pool{}
)

const maxSignerSecrets = 64

func getSigner(secret string) *signer {
	signersMu.RLock()
	p := signers[secret]
	signersMu.RUnlock()
	if p == nil {
		p = newSignerPool(secret)
		signersMu.Lock()
		if q := signers[secret]; q != nil {
			p = q
		} else if len(signers) < maxSignerSecrets {
			signers[secret] = p
		}
		signersMu.Unlock()
	}
	return p.Get().(*signer)
}

func newSignerPool(secret string) *sync.Pool {
	p := &sync.Pool{}
	p.New = func() any { return &signer{mac: hmac.New(sha256.New, []byte(secret)), pool: p} }
	return p
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
