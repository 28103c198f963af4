package pushtest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// WebPush is a test push service for browsers' subscriptions, over TLS
// (RootCAs). Subscribe makes a subscription as a browser would (a P-256
// key and an auth secret, kept here); a push to its endpoint must carry a
// VAPID JWT (ES256, aud the endpoint's origin, exp, sub) signed by the
// server's key (VAPIDPublic, the k= parameter), and a body this server
// decrypts (RFC 8291, aes128gcm) with the subscription's private key.
type WebPush struct {
	Behaviour
	URL         string
	RootCAs     *x509.CertPool
	VAPIDPublic string // the application server key the pushes must be signed with; "" accepts any valid one

	rec  *Recorder
	mu   sync.Mutex
	subs map[string]*subscription
}

type subscription struct {
	key  *ecdh.PrivateKey
	auth []byte
}

// NewWebPush starts the service; it stops when the test ends.
func NewWebPush(t testing.TB, rec *Recorder) *WebPush {
	t.Helper()
	wp := &WebPush{rec: rec, subs: map[string]*subscription{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /push/{id}", wp.push)
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	wp.URL = srv.URL
	wp.RootCAs = x509.NewCertPool()
	wp.RootCAs.AddCert(srv.Certificate())
	return wp
}

// Client trusts the service's certificate.
func (wp *WebPush) Client() *http.Client {
	c := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	c.Transport.(*http.Transport).TLSClientConfig.RootCAs = wp.RootCAs
	return c
}

// Subscribe makes a subscription: its id (the Token of the pushes it gets)
// and the JSON a browser's PushSubscription.toJSON() gives.
func (wp *WebPush) Subscribe(t testing.TB) (id string, sub map[string]any) {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	id = hex.EncodeToString(b)
	auth := make([]byte, 16)
	rand.Read(auth)
	wp.mu.Lock()
	wp.subs[id] = &subscription{key: key, auth: auth}
	wp.mu.Unlock()
	return id, map[string]any{"endpoint": wp.URL + "/push/" + id, "keys": map[string]any{
		"p256dh": base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
		"auth":   base64.RawURLEncoding.EncodeToString(auth),
	}}
}

func (wp *WebPush) push(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wp.mu.Lock()
	sub := wp.subs[id]
	wp.mu.Unlock()
	if sub == nil {
		http.Error(w, "no such subscription", http.StatusNotFound)
		return
	}
	if err := wp.checkVAPID(r); err != nil {
		wp.rec.problem("Web Push VAPID: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if r.Header.Get("Content-Encoding") != "aes128gcm" || r.Header.Get("TTL") == "" {
		wp.rec.problem("Web Push headers: Content-Encoding %q TTL %q", r.Header.Get("Content-Encoding"), r.Header.Get("TTL"))
		http.Error(w, "bad headers", http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	plain, err := Decrypt(body, sub.key, sub.auth)
	var p struct {
		Title     string `json:"title"`
		Body      string `json:"body"`
		Badge     int    `json:"badge"`
		MatterID  int64  `json:"matter_id"`
		MessageID int64  `json:"message_id"`
	}
	if err == nil {
		err = json.Unmarshal(plain, &p)
	}
	if err != nil || p.Title == "" {
		wp.rec.problem("Web Push payload: %v %q", err, plain)
		http.Error(w, "cannot decrypt", http.StatusBadRequest)
		return
	}
	switch wp.answer(r, id) {
	case "dead":
		http.Error(w, "subscription expired", http.StatusGone)
		return
	case "fail":
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	wp.rec.add(Push{Platform: "webpush", Token: id, Title: p.Title, Body: p.Body, Badge: p.Badge,
		MatterID: p.MatterID, MessageID: p.MessageID, Collapse: r.Header.Get("Topic")})
	w.WriteHeader(http.StatusCreated)
}

// checkVAPID verifies "Authorization: vapid t=JWT, k=KEY" (RFC 8292).
func (wp *WebPush) checkVAPID(r *http.Request) error {
	v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "vapid ")
	if !ok {
		return errors.New("no vapid authorization")
	}
	var tok, k string
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if s, ok := strings.CutPrefix(part, "t="); ok {
			tok = s
		} else if s, ok := strings.CutPrefix(part, "k="); ok {
			k = s
		}
	}
	if wp.VAPIDPublic != "" && k != wp.VAPIDPublic {
		return fmt.Errorf("k=%s is not the server's key", k)
	}
	raw, err := b64(k)
	if err != nil {
		return err
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic256(), raw)
	if err != nil {
		return fmt.Errorf("k: %v", err)
	}
	_, claims, err := verifyES256(tok, pub)
	if err != nil {
		return err
	}
	if claims["aud"] != "https://"+r.Host || claims["exp"] == nil {
		return fmt.Errorf("claims %s, want aud https://%s and exp", mustJSON(claims), r.Host)
	}
	sub, _ := claims["sub"].(string)
	if addr, ok := strings.CutPrefix(sub, "mailto:"); (!ok || !strings.Contains(addr, "@") || strings.Contains(addr, ":")) && !strings.HasPrefix(sub, "https://") {
		return fmt.Errorf("sub %q is not a mailto: address or an https: URL", sub)
	}
	return nil
}

// Decrypt opens an aes128gcm Web Push message (RFC 8188 framing, RFC 8291
// keys) with the subscription's private key and auth secret.
func Decrypt(body []byte, key *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("short body")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idlen || idlen != 65 {
		return nil, fmt.Errorf("keyid of %d bytes, want the server's 65-byte key", idlen)
	}
	asPub, ct := body[21:21+idlen], body[21+idlen:]
	if uint32(len(ct)) > rs {
		return nil, fmt.Errorf("%d bytes: more than one record of %d", len(ct), rs)
	}
	peer, err := ecdh.P256().NewPublicKey(asPub)
	if err != nil {
		return nil, err
	}
	secret, err := key.ECDH(peer)
	if err != nil {
		return nil, err
	}
	// RFC 8291 section 3.4: IKM from the ECDH secret and the auth secret.
	info := append(append([]byte("WebPush: info\x00"), key.PublicKey().Bytes()...), asPub...)
	ikm := hkdf(auth, secret, info, 32)
	cek := hkdf(salt, ikm, []byte("Content-Encoding: aes128gcm\x00"), 16)
	nonce := hkdf(salt, ikm, []byte("Content-Encoding: nonce\x00"), 12)
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %v", err)
	}
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 || plain[len(plain)-1] != 2 {
		return nil, errors.New("no last-record delimiter")
	}
	return plain[:len(plain)-1], nil
}

// hkdf is HKDF-SHA-256 (RFC 5869) for at most one block of output.
func hkdf(salt, ikm, info []byte, n int) []byte {
	ext := hmac.New(sha256.New, salt)
	ext.Write(ikm)
	prk := ext.Sum(nil)
	exp := hmac.New(sha256.New, prk)
	exp.Write(info)
	exp.Write([]byte{1})
	return exp.Sum(nil)[:n]
}

func elliptic256() elliptic.Curve { return elliptic.P256() }
