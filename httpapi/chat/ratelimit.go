package chat

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// limiter is a fixed-window request counter per token, in memory (one node's
// share; a cluster multiplies the limit by its nodes). Laravel's throttle
// middleware counts the same way.
type limiter struct {
	limit  int           // requests per window; set at construction
	window time.Duration // set at construction

	mu        sync.Mutex
	windows   map[int64]*rateWindow // guarded by mu; by token id
	lastSweep time.Time             // guarded by mu
}

type rateWindow struct {
	start time.Time
	count int
}

func newLimiter(limit int, window time.Duration) *limiter {
	return &limiter{limit: limit, window: window, windows: map[int64]*rateWindow{}}
}

// take counts one request for key. It reports the requests left in the
// window, and when refused how long until the window resets.
func (l *limiter) take(key int64, now time.Time) (remaining int, retryAfter time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.window {
		// Forget finished windows so idle tokens do not pile up.
		for k, w := range l.windows {
			if now.Sub(w.start) >= l.window {
				delete(l.windows, k)
			}
		}
		l.lastSweep = now
	}
	w := l.windows[key]
	if w == nil || now.Sub(w.start) >= l.window {
		w = &rateWindow{start: now}
		l.windows[key] = w
	}
	if w.count >= l.limit {
		return 0, w.start.Add(l.window).Sub(now), false
	}
	w.count++
	return l.limit - w.count, 0, true
}

// throttle applies the per-token rate limit (after authenticate) with
// Laravel's headers; past it, 429 with Retry-After.
func (s *Service) throttle(c *gin.Context) { applyLimit(c, s.limiter) }

// throttleAuth is throttle for channel authorizations, with their own limit.
func (s *Service) throttleAuth(c *gin.Context) { applyLimit(c, s.authLimiter) }

func applyLimit(c *gin.Context, l *limiter) {
	if l == nil {
		return
	}
	remaining, retry, ok := l.take(tokenOf(c).ID, time.Now())
	h := c.Writer.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(l.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	if !ok {
		secs := int((retry + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		h.Set("Retry-After", strconv.Itoa(secs))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Duration(secs)*time.Second).Unix(), 10))
		abortMessage(c, http.StatusTooManyRequests, msgTooMany)
	}
}
