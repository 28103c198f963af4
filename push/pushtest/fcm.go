package pushtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FCM is a test FCM HTTP v1 server with its own OAuth token endpoint. Its
// service account (CredentialsJSON) has a fresh RSA key and names the test
// server's /token as token_uri; /token accepts only a JWT-bearer grant
// whose assertion that key signed (RS256, iss the account's email, scope
// firebase.messaging, aud the token_uri) and issues an access token that
// /v1/projects/{ProjectID}/messages:send then requires.
type FCM struct {
	Behaviour
	URL             string // the API's base URL (PARLEY_FCM_ENDPOINT)
	ProjectID       string
	CredentialsJSON []byte // the service account's key file
	Email           string

	key    *rsa.PrivateKey
	rec    *Recorder
	mu     sync.Mutex
	issued map[string]bool // access tokens given out
	grants int
}

// NewFCM starts the server; it stops when the test ends.
func NewFCM(t testing.TB, rec *Recorder) *FCM {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &FCM{ProjectID: "parley-test", Email: "push@parley-test.iam.gserviceaccount.com", key: key, rec: rec, issued: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", f.send)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	f.CredentialsJSON, _ = json.Marshal(map[string]string{
		"type": "service_account", "project_id": f.ProjectID, "private_key_id": "test-key-1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": f.Email, "client_id": "1", "token_uri": srv.URL + "/token",
	})
	return f
}

// Grants is how many access tokens the server issued.
func (f *FCM) Grants() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.grants
}

func (f *FCM) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		f.rec.problem("FCM token: grant_type %q", r.PostForm.Get("grant_type"))
		http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
		return
	}
	header, claims, signed, sig, err := splitJWT(r.PostForm.Get("assertion"))
	if err == nil && header["alg"] != "RS256" {
		err = errString("alg " + header["alg"].(string))
	}
	if err == nil {
		h := sha256.Sum256([]byte(signed))
		err = rsa.VerifyPKCS1v15(&f.key.PublicKey, crypto.SHA256, h[:], sig)
	}
	if err == nil {
		err = checkTimes(claims)
	}
	if err == nil && (claims["iss"] != f.Email || claims["aud"] != "http://"+r.Host+"/token" ||
		!strings.Contains(claims["scope"].(string), "https://www.googleapis.com/auth/firebase.messaging")) {
		err = errString("claims " + mustJSON(claims))
	}
	if err != nil {
		f.rec.problem("FCM token: %v", err)
		http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
		return
	}
	b := make([]byte, 16)
	rand.Read(b)
	tok := "ya29.test-" + hex.EncodeToString(b)
	f.mu.Lock()
	f.issued[tok] = true
	f.grants++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
}

func (f *FCM) send(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	ok := f.issued[tok]
	f.mu.Unlock()
	if !ok || r.PathValue("project") != f.ProjectID {
		f.rec.problem("FCM send: bearer %q not issued, or project %q", tok, r.PathValue("project"))
		http.Error(w, `{"error":{"code":401,"status":"UNAUTHENTICATED"}}`, http.StatusUnauthorized)
		return
	}
	var body struct {
		Message struct {
			Token        string `json:"token"`
			Notification struct{ Title, Body string }
			Data         map[string]string `json:"data"`
			Android      struct {
				CollapseKey  string `json:"collapse_key"`
				Notification struct {
					Tag               string `json:"tag"`
					NotificationCount *int   `json:"notification_count"`
				} `json:"notification"`
			} `json:"android"`
		} `json:"message"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Message.Token == "" || body.Message.Notification.Title == "" ||
		body.Message.Android.Notification.NotificationCount == nil || body.Message.Data["matter_id"] == "" {
		f.rec.problem("FCM send: message JSON %v %+v", err, body)
		http.Error(w, `{"error":{"code":400,"status":"INVALID_ARGUMENT"}}`, http.StatusBadRequest)
		return
	}
	m := body.Message
	switch f.answer(r, m.Token) {
	case "dead":
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`))
		return
	case "fail":
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":{"code":503,"status":"UNAVAILABLE"}}`, http.StatusServiceUnavailable)
		return
	}
	matter, _ := strconv.ParseInt(m.Data["matter_id"], 10, 64)
	msg, _ := strconv.ParseInt(m.Data["message_id"], 10, 64)
	f.rec.add(Push{Platform: "fcm", Token: m.Token, Title: m.Notification.Title, Body: m.Notification.Body,
		Badge: *m.Android.Notification.NotificationCount, MatterID: matter, MessageID: msg, Collapse: m.Android.CollapseKey})
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"name":"projects/` + f.ProjectID + `/messages/1"}`))
}

type errString string

func (e errString) Error() string { return string(e) }

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
