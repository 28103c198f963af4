package pushtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// APNs is a test APNs server: HTTP/2 over TLS with a certificate of its
// own (RootCAs, or the PEM file CAFile for a process's SSL_CERT_FILE). It
// accepts POST /3/device/{token} only over HTTP/2, with a provider token
// (bearer, ES256) that the team's key (KeyP8, KeyID) signed, and the
// headers apns-topic (Topic), apns-push-type alert and apns-collapse-id.
type APNs struct {
	Behaviour
	URL     string
	KeyP8   []byte // the .p8 token signing key, PEM PKCS #8
	KeyFile string // KeyP8 in a file
	KeyID   string
	TeamID  string
	Topic   string
	RootCAs *x509.CertPool
	CAFile  string // the server's certificate, PEM

	pub *ecdsa.PublicKey
	rec *Recorder
}

// NewAPNs starts the server; it stops when the test ends.
func NewAPNs(t testing.TB, rec *Recorder) *APNs {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	a := &APNs{KeyP8: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), KeyID: "ABC123DEFG", TeamID: "TEAM123456",
		Topic: "chat.parley.app", pub: &key.PublicKey, rec: rec}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /3/device/{token}", a.push)
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	a.RootCAs = x509.NewCertPool()
	a.RootCAs.AddCert(srv.Certificate())
	dir := t.TempDir()
	a.CAFile, a.KeyFile = filepath.Join(dir, "apns-ca.pem"), filepath.Join(dir, "AuthKey.p8")
	if err := os.WriteFile(a.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.KeyFile, a.KeyP8, 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

func apnsReason(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write([]byte(`{"reason":"` + reason + `"}`))
}

func (a *APNs) push(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		a.rec.problem("APNs: HTTP/%d.%d, not HTTP/2", r.ProtoMajor, r.ProtoMinor)
		apnsReason(w, http.StatusBadRequest, "BadPath")
		return
	}
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "bearer ")
	header, claims, err := verifyES256(bearer, a.pub)
	if err == nil && (header["kid"] != a.KeyID || claims["iss"] != a.TeamID) {
		err = errString("kid/iss " + mustJSON(header) + mustJSON(claims))
	}
	if err != nil {
		a.rec.problem("APNs provider token: %v", err)
		apnsReason(w, http.StatusForbidden, "InvalidProviderToken")
		return
	}
	collapse := r.Header.Get("apns-collapse-id")
	if r.Header.Get("apns-topic") != a.Topic || r.Header.Get("apns-push-type") != "alert" || collapse == "" {
		a.rec.problem("APNs headers: topic %q push-type %q collapse-id %q", r.Header.Get("apns-topic"), r.Header.Get("apns-push-type"), collapse)
		apnsReason(w, http.StatusBadRequest, "MissingTopic")
		return
	}
	var body struct {
		Aps struct {
			Alert struct {
				Title string `json:"title"`
				Body  string `json:"body"`
			} `json:"alert"`
			Badge    *int   `json:"badge"`
			ThreadID string `json:"thread-id"`
		} `json:"aps"`
		MatterID  string `json:"matter_id"`
		MessageID string `json:"message_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Aps.Badge == nil || body.Aps.Alert.Title == "" || body.Aps.ThreadID == "" {
		a.rec.problem("APNs payload: %v %+v", err, body)
		apnsReason(w, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	token := r.PathValue("token")
	switch a.answer(r, token) {
	case "dead":
		apnsReason(w, http.StatusGone, "Unregistered")
		return
	case "fail":
		apnsReason(w, http.StatusServiceUnavailable, "ServiceUnavailable")
		return
	}
	matter, _ := strconv.ParseInt(body.MatterID, 10, 64)
	msg, _ := strconv.ParseInt(body.MessageID, 10, 64)
	a.rec.add(Push{Platform: "apns", Token: token, Title: body.Aps.Alert.Title, Body: body.Aps.Alert.Body, Badge: *body.Aps.Badge,
		MatterID: matter, MessageID: msg, Collapse: collapse})
	w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000001")
	w.WriteHeader(http.StatusOK)
}
