package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/config"
)

// receiver is a real HTTP server on 127.0.0.1 that records the webhooks it
// accepts; status, when set, answers the first requests with an error.
type receiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	batches  [][]Event
	requests atomic.Int64
	got      chan []Event
	fail     atomic.Int64 // answer this many more requests with 500
	badSig   atomic.Int64
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{got: make(chan []Event, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		body, _ := io.ReadAll(req.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		if req.Header.Get("X-Pusher-Key") != "key-1" || req.Header.Get("X-Pusher-Signature") != hex.EncodeToString(mac.Sum(nil)) {
			r.badSig.Add(1)
		}
		if r.fail.Load() > 0 {
			r.fail.Add(-1)
			w.WriteHeader(500)
			return
		}
		var p struct {
			TimeMS int64   `json:"time_ms"`
			Events []Event `json:"events"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.TimeMS == 0 {
			t.Errorf("bad body %s: %v", body, err)
		}
		r.mu.Lock()
		r.batches = append(r.batches, p.Events)
		r.mu.Unlock()
		r.got <- p.Events
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) next(t *testing.T) []Event {
	t.Helper()
	select {
	case b := <-r.got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook within 10 s")
		return nil
	}
}

func apps(url string, types ...string) []config.App {
	return []config.App{{ID: "app-1", Key: "key-1", Secret: "secret-1", Webhooks: []config.Webhook{{URL: url, EventTypes: types}}}}
}

func names(b []Event) []string {
	var out []string
	for _, e := range b {
		out = append(out, e["name"].(string)+":"+e["channel"].(string))
	}
	return out
}

func TestBatchingAndSignature(t *testing.T) {
	r := newReceiver(t, "secret-1")
	s := New(apps(r.srv.URL, config.WebhookEventTypes...), Options{BatchWindow: 300 * time.Millisecond})
	defer s.Close(context.Background())
	s.Occupied("app-1", "a", false)
	s.Occupied("app-1", "b", false)
	s.CacheMiss("app-1", "cache-c")
	b := r.next(t)
	if got := names(b); len(got) != 3 || got[0] != "channel_occupied:a" || got[1] != "channel_occupied:b" || got[2] != "cache_miss:cache-c" {
		t.Fatalf("one batch of three in order, got %v", got)
	}
	if r.badSig.Load() != 0 {
		t.Fatal("bad signature")
	}
	// An app without webhooks, and event types nobody wants, send nothing.
	s.Occupied("app-2", "x", false)
	s2 := New(apps(r.srv.URL, "member_added"), Options{BatchWindow: time.Millisecond})
	s2.Occupied("app-1", "ignored", false)
	s2.MemberAdded("app-1", "presence-marker", "1", false)
	if got := names(r.next(t)); len(got) != 1 || got[0] != "member_added:presence-marker" {
		t.Fatalf("only the wanted type, got %v", got)
	}
	s2.Close(context.Background())
}

func TestRetryAfterFailure(t *testing.T) {
	r := newReceiver(t, "secret-1")
	r.fail.Store(2)
	s := New(apps(r.srv.URL, "channel_occupied"), Options{BatchWindow: time.Millisecond, RetryBase: 50 * time.Millisecond})
	defer s.Close(context.Background())
	s.Occupied("app-1", "retried", false)
	if got := names(r.next(t)); len(got) != 1 || got[0] != "channel_occupied:retried" {
		t.Fatalf("got %v", got)
	}
	if n := r.requests.Load(); n != 3 {
		t.Fatalf("want 2 failed requests and 1 accepted, got %d requests", n)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	r := newReceiver(t, "secret-1")
	r.fail.Store(2)
	s := New(apps(r.srv.URL, "channel_occupied"), Options{BatchWindow: time.Millisecond, RetryBase: 10 * time.Millisecond, MaxAttempts: 2})
	defer s.Close(context.Background())
	s.Occupied("app-1", "dropped", false)
	// The first batch is dropped after 2 attempts; the next goes through.
	waitFor(t, func() bool { return r.requests.Load() == 2 })
	s.Occupied("app-1", "marker", false)
	if got := names(r.next(t)); len(got) != 1 || got[0] != "channel_occupied:marker" {
		t.Fatalf("got %v", got)
	}
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !f(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
	}
}

func TestVacateDelayAbsorbsReconnect(t *testing.T) {
	r := newReceiver(t, "secret-1")
	s := New(apps(r.srv.URL, config.WebhookEventTypes...), Options{BatchWindow: time.Millisecond, VacateDelay: 200 * time.Millisecond})
	defer s.Close(context.Background())
	s.Occupied("app-1", "a", false)
	s.MemberAdded("app-1", "presence-p", "u1", false)
	for seen := 0; seen < 2; {
		seen += len(r.next(t))
	}
	// Leave and come back within the delay: nothing at all.
	s.Vacated("app-1", "a", false)
	s.MemberRemoved("app-1", "presence-p", "u1", false)
	s.Occupied("app-1", "a", false)
	s.MemberAdded("app-1", "presence-p", "u1", false)
	// A marker channel's vacate goes through its delay; nothing of "a" or
	// u1 came before or with it.
	start := time.Now()
	s.Occupied("app-1", "marker", false)
	s.Vacated("app-1", "marker", false)
	var seen []string
	for {
		got := names(r.next(t))
		seen = append(seen, got...)
		if got[len(got)-1] == "channel_vacated:marker" {
			break
		}
	}
	if len(seen) != 2 || seen[0] != "channel_occupied:marker" {
		t.Fatalf("want only the marker's events, got %v", seen)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("vacated after %v, before its delay", d)
	}
	// Close sends what is still delayed.
	s.MemberRemoved("app-1", "presence-p", "u1", false)
	s.Close(context.Background())
	if got := names(r.next(t)); len(got) != 1 || got[0] != "member_removed:presence-p" {
		t.Fatalf("close flushes the delayed, got %v", got)
	}
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	block := make(chan struct{})
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		<-block
	}))
	defer srv.Close()
	s := New(apps(srv.URL, "cache_miss"), Options{BatchWindow: time.Millisecond, MaxBatch: 1, QueueSize: 5})
	s.CacheMiss("app-1", "first") // taken by the worker, whose request hangs
	waitFor(t, func() bool { return requests.Load() == 1 })
	start := time.Now()
	for i := 0; i < 1000; i++ {
		s.CacheMiss("app-1", "c")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("reporting 1,000 events took %v", d)
	}
	e := s.apps["app-1"].endpoints[0]
	if d := e.dropped.Load(); d != 995 {
		t.Fatalf("want 995 dropped past the queue of 5, got %d", d)
	}
	close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Close(ctx)
	if n := requests.Load(); n != 6 {
		t.Fatalf("want the 6 kept events sent at close, got %d requests", n)
	}
}
