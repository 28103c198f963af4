// Package access logs every HTTP request (one access line each, one more
// line per authentication failure) and counts it in the metrics. Handlers
// name the user and the reason of a refusal with SetUser and AuthFailure.
//
// What is never logged: query strings (they carry auth_signature), request
// and response bodies, headers (Authorization), tokens and secrets.
package access

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/metrics"
	"github.com/parley-chat/parley/wsconn"
)

const (
	keyUser   = "access.user"
	keyReason = "access.reason"
	keyAuth   = "access.auth"
	keyAttrs  = "access.attrs"
)

// SetUser names the authenticated user of the request in its access line.
func SetUser(c *gin.Context, id int64) { c.Set(keyUser, id) }

// Reason says why a request was refused, for its access line. It must not
// contain a secret.
func Reason(c *gin.Context, reason string) { c.Set(keyReason, reason) }

// AuthFailure marks the request as a failed authentication (a failed login,
// a bad signature...) with its reason and extra attributes (never a
// password, token or secret): it gets an "auth failure" line whatever its
// status. 401, 403 and 429 answers get one anyway.
func AuthFailure(c *gin.Context, reason string, attrs ...any) {
	c.Set(keyReason, reason)
	c.Set(keyAuth, true)
	if len(attrs) > 0 {
		c.Set(keyAttrs, attrs)
	}
}

// Options configure the middleware.
type Options struct {
	Log *slog.Logger
	// Metrics counts requests; read at each request, so it may be set after
	// the middleware is installed (before serving). Nil counts nothing.
	Metrics func() *metrics.Metrics
	// App names the request's app for the access line and the metrics
	// label, "" if none (an unknown id must give "", to bound the labels).
	App func(c *gin.Context) string
	// Quiet reports requests logged at debug level only (probes, metrics
	// scrapes, WebSocket upgrades: frequent and uninformative).
	Quiet func(c *gin.Context) bool
}

// Middleware logs and counts each request once it is handled.
func Middleware(o Options) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		upgrade := c.GetHeader("Upgrade") != ""
		var cw *captureWriter
		if !upgrade { // an upgrade's writer is hijacked: leave it alone
			cw = &captureWriter{ResponseWriter: c.Writer}
			c.Writer = cw
		}
		c.Next()
		l := Line{Route: c.FullPath(), Status: c.Writer.Status(), Start: start}
		if upgrade && c.IsWebsocket() && c.Writer.Size() <= 0 && l.Status == http.StatusOK {
			// Hijacked by a successful upgrade (gin still says 200, no body).
			l.Status = http.StatusSwitchingProtocols
		}
		if o.App != nil {
			l.App = o.App(c)
		}
		if v, ok := c.Get(keyUser); ok {
			l.User = v
		}
		l.Reason = c.GetString(keyReason)
		if l.Reason == "" && l.Status >= 400 && cw != nil {
			l.Reason = cw.reason()
		}
		l.Quiet = o.Quiet != nil && o.Quiet(c)
		l.Auth = c.GetBool(keyAuth)
		if extra, ok := c.Get(keyAttrs); ok {
			l.Attrs = extra.([]any)
		}
		o.Record(c.Request, l)
	}
}

// Line is what the access line and the metrics say of one handled request.
type Line struct {
	Route  string    // the route pattern, "" when no route matched
	Status int       // the status answered (101 for an upgrade)
	Start  time.Time // when handling began
	App    string    // the request's app, "" if none or unknown
	User   any       // the authenticated user's id, nil if none
	Reason string    // why it was refused, "" if it was not (or unknown)
	Quiet  bool      // logged at debug level unless it failed
	Auth   bool      // a failed authentication: an "auth failure" line too
	Attrs  []any     // key-value pairs for the "auth failure" line
}

// Record counts one handled request in the metrics and writes its access
// line: the middleware's work, for handlers that run outside gin (the
// WebSocket upgrade, answered before gin's router).
func (o Options) Record(r *http.Request, l Line) {
	d := time.Since(l.Start)
	if o.Metrics != nil {
		o.Metrics().HTTPRequest(l.App, r.Method, l.Route, l.Status, d)
	}
	if o.Log == nil {
		return
	}
	level := slog.LevelInfo
	if l.Quiet && l.Status < 400 {
		level = slog.LevelDebug
	}
	if l.Status >= 500 {
		level = slog.LevelWarn
	}
	authLine := l.Auth || l.Status == http.StatusUnauthorized || l.Status == http.StatusForbidden || l.Status == http.StatusTooManyRequests
	if authLine || o.Log.Enabled(context.Background(), level) {
		o.write(r, &l, d, level, authLine)
	}
}

// write logs the access line (and the auth failure line). Apart from Record
// so that a request that logs nothing (a connect below debug level) needs no
// stack for the attributes: a connect's goroutine is new, and growing its
// stack is a copy.
//
//go:noinline
func (o Options) write(r *http.Request, l *Line, d time.Duration, level slog.Level, authLine bool) {
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("route", routeName(l.Route)),
		slog.String("path", wsconn.Truncate(r.URL.Path, 200)),
		slog.Int("status", l.Status),
		slog.Duration("duration", d),
		slog.String("ip", peer(r)))
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		attrs = append(attrs, slog.String("forwarded_for", wsconn.Truncate(xff, 200)))
	}
	if l.App != "" {
		attrs = append(attrs, slog.String("app", l.App))
	}
	if l.User != nil {
		attrs = append(attrs, slog.Any("user_id", l.User))
	}
	if l.Reason != "" {
		attrs = append(attrs, slog.String("reason", l.Reason))
	}
	ctx := context.Background()
	o.Log.LogAttrs(ctx, level, "request", attrs...)
	if authLine {
		kv := l.Attrs // key-value pairs
		for i := 0; i+1 < len(kv); i += 2 {
			if k, ok := kv[i].(string); ok {
				attrs = append(attrs, slog.Any(k, kv[i+1]))
			}
		}
		o.Log.LogAttrs(ctx, slog.LevelWarn, "auth failure", attrs...)
	}
}

func routeName(route string) string {
	if route == "" {
		return "unmatched"
	}
	return route
}

func peer(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// captureWriter keeps the start of an error answer, whose JSON "error" or
// "message" is the refusal's reason (Parley's error texts hold no secret).
type captureWriter struct {
	gin.ResponseWriter
	buf []byte
}

const captureMax = 512

func (w *captureWriter) keep(b []byte) {
	if w.Status() >= 400 && len(w.buf) < captureMax {
		w.buf = append(w.buf, b[:min(len(b), captureMax-len(w.buf))]...)
	}
}

func (w *captureWriter) Write(b []byte) (int, error) {
	w.keep(b)
	return w.ResponseWriter.Write(b)
}

func (w *captureWriter) WriteString(s string) (int, error) {
	w.keep([]byte(s))
	return w.ResponseWriter.WriteString(s)
}

func (w *captureWriter) reason() string {
	var body struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(w.buf, &body) != nil {
		return ""
	}
	if body.Error != "" {
		return wsconn.Truncate(body.Error, 200)
	}
	return wsconn.Truncate(body.Message, 200)
}

// Unwrap lets http.ResponseController reach the connection (read deadlines).
func (w *captureWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
