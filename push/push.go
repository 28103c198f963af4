// Package push sends push notifications to the devices of chat members who
// are not connected: FCM (Android, HTTP v1), APNs (iOS, token auth over
// HTTP/2) and Web Push (browsers, VAPID and RFC 8291 encryption), each
// behind the small Provider interface.
//
// The decision to push (who, when, how often) is the unread counters'
// (package unread); this package only delivers: a bounded queue drained
// by a fixed number of workers, so a slow or failing provider never slows
// anything but its own pushes; transient failures retried with back-off;
// tokens a provider reports dead removed from the store; metrics and one
// log line per failure class.
package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/defaults"
	"github.com/parley-chat/parley/persistence"
	"github.com/prometheus/client_golang/prometheus"
)

// Notification is what one push says: the matter's title, the sender's
// name, the text (empty when the server sends none), the ids the app
// opens, and the member's total unread count as the badge.
type Notification struct {
	UserID     int64
	MatterID   int64
	MessageID  int64
	SenderID   int64
	Title      string // the matter's title
	SenderName string
	Text       string // cut to the configured length; "" for none
	Badge      int    // the member's unread messages, all matters
}

// CollapseID groups a matter's pushes on the device (APNs apns-collapse-id
// and thread-id, the FCM collapse key and tag, the Web Push Topic): a newer
// push replaces the older one.
func (n Notification) CollapseID() string { return "matter-" + strconv.FormatInt(n.MatterID, 10) }

// Body is the notification's text line: "Ann: Hello", or "Ann sent a
// message" when the text is not sent.
func (n Notification) Body() string {
	if n.Text == "" {
		return n.SenderName + " sent a message"
	}
	return n.SenderName + ": " + n.Text
}

// Data is the key-value payload every platform carries for the app.
func (n Notification) Data() map[string]string {
	return map[string]string{
		"type":         "message",
		"matter_id":    strconv.FormatInt(n.MatterID, 10),
		"message_id":   strconv.FormatInt(n.MessageID, 10),
		"sender_id":    strconv.FormatInt(n.SenderID, 10),
		"sender_name":  n.SenderName,
		"matter_title": n.Title,
		"badge":        strconv.Itoa(n.Badge),
	}
}

// Provider sends one notification to one device of its platform. Errors
// it returns are *Failure when the provider answered; anything else (a
// network error, a timeout) is retried.
type Provider interface {
	Platform() string
	Send(ctx context.Context, d persistence.Device, n Notification) error
}

// Class says what to do about a failed push.
type Class string

// Failure classes.
const (
	// Dead: the provider says the token will never work again (FCM
	// UNREGISTERED, APNs 410 or BadDeviceToken, Web Push 404 or 410); the
	// device is removed.
	Dead Class = "dead_token"
	// Retry: the provider is busy or failing (429, 5xx) or unreachable;
	// tried again with back-off.
	Retry Class = "unavailable"
	// Rejected: the provider refused the request itself (bad credentials,
	// a malformed message); not retried.
	Rejected Class = "rejected"
	// Dropped: the queue was full, or the retries ran out.
	Dropped Class = "dropped"
)

// Failure is a provider's refusal.
type Failure struct {
	Class      Class
	Status     int    // the HTTP status
	Reason     string // the provider's reason, e.g. "Unregistered"
	RetryAfter time.Duration
}

func (f *Failure) Error() string {
	return fmt.Sprintf("push %s: status %d %s", f.Class, f.Status, f.Reason)
}

// failure is the refusal of a provider that answered HTTP status: Dead
// when dead (the provider says the token is gone for good), else Retry on
// 429 and 5xx, else Rejected.
func failure(status int, reason string, retryAfter time.Duration, dead bool) *Failure {
	f := &Failure{Status: status, Reason: reason, RetryAfter: retryAfter}
	switch {
	case dead:
		f.Class = Dead
	case status == http.StatusTooManyRequests || status >= 500:
		f.Class = Retry
	default:
		f.Class = Rejected
	}
	return f
}

// classify is err's class: a *Failure's, else Retry.
func classify(err error) (Class, *Failure) {
	var f *Failure
	if errors.As(err, &f) {
		return f.Class, f
	}
	return Retry, nil
}

// DeadTokens is where dead tokens are removed; persistence.Store satisfies it.
type DeadTokens interface {
	DeleteDeadToken(ctx context.Context, deviceID int64, token string) (userID int64, removed bool, err error)
}

// Options of a Dispatcher; zero values take the defaults.
type Options struct {
	Queue       int // jobs waiting; default 10,000
	Concurrency int // sends at once; default 8
	// Attempts is the most times one push is tried; default 4.
	Attempts int
	// Backoff is the wait before the first retry, doubled each time (a
	// provider's Retry-After wins when longer); default 1 s.
	Backoff time.Duration
	// Timeout bounds one send; default 10 s.
	Timeout time.Duration
	// Removed is told the user whose device was removed as dead (their
	// unread counter drops its cached devices); may be nil.
	Removed func(userID int64)
	Log     *slog.Logger
	// Registerer gets the metrics; nil: none.
	Registerer prometheus.Registerer
}

// job is one push to one device.
type job struct {
	dev      persistence.Device
	n        Notification
	attempts int
}

// Dispatcher delivers pushes through the providers. Push never blocks.
type Dispatcher struct {
	providers map[string]Provider // set at construction
	store     DeadTokens          // set at construction
	opts      Options             // set at construction
	queue     chan *job
	stop      chan struct{}
	wg        sync.WaitGroup
	met       *dispatchMetrics
	logs      *classLog
	closeOnce sync.Once
}

// NewDispatcher starts the workers. providers may be empty (every push is
// then dropped as unsupported).
func NewDispatcher(providers []Provider, store DeadTokens, opts Options) *Dispatcher {
	defaults.Set(&opts.Queue, 10000)
	defaults.Set(&opts.Concurrency, 8)
	defaults.Set(&opts.Attempts, 4)
	defaults.Set(&opts.Backoff, time.Second)
	defaults.Set(&opts.Timeout, 10*time.Second)
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{providers: map[string]Provider{}, store: store, opts: opts,
		queue: make(chan *job, opts.Queue), stop: make(chan struct{}), logs: newClassLog(opts.Log, 10*time.Second)}
	for _, p := range providers {
		d.providers[p.Platform()] = p
	}
	d.met = newDispatchMetrics(opts.Registerer, func() float64 { return float64(len(d.queue)) })
	for range opts.Concurrency {
		d.wg.Add(1)
		go d.work()
	}
	return d
}

// Platforms lists the platforms a provider is configured for.
func (d *Dispatcher) Platforms() []string {
	out := make([]string, 0, len(d.providers))
	for p := range d.providers {
		out = append(out, p)
	}
	return out
}

// Push queues n for each device whose platform has a provider. It never
// blocks: a full queue drops the push (counted and logged).
func (d *Dispatcher) Push(n Notification, devices []persistence.Device) {
	for _, dev := range devices {
		if _, ok := d.providers[dev.Platform]; !ok {
			continue
		}
		d.enqueue(&job{dev: dev, n: n})
	}
}

func (d *Dispatcher) enqueue(j *job) {
	select {
	case <-d.stop:
		return
	default:
	}
	select {
	case d.queue <- j:
	default:
		d.met.failed(j.dev.Platform, Dropped)
		d.logs.log(Dropped, "push: queue full, dropped", "platform", j.dev.Platform, "user_id", j.n.UserID, "queue", cap(d.queue))
	}
}

// Close stops the workers; pushes still queued or waiting for a retry are
// dropped.
func (d *Dispatcher) Close() {
	d.closeOnce.Do(func() { close(d.stop) })
	d.wg.Wait()
}

func (d *Dispatcher) work() {
	defer d.wg.Done()
	for {
		select {
		case <-d.stop:
			return
		case j := <-d.queue:
			d.send(j)
		}
	}
}

// send tries one job once and decides what follows.
func (d *Dispatcher) send(j *job) {
	p := d.providers[j.dev.Platform]
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.Timeout)
	start := time.Now()
	err := p.Send(ctx, j.dev, j.n)
	cancel()
	d.met.latency(j.dev.Platform, time.Since(start))
	j.attempts++
	if err == nil {
		d.met.sent(j.dev.Platform)
		return
	}
	class, f := classify(err)
	attrs := []any{"platform", j.dev.Platform, "user_id", j.n.UserID, "device_id", j.dev.ID, slog.Any("error", err)}
	switch class {
	case Dead:
		d.met.failed(j.dev.Platform, Dead)
		d.removeDead(j)
		d.logs.log(Dead, "push: the provider says the token is dead; device removed", attrs...)
	case Rejected:
		d.met.failed(j.dev.Platform, Rejected)
		d.logs.log(Rejected, "push: the provider refused the request (check the credentials and settings)", attrs...)
	default:
		if j.attempts >= d.opts.Attempts {
			d.met.failed(j.dev.Platform, Dropped)
			d.logs.log(Dropped, "push: provider unavailable, retries exhausted; dropped", append(attrs, "attempts", j.attempts)...)
			return
		}
		d.met.failed(j.dev.Platform, Retry)
		wait := d.opts.Backoff << (j.attempts - 1)
		wait += time.Duration(rand.Int64N(int64(wait)/4 + 1)) // jitter: retries of one outage spread out
		if f != nil && f.RetryAfter > wait {
			wait = min(f.RetryAfter, 10*time.Minute)
		}
		d.logs.log(Retry, "push: provider unavailable; retrying", append(attrs, "attempt", j.attempts, "retry_in", wait.String())...)
		time.AfterFunc(wait, func() { d.enqueue(j) })
	}
}

func (d *Dispatcher) removeDead(j *job) {
	if d.store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.Timeout)
	defer cancel()
	userID, removed, err := d.store.DeleteDeadToken(ctx, j.dev.ID, j.dev.Token)
	if err != nil {
		d.opts.Log.Warn("push: removing a dead token failed", "device_id", j.dev.ID, slog.Any("error", err))
		return
	}
	if removed {
		d.met.removed(j.dev.Platform)
		if d.opts.Removed != nil {
			d.opts.Removed(userID)
		}
	}
}

// classLog logs each failure class at most once per interval, saying how
// many of the class it did not log meanwhile: a provider that is down
// gives one line every interval, not one per message.
type classLog struct {
	out   *slog.Logger
	every time.Duration
	mu    sync.Mutex
	last  map[Class]time.Time
	quiet map[Class]int
}

func newClassLog(log *slog.Logger, every time.Duration) *classLog {
	return &classLog{out: log, every: every, last: map[Class]time.Time{}, quiet: map[Class]int{}}
}

func (l *classLog) log(c Class, msg string, attrs ...any) {
	l.mu.Lock()
	if time.Since(l.last[c]) < l.every {
		l.quiet[c]++
		l.mu.Unlock()
		return
	}
	l.last[c] = time.Now()
	n := l.quiet[c]
	l.quiet[c] = 0
	l.mu.Unlock()
	l.out.Warn(msg, append(attrs, "class", string(c), "not_logged_since_last", n)...)
}
