package testkit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"
)

// Hooks is a real HTTP server on 127.0.0.1 taking webhooks. It checks each
// request (a POST with the app's key, signed with its secret, of events
// less than a minute old) and hands on the events one by one.
type Hooks struct {
	t        testing.TB
	URL      string
	Events   chan map[string]any
	Requests atomic.Int64
	Fail     atomic.Int64  // answer this many more requests with 500
	Timeout  time.Duration // how long Expect waits; 10 s when 0
}

// NewHooks starts a receiver of the webhooks of the app with key and
// secret; it stops when the test ends.
func NewHooks(t testing.TB, key, secret string) *Hooks {
	h := &Hooks{t: t, Events: make(chan map[string]any, 10000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.Requests.Add(1)
		body, _ := io.ReadAll(req.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		if req.Method != http.MethodPost || req.Header.Get("X-Pusher-Key") != key || req.Header.Get("X-Pusher-Signature") != hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("webhook with a bad method, key or signature: %s %v", req.Method, req.Header)
		}
		if h.Fail.Load() > 0 {
			h.Fail.Add(-1)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var p struct {
			TimeMS int64            `json:"time_ms"`
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.TimeMS < time.Now().Add(-time.Minute).UnixMilli() || len(p.Events) == 0 {
			t.Errorf("bad webhook body %s (%v)", body, err)
		}
		for _, e := range p.Events {
			h.Events <- e
		}
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL + "/hooks"
	return h
}

// Describe turns a webhook event into "name channel [user=id] [count=n]".
func Describe(e map[string]any) string {
	s := fmt.Sprint(e["name"], " ", e["channel"])
	if u, ok := e["user_id"]; ok {
		s += fmt.Sprint(" user=", u)
	}
	if n, ok := e["subscription_count"]; ok {
		s += fmt.Sprint(" count=", n)
	}
	return s
}

// take returns the next n events, failing the test if they do not come in
// time.
func (h *Hooks) take(n int, want []string) []map[string]any {
	h.t.Helper()
	d := h.Timeout
	if d == 0 {
		d = 10 * time.Second
	}
	var got []map[string]any
	for len(got) < n {
		select {
		case e := <-h.Events:
			got = append(got, e)
		case <-time.After(d):
			h.t.Fatalf("want %q, got only %q within %s", want, describeAll(got), d)
		}
	}
	return got
}

func describeAll(events []map[string]any) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = Describe(e)
	}
	return out
}

// Expect takes the next events and compares them, in order, with want (see
// Describe). Events arrive in the order they happened, so anything sent by
// an earlier step that should have sent nothing shows up here.
func (h *Hooks) Expect(want ...string) []map[string]any {
	h.t.Helper()
	got := h.take(len(want), want)
	if all := describeAll(got); !slices.Equal(all, want) {
		h.t.Fatalf("want %q, got %q", want, all)
	}
	return got
}

// ExpectAnyOrder is Expect for events whose order is not defined: of
// several channels, or sent by several nodes.
func (h *Hooks) ExpectAnyOrder(want ...string) {
	h.t.Helper()
	got := describeAll(h.take(len(want), want))
	w := append([]string(nil), want...)
	sort.Strings(w)
	sort.Strings(got)
	if !slices.Equal(w, got) {
		h.t.Fatalf("want %q in any order, got %q", w, got)
	}
}
