package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/storetest"
	"github.com/parley-chat/parley/push/pushtest"
)

// TestPushMeasured measures, on one `parley serve` process with PostgreSQL
// (docs/push.md, "Measured"): the time from POST /api/messages/send to the
// test FCM server receiving the push, at 100 messages a second; and the
// fan-out to connected members (MessageSent on their user channel) at the
// same rate with no push, with pushes, and with an FCM that answers after
// 5 s. It prints the figures and asserts only that nothing was lost. Run it
// with PARLEY_PUSH_MEASURE=1 go test -run TestPushMeasured -v ./cmd/parley.
func TestPushMeasured(t *testing.T) {
	if os.Getenv("PARLEY_PUSH_MEASURE") == "" {
		t.Skip("a measurement: set PARLEY_PUSH_MEASURE=1")
	}
	for _, c := range []struct {
		name  string
		push  bool
		delay time.Duration
	}{{"no push", false, 0}, {"push", true, 0}, {"push, FCM answers after 5 s", true, 5 * time.Second}} {
		t.Run(c.name, func(t *testing.T) { measurePush(t, c.push, c.delay) })
	}
}

// measureRun is one run's timings.
type measureRun struct {
	mu     sync.Mutex
	sentAt map[int64]time.Time // message id → when its POST started
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func measurePush(t *testing.T, withPush bool, delay time.Duration) {
	const matters, rate, seconds = 200, 100, 10
	rec := pushtest.NewRecorder()
	fcm := pushtest.NewFCM(t, rec)
	fcm.Delay(delay)
	credFile := filepath.Join(t.TempDir(), "fcm.json")
	if err := os.WriteFile(credFile, fcm.CredentialsJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	dbURL := storetest.PostgresURL(t)
	n := newProcNode(t, "node")
	n.args = append(n.args, "--chat=true", "--database-url="+dbURL)
	n.env = append(n.env, "PARLEY_API_RATE_LIMIT=0", "PARLEY_WEBPUSH=false", "PARLEY_PUSH_WINDOW=1s")
	if withPush {
		n.env = append(n.env, "PARLEY_FCM_CREDENTIALS="+credFile, "PARLEY_FCM_ENDPOINT="+fcm.URL)
	}
	n.start()
	st, err := persistence.Open(context.Background(), dbURL, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	ann, _ := st.CreateUserWith(ctx, persistence.NewUser{Name: "Ann", Email: "ann@example.com"})
	annTok, _, _ := chat.IssueToken(ctx, st, ann.ID, time.Hour)
	var mattersIDs []int64
	var events []testkit.Read
	var evMu sync.Mutex
	for i := range matters {
		on, _ := st.CreateUserWith(ctx, persistence.NewUser{Name: "On", Email: fmt.Sprintf("on%d@example.com", i)})
		off, _ := st.CreateUserWith(ctx, persistence.NewUser{Name: "Off", Email: fmt.Sprintf("off%d@example.com", i)})
		m, _ := st.CreateMatterWith(ctx, "M"+strconv.Itoa(i), []int64{ann.ID, on.ID, off.ID})
		mattersIDs = append(mattersIDs, m.ID)
		if _, err := st.RegisterDevice(ctx, off.ID, persistence.NewDevice{Platform: "fcm", Token: fmt.Sprint("off-", i)}); err != nil {
			t.Fatal(err)
		}
		w := dial(t, n, "on"+strconv.Itoa(i))
		w.mustSubscribe("private-user."+strconv.FormatInt(on.ID, 10), "")
		go func() {
			for r := range w.Reads {
				if r.Err == nil && strings.HasSuffix(r.Frame.Event, "MessageSent") {
					evMu.Lock()
					events = append(events, r)
					evMu.Unlock()
				}
			}
		}()
	}
	run := &measureRun{sentAt: map[int64]time.Time{}}
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rate)
	for i := range rate * seconds {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			res := nodeCall(t, n, annTok, "POST", "/api/messages/send", map[string]any{"message": "hi", "client_matter_id": mattersIDs[i%matters]})
			run.mu.Lock()
			run.sentAt[int64(res["data"].(map[string]any)["id"].(float64))] = start
			run.mu.Unlock()
		}()
	}
	tick.Stop()
	wg.Wait()
	total := rate * seconds
	deadline := time.Now().Add(30 * time.Second)
	for {
		evMu.Lock()
		got := len(events)
		evMu.Unlock()
		if got >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var evLat, pushLat []time.Duration
	evMu.Lock()
	for _, r := range events {
		var d struct {
			Message struct{ ID int64 } `json:"message"`
		}
		_ = json.Unmarshal([]byte(r.Frame.Data), &d)
		evLat = append(evLat, r.At.Sub(run.sentAt[d.Message.ID]))
	}
	evMu.Unlock()
	if withPush && delay == 0 {
		for len(rec.All()) < total && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		for _, p := range rec.All() {
			pushLat = append(pushLat, p.ReceivedAt.Sub(run.sentAt[p.MessageID]))
		}
		if len(pushLat) != total {
			t.Errorf("%d pushes, want %d", len(pushLat), total)
		}
	}
	if len(evLat) != total {
		t.Errorf("%d MessageSent events, want %d", len(evLat), total)
	}
	t.Logf("%d messages at %d/s: MessageSent to connected members p50 %s p99 %s; push to the test FCM p50 %s p99 %s (%d pushes)",
		total, rate, pct(evLat, 0.5).Round(10*time.Microsecond), pct(evLat, 0.99).Round(10*time.Microsecond),
		pct(pushLat, 0.5).Round(10*time.Microsecond), pct(pushLat, 0.99).Round(10*time.Microsecond), len(pushLat))
}
