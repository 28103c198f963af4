package httpapi

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
)

// TestSlowBodiesAreCut: 200 clients that trickle a request body are cut off
// at the read deadline instead of holding their connections open, and the
// server keeps answering meanwhile.
func TestSlowBodiesAreCut(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.HTTPReadTimeout = 500 * time.Millisecond })
	addr := strings.TrimPrefix(s.url, "http://")
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_, _ = c.Write([]byte("POST /apps/" + testkit.AppID + "/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"))
			// Keep trickling, as the attack does, until the server gives up.
			done := make(chan struct{})
			go func() {
				for {
					select {
					case <-done:
						return
					case <-time.After(100 * time.Millisecond):
						if _, err := c.Write([]byte(" ")); err != nil {
							return
						}
					}
				}
			}()
			defer close(done)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			for {
				if _, err := r.ReadByte(); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						errs <- errors.New("connection still open after 5 s")
					}
					return // the server answered and closed, or reset
				}
			}
		}()
	}
	// Meanwhile the server answers.
	if code, _ := s.api(http.MethodGet, "/apps/"+testkit.AppID+"/channels", nil, nil); code != 200 {
		t.Fatalf("channels %d during the slow bodies", code)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("slow bodies took %v to be cut", d)
	}
}

// TestBodyLimit: a body over MaxBodyBytes is refused with 413.
func TestBodyLimit(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.MaxBodyBytes = 64 << 10 })
	code, _ := s.rawAPI(http.MethodPost, s.url+"/apps/"+testkit.AppID+"/events", []byte(`{"data":"`+strings.Repeat("x", 100<<10)+`"}`))
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", code)
	}
}

// TestReadinessAndLiveness: /up answers 503 while a readiness check fails,
// /livez stays 200.
func TestReadinessAndLiveness(t *testing.T) {
	s := startServer(t, nil)
	var mu sync.Mutex
	var dbErr error
	s.api_.AddReadinessCheck("database", func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return dbErr
	})
	get := func(path string) int {
		res, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if get("/up") != 200 || get("/livez") != 200 {
		t.Fatal("not ready with a healthy database")
	}
	mu.Lock()
	dbErr = errors.New("connection refused")
	mu.Unlock()
	if got := get("/up"); got != http.StatusServiceUnavailable {
		t.Fatalf("/up %d with the database down", got)
	}
	if get("/livez") != 200 {
		t.Fatal("/livez must not depend on the database")
	}
}

// TestConnectionCaps: the node-wide cap and the per-address cap refuse with
// 4100 (pusher-js reconnects with back-off).
func TestConnectionCaps(t *testing.T) {
	t.Run("per address", func(t *testing.T) {
		s := startServer(t, func(c *config.Config) { c.MaxConnectionsPerIP = 2 })
		a, b := s.dial(), s.dial()
		w := s.dialRaw("/app/"+testkit.Key+"?protocol=7", nil)
		w.expectError(4100)
		if code := w.ExpectClose(5 * time.Second); code != 4100 {
			t.Fatalf("close %d", code)
		}
		a.Conn.Close()
		_ = b
		waitFor(t, func() bool { return s.node.Connections(testkit.AppID) == 1 })
		s.dial() // a slot is free again
	})
	t.Run("node-wide", func(t *testing.T) {
		s := startServer(t, func(c *config.Config) { c.MaxConnections = 1 })
		s.dial()
		w := s.dialRaw("/app/"+testkit.Key+"?protocol=7", nil)
		w.expectError(4100)
	})
}
