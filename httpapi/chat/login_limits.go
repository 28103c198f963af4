package chat

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/internal/defaults"
)

// LoginOptions bound what logging in can cost the server. A zero (or
// negative) field takes its default.
type LoginOptions struct {
	// AttemptsPerMinute is how many failed logins one email may have from
	// one IP address per minute; the next answers 429 until the minute that
	// began with the first failure ends. Default 5 (Laravel's).
	AttemptsPerMinute int
	// IPAttemptsPerMinute is how many failed logins one IP address (an IPv6
	// /64) may have per minute across all emails. Default 20.
	IPAttemptsPerMinute int
	// TrackedKeys caps each of the two throttle tables (email+IP, IP); past
	// it the oldest window is forgotten early. Default 10,000 (both tables
	// full take about 3.5 MB, whatever the emails' length).
	TrackedKeys int
	// HashConcurrency is how many bcrypt comparisons may run at once.
	// Default max(1, GOMAXPROCS/2), so logins always leave cores to
	// delivery.
	HashConcurrency int
	// HashWait is how long a login waits for a hashing slot before it
	// answers 503 with Retry-After. Default 2 s.
	HashWait time.Duration
	// TrustedProxies are addresses or CIDR prefixes ("10.0.0.0/8") of
	// reverse proxies. When the TCP peer is one, the client is the
	// right-most X-Forwarded-For address that is not. Default none: the TCP
	// peer is the client and X-Forwarded-For is ignored, since anyone could
	// forge it to escape the per-IP limits. Mount panics on a bad entry.
	TrustedProxies []string
}

// Login option defaults; see LoginOptions.
const (
	DefaultLoginAttemptsPerMinute   = 5
	DefaultLoginIPAttemptsPerMinute = 20
	DefaultLoginTrackedKeys         = 10_000
	DefaultHashWait                 = 2 * time.Second
)

// DefaultHashConcurrency is max(1, GOMAXPROCS/2).
func DefaultHashConcurrency() int { return max(1, runtime.GOMAXPROCS(0)/2) }

func (o LoginOptions) withDefaults() LoginOptions {
	defaults.Set(&o.AttemptsPerMinute, DefaultLoginAttemptsPerMinute)
	defaults.Set(&o.IPAttemptsPerMinute, DefaultLoginIPAttemptsPerMinute)
	defaults.Set(&o.TrackedKeys, DefaultLoginTrackedKeys)
	defaults.Set(&o.HashConcurrency, DefaultHashConcurrency())
	defaults.Set(&o.HashWait, DefaultHashWait)
	return o
}

// parsePrefixes reads TrustedProxies: bare addresses become /32 or /128.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is neither an address nor a CIDR prefix", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func trusted(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientKey is the address logins are throttled by, as text: the TCP peer,
// or behind a trusted proxy the right-most X-Forwarded-For hop that is not
// itself trusted. An IPv6 client counts as its /64, the smallest block a
// client is usually given.
func clientKey(r *http.Request, proxies []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "unknown"
	}
	a = a.Unmap()
	if trusted(proxies, a) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a garbled hop: trust nothing left of it
			}
			a = h.Unmap()
			if !trusted(proxies, a) {
				break
			}
		}
	}
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// emailKey is Laravel's lower(email)|ip throttle key with the email hashed,
// so a megabyte-long email costs the table no more than a short one.
func emailKey(email, ip string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	return string(sum[:16]) + "|" + ip
}

// loginThrottle counts failed logins per email+IP and per IP in fixed
// one-minute windows that start at the first attempt, as Laravel's
// RateLimiter does. An attempt in flight counts against the limit until its
// outcome is known, so simultaneous guesses cannot all slip past the check
// and reach bcrypt; a success clears the email's failures.
type loginThrottle struct {
	window time.Duration // set at construction

	mu    sync.Mutex
	email attemptTable // guarded by mu; keyed by emailKey
	ip    attemptTable // guarded by mu
}

func newLoginThrottle(o LoginOptions, window time.Duration) *loginThrottle {
	return &loginThrottle{
		window: window,
		email:  newAttemptTable(o.AttemptsPerMinute, o.TrackedKeys),
		ip:     newAttemptTable(o.IPAttemptsPerMinute, o.TrackedKeys),
	}
}

// attemptTable is one kind of key's windows. Every window has the same
// length and starts when it is created, so the list (creation order) is also
// expiry order: expiring and evicting are both from the front.
type attemptTable struct {
	limit int
	cap   int
	byKey map[string]*list.Element // of *attemptWindow
	order *list.List
}

type attemptWindow struct {
	key      string
	start    time.Time
	failures int
	pending  int // attempts in flight
}

func newAttemptTable(limit, capacity int) attemptTable {
	return attemptTable{limit: limit, cap: capacity, byKey: map[string]*list.Element{}, order: list.New()}
}

func (t *attemptTable) expire(now time.Time, window time.Duration) {
	for e := t.order.Front(); e != nil; e = t.order.Front() {
		w := e.Value.(*attemptWindow)
		if now.Sub(w.start) < window {
			return
		}
		t.remove(e)
	}
}

func (t *attemptTable) remove(e *list.Element) {
	t.order.Remove(e)
	delete(t.byKey, e.Value.(*attemptWindow).key)
}

func (t *attemptTable) get(key string) *attemptWindow {
	if e, ok := t.byKey[key]; ok {
		return e.Value.(*attemptWindow)
	}
	return nil
}

// retry is how long key must wait, 0 if it may try now. A limit reached
// only with attempts still in flight clears within moments.
func (t *attemptTable) retry(key string, now time.Time, window time.Duration) time.Duration {
	w := t.get(key)
	switch {
	case w == nil || w.failures+w.pending < t.limit:
		return 0
	case w.failures >= t.limit:
		return w.start.Add(window).Sub(now)
	default:
		return time.Second
	}
}

// begin records an attempt in flight, opening a window if key has none.
func (t *attemptTable) begin(key string, now time.Time) *attemptWindow {
	w := t.get(key)
	if w == nil {
		if t.order.Len() >= t.cap {
			t.remove(t.order.Front())
		}
		w = &attemptWindow{key: key, start: now}
		t.byKey[key] = t.order.PushBack(w)
	}
	w.pending++
	return w
}

// settle ends an attempt in flight, counting it as a failure or not. A
// window that expired meanwhile is no longer in the table: harmless.
func (w *attemptWindow) settle(failed bool) {
	if w.pending > 0 {
		w.pending--
	}
	if failed {
		w.failures++
	}
}

// loginAttempt is an attempt in flight; settle it with exactly one of
// failed, succeeded or refund.
type loginAttempt struct {
	emailKey string
	email    *attemptWindow
	ip       *attemptWindow
}

// begin starts an attempt for emailKey from ipKey, or refuses it and says
// how long to wait.
func (l *loginThrottle) begin(emailKey, ipKey string, now time.Time) (loginAttempt, time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.email.expire(now, l.window)
	l.ip.expire(now, l.window)
	if retry := max(l.email.retry(emailKey, now, l.window), l.ip.retry(ipKey, now, l.window)); retry > 0 {
		return loginAttempt{}, retry, false
	}
	return loginAttempt{emailKey: emailKey, email: l.email.begin(emailKey, now), ip: l.ip.begin(ipKey, now)}, 0, true
}

// failed counts a wrong email or password against both keys.
func (l *loginThrottle) failed(a loginAttempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a.email.settle(true)
	a.ip.settle(true)
}

// refund forgets an attempt that was never judged (the database or the
// hashing slots were unavailable).
func (l *loginThrottle) refund(a loginAttempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a.email.settle(false)
	a.ip.settle(false)
}

// succeeded clears the email's failures (Laravel's RateLimiter::clear); the
// IP's other failures stay counted.
func (l *loginThrottle) succeeded(a loginAttempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a.email.settle(false)
	a.ip.settle(false)
	if e, ok := l.email.byKey[a.emailKey]; ok && e.Value.(*attemptWindow) == a.email {
		if a.email.pending == 0 {
			l.email.remove(e)
		} else {
			a.email.failures = 0 // keep the window for the attempts in flight
		}
	}
}

// hashSlots bounds concurrent bcrypt work: bcrypt at cost 10 is tens of
// milliseconds of one core, and unbounded logins would starve delivery.
type hashSlots struct {
	slots chan struct{}
	wait  time.Duration
}

var errHashBusy = errors.New("no password hashing slot free")

func newHashSlots(n int, wait time.Duration) *hashSlots {
	return &hashSlots{slots: make(chan struct{}, n), wait: wait}
}

// acquire takes a slot within the wait; the caller must release it.
func (h *hashSlots) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-t.C:
		return errHashBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hashSlots) release() { <-h.slots }

// checkPassword compares within a hashing slot; err means no slot was free.
func (s *Service) checkPassword(ctx context.Context, hash func() string, pw string) (bool, error) {
	if err := s.hashing.acquire(ctx); err != nil {
		return false, err
	}
	defer s.hashing.release()
	return CheckPassword(hash(), pw), nil
}

const msgHashBusy = "Too many logins at once; try again."

// hashBusy answers 503: every hashing slot stayed taken for the whole wait.
func (s *Service) hashBusy(c *gin.Context) {
	c.Header("Retry-After", strconv.Itoa(ceilSeconds(s.hashing.wait)))
	abortMessage(c, http.StatusServiceUnavailable, msgHashBusy)
}

// lockedOut answers Laravel's login lockout: 429, Retry-After, and the
// message under "email".
func lockedOut(c *gin.Context, retry time.Duration) {
	secs := ceilSeconds(retry)
	msg := fmt.Sprintf("Too many login attempts. Please try again in %d seconds.", secs)
	c.Header("Retry-After", strconv.Itoa(secs))
	c.AbortWithStatusJSON(http.StatusTooManyRequests, gin.H{"message": msg, "errors": gin.H{"email": []string{msg}}})
}

// ceilSeconds rounds up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}
