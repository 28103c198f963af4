package chat

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// login posts credentials, optionally as from X-Forwarded-For xff.
func (e *env) login(email, pw, xff string) response {
	e.t.Helper()
	var hdr []string
	if xff != "" {
		hdr = []string{"X-Forwarded-For", xff}
	}
	return e.call("POST", "/api/auth/login", "", map[string]any{"email": email, "password": pw}, hdr...)
}

// wantLockedOut checks Laravel's login lockout: 429, Retry-After within the
// minute, and the message under "email".
func (r response) wantLockedOut(t *testing.T) {
	t.Helper()
	r.want(t, http.StatusTooManyRequests)
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 60 {
		t.Fatalf("Retry-After %q: %s", r.header.Get("Retry-After"), r.raw)
	}
	want := fmt.Sprintf("Too many login attempts. Please try again in %d seconds.", secs)
	errs, _ := r.body["errors"].(map[string]any)
	list, _ := errs["email"].([]any)
	if r.body["message"] != want || len(list) != 1 || list[0] != want {
		t.Fatalf("lockout body %s, want message and errors.email %q", r.raw, want)
	}
}

// holdHashing takes every hashing slot until the test ends, so any bcrypt
// work would wait out HashWait and answer 503.
func (e *env) holdHashing() {
	for range cap(e.svc.hashing.slots) {
		e.svc.hashing.slots <- struct{}{}
	}
	e.t.Cleanup(func() {
		for range cap(e.svc.hashing.slots) {
			e.svc.hashing.release()
		}
	})
}

func TestLoginThrottlePerEmail(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	e.user("Ann")
	e.user("Bob")
	for range DefaultLoginAttemptsPerMinute {
		e.login("ann@example.com", "wrong", "").wantInvalid(t, "email", msgBadCredentials)
	}
	// From here no password is even compared: with every hashing slot
	// taken, a login that reached bcrypt would answer 503 after HashWait.
	e.holdHashing()
	e.login("ann@example.com", "wrong", "").wantLockedOut(t)
	e.login("ANN@example.com ", password, "").wantLockedOut(t) // the right password too, any case
	e.login("", "", "").wantInvalid(t, "email", "required", "password", "required")

	// Other emails from the same address are not locked (5 < the IP's 20).
	r := e.login("bob@example.com", password, "")
	r.wantMessage(t, http.StatusServiceUnavailable, msgHashBusy) // it did reach bcrypt
	if r.header.Get("Retry-After") != "2" {
		t.Fatalf("503 Retry-After %q", r.header.Get("Retry-After"))
	}
}

func TestLoginSuccessClearsEmailCount(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	e.user("Ann")
	for range DefaultLoginAttemptsPerMinute - 1 {
		e.login("ann@example.com", "wrong", "").wantInvalid(t, "email", msgBadCredentials)
	}
	e.login("ann@example.com", password, "").want(t, http.StatusOK)
	for range DefaultLoginAttemptsPerMinute {
		e.login("ann@example.com", "wrong", "").wantInvalid(t, "email", msgBadCredentials)
	}
	e.login("ann@example.com", "wrong", "").wantLockedOut(t)
}

func TestLoginThrottlePerIP(t *testing.T) {
	e := startWith(t, sqliteDB(t), nil, LoginOptions{TrustedProxies: []string{"127.0.0.1"}})
	e.user("Ann")
	const attacker, other = "192.0.2.1", "192.0.2.2"

	// The email+IP key: Ann locked out from one address only.
	for range DefaultLoginAttemptsPerMinute {
		e.login("ann@example.com", "wrong", attacker).wantInvalid(t, "email", msgBadCredentials)
	}
	e.login("ann@example.com", "wrong", attacker).wantLockedOut(t)
	e.login("ann@example.com", password, other).want(t, http.StatusOK)

	// The IP key: failures across emails add up to the IP's limit.
	for i := DefaultLoginAttemptsPerMinute; i < DefaultLoginIPAttemptsPerMinute; i++ {
		e.login(fmt.Sprintf("user%d@example.com", i), "wrong", attacker).wantInvalid(t, "email", msgBadCredentials)
	}
	e.login("fresh@example.com", "wrong", attacker).wantLockedOut(t)
	e.login("ann@example.com", password, "10.9.9.9, "+attacker).wantLockedOut(t) // a forged left-most hop changes nothing
	e.login("ann@example.com", password, other).want(t, http.StatusOK)
}

// TestLoginThrottleIgnoresForwardedForByDefault: without trusted proxies an
// attacker cannot escape the limit by inventing X-Forwarded-For addresses.
func TestLoginThrottleIgnoresForwardedForByDefault(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	e.user("Ann")
	for i := range DefaultLoginAttemptsPerMinute {
		e.login("ann@example.com", "wrong", fmt.Sprintf("198.51.100.%d", i)).wantInvalid(t, "email", msgBadCredentials)
	}
	e.login("ann@example.com", "wrong", "198.51.100.99").wantLockedOut(t)
}

// TestLoginThrottleConcurrent: attempts are counted before the password is
// checked, so simultaneous guesses get exactly the limit's worth of bcrypt.
func TestLoginThrottleConcurrent(t *testing.T) {
	e := start(t, sqliteDB(t), nil)
	e.user("Ann")
	const n = 30
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for range n {
		wg.Go(func() {
			r, err := e.do("POST", "/api/auth/login", "", map[string]any{"email": "ann@example.com", "password": "wrong"})
			if err != nil {
				t.Error(err)
				return
			}
			statuses <- r.status
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusUnprocessableEntity] != DefaultLoginAttemptsPerMinute || count[http.StatusTooManyRequests] != n-DefaultLoginAttemptsPerMinute {
		t.Fatalf("statuses %v, want %d × 422 and the rest 429", count, DefaultLoginAttemptsPerMinute)
	}
}

// TestLoginHashingBound: with the one hashing slot held, a login answers 503
// with Retry-After after HashWait instead of queueing, and the attempt is not
// held against the user.
func TestLoginHashingBound(t *testing.T) {
	const wait = 100 * time.Millisecond
	e := startWith(t, sqliteDB(t), nil, LoginOptions{HashConcurrency: 1, HashWait: wait})
	e.user("Ann")
	if cap(e.svc.hashing.slots) != 1 {
		t.Fatalf("%d slots", cap(e.svc.hashing.slots))
	}
	e.svc.hashing.slots <- struct{}{} // a login in the middle of bcrypt
	// More than the per-email limit: refused for want of a slot, never
	// counted as failures (else the last would be 429).
	for range DefaultLoginAttemptsPerMinute + 1 {
		t0 := time.Now()
		r := e.login("ann@example.com", "wrong", "")
		took := time.Since(t0)
		r.wantMessage(t, http.StatusServiceUnavailable, msgHashBusy)
		if r.header.Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		if took < wait || took > wait+5*time.Second {
			t.Fatalf("503 after %v, want after the %v wait", took, wait)
		}
	}
	e.svc.hashing.release()
	e.login("ann@example.com", password, "").want(t, http.StatusOK)
}

func TestLoginThrottleTable(t *testing.T) {
	l := newLoginThrottle(LoginOptions{AttemptsPerMinute: 2, IPAttemptsPerMinute: 3, TrackedKeys: 4}, time.Minute)
	t0 := time.Unix(1000, 0)
	// fail makes a failed attempt; it reports the refusal otherwise.
	fail := func(email, ip string, at time.Duration) (time.Duration, bool) {
		a, retry, ok := l.begin(email+"|"+ip, ip, t0.Add(at))
		if ok {
			l.failed(a)
		}
		return retry, ok
	}
	for i, want := range []bool{true, true, false} {
		if _, ok := fail("a", "1", time.Duration(i)*time.Second); ok != want {
			t.Fatalf("attempt %d: ok=%v", i, ok)
		}
	}
	if retry, _ := fail("a", "1", 30*time.Second); retry != 30*time.Second {
		t.Fatalf("retry %v, want the rest of the window from the first attempt", retry)
	}
	if _, ok := fail("b", "1", 31*time.Second); !ok {
		t.Fatal("third failure of the IP refused")
	}
	if retry, ok := fail("c", "1", 40*time.Second); ok || retry != 20*time.Second {
		t.Fatalf("fourth attempt of the IP: ok=%v retry=%v", ok, retry)
	}
	if _, ok := fail("a", "1", time.Minute); !ok {
		t.Fatal("a new window refused")
	}

	// Attempts in flight count; refused for that alone, retry in a second.
	now := t0.Add(2 * time.Minute)
	a1, _, ok1 := l.begin("p|2", "2", now)
	a2, _, ok2 := l.begin("p|2", "2", now)
	if _, retry, ok := l.begin("p|2", "2", now); !ok1 || !ok2 || ok || retry != time.Second {
		t.Fatalf("third in flight: ok=%v retry=%v", ok, retry)
	}
	l.refund(a1)
	l.succeeded(a2)
	if l.email.get("p|2") != nil || l.ip.get("2").failures+l.ip.get("2").pending != 0 {
		t.Fatal("refund or success left a count behind")
	}
	// A success clears the email's failures, not the IP's.
	fail("s", "3", 2*time.Minute)
	a, _, _ := l.begin("s|3", "3", now)
	l.succeeded(a)
	if l.email.get("s|3") != nil || l.ip.get("3").failures != 1 {
		t.Fatal("success kept the email's failures or cleared the IP's")
	}

	// Bounded memory: finished windows expire, and past the cap the oldest
	// window goes.
	for i := range 10 {
		fail(strconv.Itoa(i), strconv.Itoa(i), 10*time.Minute+time.Duration(i)*time.Second)
	}
	if l.email.order.Len() != 4 || len(l.email.byKey) != 4 || len(l.ip.byKey) != 4 {
		t.Fatalf("tables hold %d/%d and %d keys, cap 4", l.email.order.Len(), len(l.email.byKey), len(l.ip.byKey))
	}
	if l.email.get("5|5") != nil || l.email.get("9|9") == nil {
		t.Fatal("not the oldest window evicted")
	}
	fail("z", "z", 20*time.Minute)
	if len(l.email.byKey) != 1 || len(l.ip.byKey) != 1 {
		t.Fatalf("finished windows kept: %d %d", len(l.email.byKey), len(l.ip.byKey))
	}
}

func TestClientKey(t *testing.T) {
	proxies, err := parsePrefixes([]string{"127.0.0.1", "10.0.0.0/8", " ::1 "})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peer, xff string
		proxies   bool
		want      string
	}{
		{"203.0.113.5:4000", "", true, "203.0.113.5"},
		{"203.0.113.5:4000", "198.51.100.1", true, "203.0.113.5"}, // untrusted peer: header ignored
		{"127.0.0.1:4000", "198.51.100.1", false, "127.0.0.1"},    // no proxies configured
		{"127.0.0.1:4000", "6.6.6.6, 198.51.100.1, 10.0.0.2", true, "198.51.100.1"},
		{"127.0.0.1:4000", "garbage, 10.0.0.2", true, "10.0.0.2"},
		{"[::1]:4000", "2001:db8:1:2:3:4:5:6", true, "2001:db8:1:2::/64"},
		{"[2001:db8::1]:4000", "", true, "2001:db8::/64"},
		{"[::ffff:203.0.113.5]:4000", "", true, "203.0.113.5"},
	} {
		r := httptest.NewRequest("POST", "/api/auth/login", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		p := proxies
		if !tc.proxies {
			p = nil
		}
		if got := clientKey(r, p); got != tc.want {
			t.Errorf("peer %s xff %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
	if _, err := parsePrefixes([]string{"nginx"}); err == nil || !strings.Contains(err.Error(), "nginx") {
		t.Fatalf("bad proxy accepted: %v", err)
	}
}

func TestHashPasswordRefusesUnusablePasswords(t *testing.T) {
	for _, pw := range []string{"", "a\x00b", "a\xffb", strings.Repeat("x", 73)} {
		if _, err := HashPassword(pw); err == nil {
			t.Errorf("HashPassword(%q) succeeded", pw)
		}
	}
}

// TestPing: the health check sees the database go away.
func TestPing(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		if err := e.svc.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		e.st.Close()
		t0 := time.Now()
		if err := e.svc.Ping(context.Background()); err == nil {
			t.Fatal("Ping succeeded on a closed store")
		}
		if took := time.Since(t0); took > PingTimeout+time.Second {
			t.Fatalf("Ping took %v", took)
		}
	})
}
