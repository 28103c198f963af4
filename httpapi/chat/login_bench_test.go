package chat

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// BenchmarkDeliveryDuringLogins measures event delivery (broadcast → frame
// on a socket, one at a time) while 50 users, each from their own address,
// log in back to back with real cost-10 bcrypt hashes, with the hashing bound and without it
// (unbounded = 1,000 slots). Reports p50/p99 delivery latency and the
// logins done.
//
//	go test -run '^$' -bench DeliveryDuringLogins -benchtime 400x ./httpapi/chat/
func BenchmarkDeliveryDuringLogins(b *testing.B) {
	for _, bc := range []struct {
		name  string
		slots int
	}{{"bounded", 0}, {"unbounded", 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			benchDeliveryDuringLogins(b, LoginOptions{HashConcurrency: bc.slots, HashWait: time.Minute})
		})
	}
}

func benchDeliveryDuringLogins(b *testing.B, lo LoginOptions) {
	const loggers = 50
	lo.TrustedProxies = []string{"127.0.0.1"}
	e := startWith(b, sqliteDB(b), nil, lo)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), 10)
	if err != nil {
		b.Fatal(err)
	}
	for i := range loggers {
		if _, err := e.st.CreateUser(context.Background(), "U", fmt.Sprintf("u%d@example.com", i), string(hash)); err != nil {
			b.Fatal(err)
		}
	}
	u, err := e.st.CreateUser(context.Background(), "Ann", "ann@example.com", string(hash))
	if err != nil {
		b.Fatal(err)
	}
	plain, _, err := IssueToken(context.Background(), e.st, u.ID, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	w := e.dialAs(person{User: u, token: plain}, userChannel(u.ID))

	stop := make(chan struct{})
	var logins, failures atomic.Int64
	var wg sync.WaitGroup
	for i := range loggers {
		body := map[string]any{"email": fmt.Sprintf("u%d@example.com", i), "password": password}
		addr := fmt.Sprintf("192.0.2.%d", i+1)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := e.do("POST", "/api/auth/login", "", body, "X-Forwarded-For", addr)
				if err != nil || r.status != http.StatusOK {
					failures.Add(1)
					continue
				}
				logins.Add(1)
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // let the logins pile up
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		e.svc.broadcast("Bench", []string{userChannel(u.ID)}, map[string]int{"i": i}, "")
		for {
			r, err := w.TryNext(30 * time.Second)
			if err != nil {
				b.Fatalf("event %d: %v", i, err)
			}
			if r.Frame.Event == ev("Bench") {
				break
			}
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(logins.Load()), "logins")
	if n := failures.Load(); n > 0 {
		b.Logf("%d logins failed", n)
	}
}
