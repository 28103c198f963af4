package push_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/push"
	"github.com/parley-chat/parley/push/pushtest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// deadStore records the dead tokens the dispatcher removes.
type deadStore struct {
	mu      sync.Mutex
	removed []int64
}

func (s *deadStore) DeleteDeadToken(_ context.Context, id int64, _ string) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removed = append(s.removed, id)
	return 42, true, nil
}

// providers are the three test services and a provider for each.
type providers struct{ *pushtest.Services }

func startProviders(t *testing.T) *providers { return &providers{pushtest.StartServices(t)} }

// devices are one device per platform, each with a token the services know.
func (p *providers) devices(t *testing.T) (fcm, apns, web persistence.Device) {
	id, sub := p.Web.Subscribe(t)
	keys := sub["keys"].(map[string]any)
	_ = id
	return persistence.Device{ID: 1, Platform: "fcm", Token: "fcm-token-" + t.Name()},
		persistence.Device{ID: 2, Platform: "apns", Token: strings.Repeat("ab", 32)},
		persistence.Device{ID: 3, Platform: "webpush", Token: sub["endpoint"].(string), P256dh: keys["p256dh"].(string), Auth: keys["auth"].(string)}
}

func webID(d persistence.Device) string { return d.Token[strings.LastIndexByte(d.Token, '/')+1:] }

var note = push.Notification{UserID: 42, MatterID: 7, MessageID: 99, SenderID: 3, Title: "Case 7", SenderName: "Ann", Text: "Hello", Badge: 5}

// TestProviders: each provider's push reaches its test service, which
// checked the protocol (OAuth grant and bearer, ES256 provider token and
// apns-* headers over HTTP/2, VAPID and the encrypted payload), with the
// title, text, badge, ids and collapse id.
func TestProviders(t *testing.T) {
	p := startProviders(t)
	reg := prometheus.NewRegistry()
	d := push.NewDispatcher(p.Providers, &deadStore{}, push.Options{Registerer: reg})
	defer d.Close()
	fcm, apns, web := p.devices(t)
	d.Push(note, []persistence.Device{fcm, apns, web})
	for _, tok := range []string{fcm.Token, apns.Token, webID(web)} {
		got := p.Rec.Wait(t, 10*time.Second, "to "+tok, func(x push_Push) bool { return x.Token == tok })
		if got.Title != "Case 7" || got.Body != "Ann: Hello" || got.Badge != 5 || got.MatterID != 7 || got.MessageID != 99 || got.Collapse != "matter-7" {
			t.Errorf("%s got %+v", got.Platform, got)
		}
	}
	if pr := p.Rec.Problems(); len(pr) > 0 {
		t.Fatalf("protocol problems: %v", pr)
	}
	if p.FCM.Grants() != 1 {
		t.Errorf("%d OAuth grants, want 1", p.FCM.Grants())
	}
	waitCounter(t, reg, "parley_push_sent_total", 3)
}

type push_Push = pushtest.Push

// waitCounter waits for a counter family's total to reach want.
func waitCounter(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := testutil.GatherAndCount(reg, name)
		var sum float64
		fams, _ := reg.Gather()
		for _, f := range fams {
			if f.GetName() == name {
				for _, m := range f.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		if sum >= want && n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v, want %v", name, sum, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeadTokensRemoved: a token each service reports dead is removed
// from the store, and the user's counter is told.
func TestDeadTokensRemoved(t *testing.T) {
	p := startProviders(t)
	st := &deadStore{}
	var told sync.WaitGroup
	told.Add(3)
	reg := prometheus.NewRegistry()
	d := push.NewDispatcher(p.Providers, st, push.Options{Registerer: reg, Removed: func(uid int64) {
		if uid == 42 {
			told.Done()
		}
	}})
	defer d.Close()
	fcm, apns, web := p.devices(t)
	p.FCM.Dead(fcm.Token)
	p.APNs.Dead(apns.Token)
	p.Web.Dead(webID(web))
	d.Push(note, []persistence.Device{fcm, apns, web})
	told.Wait()
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.removed) != 3 {
		t.Fatalf("removed %v, want devices 1, 2 and 3", st.removed)
	}
	waitCounter(t, reg, "parley_push_tokens_removed_total", 3)
	if len(p.Rec.All()) != 0 {
		t.Fatalf("a dead token got a push: %v", p.Rec.All())
	}
}

// TestRetriedAfterFailures: a provider answering 503 twice gets the push
// the third time; one that keeps failing gets it no more than Attempts
// times.
func TestRetriedAfterFailures(t *testing.T) {
	p := startProviders(t)
	reg := prometheus.NewRegistry()
	d := push.NewDispatcher(p.Providers, &deadStore{}, push.Options{Registerer: reg, Backoff: 20 * time.Millisecond})
	defer d.Close()
	fcm, apns, _ := p.devices(t)
	p.FCM.FailTimes(fcm.Token, 2)
	p.APNs.FailTimes(apns.Token, 2)
	d.Push(note, []persistence.Device{fcm, apns})
	p.Rec.Wait(t, 20*time.Second, "to FCM after two failures", func(x push_Push) bool { return x.Token == fcm.Token })
	p.Rec.Wait(t, 20*time.Second, "to APNs after two failures", func(x push_Push) bool { return x.Token == apns.Token })
	waitCounter(t, reg, "parley_push_failed_total", 4)
}

// TestQueueNeverBlocks: with a provider that answers after seconds and a
// full queue, Push returns at once and drops what does not fit.
func TestQueueNeverBlocks(t *testing.T) {
	p := startProviders(t)
	p.FCM.Delay(3 * time.Second)
	reg := prometheus.NewRegistry()
	d := push.NewDispatcher(p.Providers, &deadStore{}, push.Options{Registerer: reg, Queue: 2, Concurrency: 1})
	defer d.Close()
	fcm, _, _ := p.devices(t)
	start := time.Now()
	for range 50 {
		d.Push(note, []persistence.Device{fcm})
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("50 pushes took %s to queue behind a slow provider", el)
	}
	waitCounter(t, reg, "parley_push_failed_total", 47) // 50 less one sending and two queued
}

// TestVAPIDKeysKept: keys generated once are read back the next time; the
// data directory is made when it is not there yet (a server on PostgreSQL
// with its app credentials in the environment writes nothing else to it).
func TestVAPIDKeysKept(t *testing.T) {
	path := t.TempDir() + "/data/vapid.json"
	k1, gen1, err := push.LoadOrCreateVAPID(path)
	if err != nil || !gen1 || push.CheckVAPID(k1) != nil {
		t.Fatalf("first: %v %v %v", k1, gen1, err)
	}
	k2, gen2, err := push.LoadOrCreateVAPID(path)
	if err != nil || gen2 || k2 != k1 {
		t.Fatalf("second: %v %v %v", k2, gen2, err)
	}
	if push.CheckVAPID(push.VAPIDKeys{Public: k1.Public, Private: k1.Public}) == nil {
		t.Fatal("a public key taken for a private one")
	}
}

var _ = http.StatusOK
