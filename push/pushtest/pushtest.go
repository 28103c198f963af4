// Package pushtest runs test push providers on 127.0.0.1 that check what
// they receive as the real services do: an FCM server that issues OAuth
// tokens for a service account's signed JWT and accepts only those; an
// APNs server (HTTP/2 over TLS) that verifies the ES256 provider token and
// the apns-* headers; and a Web Push endpoint that verifies the VAPID JWT
// and decrypts the RFC 8291 payload with the subscription's private key.
// Every push they accept is recorded. It is imported only by tests.
package pushtest

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Push is one push a test provider accepted, as the device would show it.
type Push struct {
	Platform   string
	Token      string // the device token, or the Web Push subscription's id
	Title      string
	Body       string
	Badge      int
	MatterID   int64
	MessageID  int64
	Collapse   string // apns-collapse-id, the FCM collapse key, the Web Push Topic
	ReceivedAt time.Time
}

// Recorder collects the pushes of one or more test providers.
type Recorder struct {
	mu     sync.Mutex
	pushes []Push
	wake   chan struct{}
	// Problems are requests a provider refused because they broke the
	// protocol (a bad signature, a missing header): a test fails on any.
	problems []string
}

// NewRecorder makes an empty recorder.
func NewRecorder() *Recorder { return &Recorder{wake: make(chan struct{})} }

func (r *Recorder) add(p Push) {
	r.mu.Lock()
	p.ReceivedAt = time.Now()
	r.pushes = append(r.pushes, p)
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

func (r *Recorder) problem(format string, a ...any) {
	r.mu.Lock()
	r.problems = append(r.problems, fmt.Sprintf(format, a...))
	r.mu.Unlock()
}

// Problems are the protocol violations seen.
func (r *Recorder) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.problems...)
}

// All is every push so far.
func (r *Recorder) All() []Push {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Push(nil), r.pushes...)
}

// Wait returns once some push satisfies ok, or fails the test after timeout.
func (r *Recorder) Wait(t testing.TB, timeout time.Duration, what string, ok func(Push) bool) Push {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		for _, p := range r.pushes {
			if ok(p) {
				r.mu.Unlock()
				return p
			}
		}
		wake := r.wake
		r.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no push %s within %s; got %+v; problems %v", what, timeout, r.All(), r.Problems())
			return Push{}
		}
	}
}

// Behaviour is what a provider answers for a token.
type Behaviour struct {
	mu    sync.Mutex
	dead  map[string]bool
	fails map[string]int // tokens answered 503 this many more times
	delay time.Duration
}

// Dead makes the provider answer that token is unregistered.
func (b *Behaviour) Dead(token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dead == nil {
		b.dead = map[string]bool{}
	}
	b.dead[token] = true
}

// FailTimes makes the provider answer 503 to token's next n pushes.
func (b *Behaviour) FailTimes(token string, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fails == nil {
		b.fails = map[string]int{}
	}
	b.fails[token] = n
}

// Delay makes every answer wait d (a slow provider).
func (b *Behaviour) Delay(d time.Duration) {
	b.mu.Lock()
	b.delay = d
	b.mu.Unlock()
}

// answer says how to answer token: "dead", "fail" or "" (accept), after
// waiting the delay.
func (b *Behaviour) answer(r *http.Request, token string) string {
	b.mu.Lock()
	d := b.delay
	out := ""
	switch {
	case b.dead[token]:
		out = "dead"
	case b.fails[token] > 0:
		b.fails[token]--
		out = "fail"
	}
	b.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
	}
	return out
}

// b64 decodes unpadded base64url.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// splitJWT decodes a compact JWS: header, claims, the signed part and the
// signature.
func splitJWT(tok string) (header, claims map[string]any, signed string, sig []byte, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, nil, "", nil, errors.New("not a compact JWT")
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := b64(parts[i])
		if err != nil {
			return nil, nil, "", nil, fmt.Errorf("JWT part %d: %v", i, err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return nil, nil, "", nil, fmt.Errorf("JWT part %d: %v", i, err)
		}
	}
	if sig, err = b64(parts[2]); err != nil {
		return nil, nil, "", nil, fmt.Errorf("JWT signature: %v", err)
	}
	return header, claims, parts[0] + "." + parts[1], sig, nil
}

// verifyES256 checks a JWT signed with ES256 (r||s) by pub and returns its
// claims.
func verifyES256(tok string, pub *ecdsa.PublicKey) (header, claims map[string]any, err error) {
	header, claims, signed, sig, err := splitJWT(tok)
	if err != nil {
		return nil, nil, err
	}
	if header["alg"] != "ES256" || len(sig) != 64 {
		return nil, nil, fmt.Errorf("not ES256: alg %v, %d signature bytes", header["alg"], len(sig))
	}
	h := sha256.Sum256([]byte(signed))
	if !ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return nil, nil, errors.New("the ES256 signature does not verify")
	}
	return header, claims, checkTimes(claims)
}

// checkTimes checks iat (not in the future, less than an hour old) or exp
// (in the future, within a day).
func checkTimes(claims map[string]any) error {
	now := float64(time.Now().Unix())
	if iat, ok := claims["iat"].(float64); ok && (iat > now+60 || iat < now-3600) {
		return fmt.Errorf("iat %v is not within the last hour", iat)
	}
	if exp, ok := claims["exp"].(float64); ok && (exp < now || exp > now+24*3600) {
		return fmt.Errorf("exp %v is not within the next day", exp)
	}
	if _, iat := claims["iat"]; !iat {
		if _, exp := claims["exp"]; !exp {
			return errors.New("neither iat nor exp")
		}
	}
	return nil
}
