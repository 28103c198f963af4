// Package webhook sends an app's webhooks as Pusher does: JSON batches
// {"time_ms": ..., "events": [...]} POSTed to each configured URL, signed
// with the app secret (X-Pusher-Key, X-Pusher-Signature), retried with
// back-off, from a bounded queue per URL so that nobody who reports an event
// ever waits. It also holds channel_vacated and member_removed back for a
// delay (Pusher's 3 s): a re-join within it cancels both events.
//
// What counts as an event (a channel occupied cluster-wide, a user's first
// connection) is decided by the caller; this package only sends.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/defaults"
	"github.com/parley-chat/parley/pusher"
)

// Options tune a Sender; zero fields take the defaults below.
type Options struct {
	VacateDelay time.Duration // channel_vacated and member_removed wait this long; 0 sends at once
	BatchWindow time.Duration // events within this window of the first go in one request; default 100 ms
	MaxBatch    int           // events per request at most; default 100
	QueueSize   int           // events waiting per URL before new ones are dropped; default 10,000
	MaxAttempts int           // tries per request before it is dropped; default 8
	RetryBase   time.Duration // first back-off, doubled per retry; default 1 s
	RetryMax    time.Duration // longest back-off; default 60 s
	Timeout     time.Duration // per request; default 10 s
	Client      *http.Client  // default: a client with Timeout
	Log         *slog.Logger
}

func (o *Options) defaults() {
	defaults.Set(&o.BatchWindow, 100*time.Millisecond)
	defaults.Set(&o.MaxBatch, 100)
	defaults.Set(&o.QueueSize, 10000)
	defaults.Set(&o.MaxAttempts, 8)
	defaults.Set(&o.RetryBase, time.Second)
	defaults.Set(&o.RetryMax, time.Minute)
	defaults.Set(&o.Timeout, 10*time.Second)
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Event is one webhook event: {"name": ..., "channel": ..., ...}.
type Event map[string]any

// Sender sends the webhooks of every app. Its methods are safe for
// concurrent use and never block on the network; a nil *Sender sends nothing.
type Sender struct {
	opts  Options
	apps  map[string]*app // set at construction
	abort chan struct{}   // closed when Close's deadline passes: retries stop
	wg    sync.WaitGroup

	mu      sync.Mutex
	closed  bool                // guarded by mu
	pending map[string]*delayed // guarded by mu; key → the delayed event
	queue   []*delayed          // guarded by mu; in due order (one delay for all)
	wake    chan struct{}       // a new head of queue, or closing
	stopped chan struct{}       // the delay loop ended
}

type app struct {
	id, key, secret string
	wants           map[string]bool // event types any endpoint takes
	endpoints       []*endpoint
}

// endpoint is one URL of an app, with its queue and worker.
type endpoint struct {
	app     *app
	hook    config.Webhook
	url     string // redacted, for logs
	ch      chan Event
	dropped atomic.Int64
	logged  atomic.Int64 // unix seconds of the last drop log line
}

// delayed is a channel_vacated or member_removed waiting for its delay.
type delayed struct {
	key       string
	appID     string
	ev        Event
	due       time.Time
	cancelled bool
}

// New starts a Sender for the apps' webhooks. Apps without webhooks cost nothing.
func New(apps []config.App, opts Options) *Sender {
	opts.defaults()
	s := &Sender{opts: opts, apps: map[string]*app{}, abort: make(chan struct{}),
		pending: map[string]*delayed{}, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	for i := range apps {
		a := &apps[i]
		if len(a.Webhooks) == 0 {
			continue
		}
		ap := &app{id: a.ID, key: a.Key, secret: a.Secret, wants: map[string]bool{}}
		for _, h := range a.Webhooks {
			e := &endpoint{app: ap, hook: h, url: h.URL, ch: make(chan Event, opts.QueueSize)}
			if u, err := url.Parse(h.URL); err == nil {
				e.url = u.Redacted()
			}
			for _, t := range h.EventTypes {
				ap.wants[t] = true
			}
			ap.endpoints = append(ap.endpoints, e)
			s.wg.Add(1)
			go s.run(e)
		}
		s.apps[a.ID] = ap
	}
	go s.delayLoop()
	return s
}

// Wants reports whether any webhook of the app takes one of these event types.
func (s *Sender) Wants(appID string, types ...string) bool {
	if s == nil {
		return false
	}
	a := s.apps[appID]
	if a == nil {
		return false
	}
	for _, t := range types {
		if a.wants[t] {
			return true
		}
	}
	return false
}

// Occupied reports a channel occupied. A channel_vacated still waiting for
// its delay is cancelled instead (a reconnect): neither is sent. Silent
// only cancels (a state hand-over between cluster nodes, not an event).
func (s *Sender) Occupied(appID, channel string, silent bool) {
	s.joined(appID, "v\x00"+channel, Event{"name": "channel_occupied", "channel": channel}, silent, "channel_occupied", "channel_vacated")
}

// Vacated reports a channel vacated: sent after the vacate delay unless
// the channel is occupied again meanwhile.
func (s *Sender) Vacated(appID, channel string, silent bool) {
	s.left(appID, "v\x00"+channel, Event{"name": "channel_vacated", "channel": channel}, silent, "channel_occupied", "channel_vacated")
}

// MemberAdded reports a user's first connection to a presence channel; a
// member_removed of that user still waiting is cancelled instead.
func (s *Sender) MemberAdded(appID, channel, userID string, silent bool) {
	s.joined(appID, "m\x00"+channel+"\x00"+userID, Event{"name": "member_added", "channel": channel, "user_id": userID}, silent, "member_added", "member_removed")
}

// MemberRemoved reports a user's last connection gone from a presence
// channel: sent after the delay unless the user is back meanwhile.
func (s *Sender) MemberRemoved(appID, channel, userID string, silent bool) {
	s.left(appID, "m\x00"+channel+"\x00"+userID, Event{"name": "member_removed", "channel": channel, "user_id": userID}, silent, "member_added", "member_removed")
}

// ClientEvent reports a client-* event; userID is "" outside presence channels.
func (s *Sender) ClientEvent(appID, channel, event, data, socketID, userID string) {
	if !s.Wants(appID, "client_event") {
		return
	}
	ev := Event{"name": "client_event", "channel": channel, "event": event, "data": data, "socket_id": socketID}
	if userID != "" {
		ev["user_id"] = userID
	}
	s.mu.Lock()
	s.emit(appID, ev)
	s.mu.Unlock()
}

// CacheMiss reports a subscription to a cache channel with nothing cached.
func (s *Sender) CacheMiss(appID, channel string) {
	if !s.Wants(appID, "cache_miss") {
		return
	}
	s.mu.Lock()
	s.emit(appID, Event{"name": "cache_miss", "channel": channel})
	s.mu.Unlock()
}

// SubscriptionCount reports a channel's new number of subscriptions.
func (s *Sender) SubscriptionCount(appID, channel string, count int) {
	if !s.Wants(appID, "subscription_count") {
		return
	}
	s.mu.Lock()
	s.emit(appID, Event{"name": "subscription_count", "channel": channel, "subscription_count": count})
	s.mu.Unlock()
}

func (s *Sender) joined(appID, key string, ev Event, silent bool, types ...string) {
	if !s.Wants(appID, types...) {
		return
	}
	key = appID + "\x00" + key
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.pending[key]; d != nil {
		d.cancelled = true
		delete(s.pending, key)
		return
	}
	if !silent {
		s.emit(appID, ev)
	}
}

func (s *Sender) left(appID, key string, ev Event, silent bool, types ...string) {
	if silent || !s.Wants(appID, types...) {
		return
	}
	key = appID + "\x00" + key
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.VacateDelay <= 0 || s.closed {
		s.emit(appID, ev)
		return
	}
	if s.pending[key] != nil {
		return // cannot happen: a leave follows a join, which cancels
	}
	d := &delayed{key: key, appID: appID, ev: ev, due: time.Now().Add(s.opts.VacateDelay)}
	s.pending[key] = d
	s.queue = append(s.queue, d)
	if len(s.queue) == 1 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// delayLoop sends each delayed event when it is due. Every event waits the
// same delay, so the queue is in due order.
func (s *Sender) delayLoop() {
	defer close(s.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		for len(s.queue) > 0 && s.queue[0].cancelled {
			s.queue = s.queue[1:]
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		wait := time.Duration(-1)
		if len(s.queue) > 0 {
			d := s.queue[0]
			if wait = time.Until(d.due); wait <= 0 {
				s.queue = s.queue[1:]
				delete(s.pending, d.key)
				s.emit(d.appID, d.ev)
				s.mu.Unlock()
				continue
			}
		}
		s.mu.Unlock()
		if wait < 0 {
			<-s.wake
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-s.wake:
			if !timer.Stop() {
				<-timer.C
			}
		}
	}
}

// emit queues ev for every endpoint of the app that takes it; a full queue
// drops it. Called with mu held, which orders events and guards closing.
func (s *Sender) emit(appID string, ev Event) {
	a := s.apps[appID]
	if a == nil || s.closed {
		return
	}
	name, _ := ev["name"].(string)
	channel, _ := ev["channel"].(string)
	for _, e := range a.endpoints {
		if !e.hook.Wants(name, channel) {
			continue
		}
		select {
		case e.ch <- ev:
		default:
			n := e.dropped.Add(1)
			now := time.Now().Unix()
			if last := e.logged.Load(); now-last >= 10 && e.logged.CompareAndSwap(last, now) {
				s.opts.Log.Warn("webhook queue full: event dropped", "app", appID, "url", e.url, "event", name, "queue", cap(e.ch), "dropped_total", n)
			}
		}
	}
}

// run is an endpoint's worker: it batches what is queued and sends it.
func (s *Sender) run(e *endpoint) {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		ev, ok := <-e.ch
		if !ok {
			return
		}
		batch := []Event{ev}
		open := true
		timer.Reset(s.opts.BatchWindow)
	collect:
		for len(batch) < s.opts.MaxBatch {
			select {
			case ev, ok := <-e.ch:
				if !ok {
					open = false
					break collect
				}
				batch = append(batch, ev)
			case <-timer.C:
				break collect
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		s.deliver(e, batch)
		if !open {
			return
		}
	}
}

// deliver POSTs one batch, retrying with back-off until it is accepted (2xx),
// the attempts run out or Close's deadline passes.
func (s *Sender) deliver(e *endpoint, batch []Event) {
	body, err := json.Marshal(struct {
		TimeMS int64   `json:"time_ms"`
		Events []Event `json:"events"`
	}{time.Now().UnixMilli(), batch})
	if err != nil {
		s.opts.Log.Error("webhook not encodable", "app", e.app.id, "error", err)
		return
	}
	sig := pusher.SignBytes(e.app.secret, body)
	backoff := s.opts.RetryBase
	var problem string
	for attempt := 1; ; attempt++ {
		problem = s.post(e, body, sig)
		if problem == "" {
			return
		}
		if attempt >= s.opts.MaxAttempts {
			break
		}
		s.opts.Log.Warn("webhook failed, will retry", "app", e.app.id, "url", e.url, "events", len(batch), "attempt", attempt, "retry_in", backoff, "error", problem)
		select {
		case <-time.After(backoff):
		case <-s.abort:
			s.opts.Log.Error("webhook dropped at shutdown", "app", e.app.id, "url", e.url, "events", len(batch), "error", problem)
			return
		}
		if backoff *= 2; backoff > s.opts.RetryMax {
			backoff = s.opts.RetryMax
		}
	}
	s.opts.Log.Error("webhook dropped after its last attempt", "app", e.app.id, "url", e.url, "events", len(batch), "attempts", s.opts.MaxAttempts, "error", problem)
}

// post sends one request; it returns what went wrong, or "".
func (s *Sender) post(e *endpoint, body []byte, sig string) string {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.hook.URL, bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "parley-webhooks")
	req.Header.Set("X-Pusher-Key", e.app.key)
	req.Header.Set("X-Pusher-Signature", sig)
	res, err := s.opts.Client.Do(req)
	if err != nil {
		return err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return "HTTP " + strconv.Itoa(res.StatusCode)
	}
	return ""
}

// Close sends what is still delayed at once, stops taking events and waits
// until every queued event was sent or ctx ends (then retries stop).
func (s *Sender) Close(ctx context.Context) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	for _, d := range s.queue {
		if !d.cancelled {
			s.emit(d.appID, d.ev)
		}
	}
	s.queue, s.pending = nil, map[string]*delayed{}
	s.closed = true
	for _, a := range s.apps {
		for _, e := range a.endpoints {
			close(e.ch)
		}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		close(s.abort)
		<-done
	}
	<-s.stopped
}
