package httpapi

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/httpapi/access"
	"github.com/parley-chat/parley/wsconn"
)

// The WebSocket route. Its requests are answered before gin's router (see
// ServeHTTP), except those whose path gin would first clean (an extra
// slash, a dot segment), which reach the same handler through gin.
const (
	wsRoute  = "/app/:key"
	wsPrefix = "/app/"
)

// ServeHTTP answers WebSocket connects (GET /app/{key}) itself and hands
// every other request to gin. A connect is the server's most frequent
// request and gin's router, context and middleware chain were a fifth of
// its CPU: here it gets what they gave it (the access line, the metrics,
// panics recovered) without them. The body limit never applied to it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if key, ok := socketKey(r); ok {
		s.serveSocket(w, r, key)
		return
	}
	s.engine.ServeHTTP(w, r)
}

// socketKey reports whether gin would route r to /app/:key as it is, and
// the key. Paths gin cleans first ("//app/k", "/app/./k") go to gin, as do
// "/app/k/" (gin redirects it) and "/app/" (no route).
func socketKey(r *http.Request) (string, bool) {
	if r.Method != http.MethodGet {
		return "", false
	}
	return pathKey(r.URL.Path)
}

// pathKey is socketKey for a GET of path.
func pathKey(path string) (string, bool) {
	if !strings.HasPrefix(path, wsPrefix) {
		return "", false
	}
	key := path[len(wsPrefix):]
	if key == "" || key == "." || key == ".." || strings.IndexByte(key, '/') >= 0 {
		return "", false
	}
	return key, true
}

// serveSocket is the connect outside gin: the upgrade, then the access line
// and metrics the middleware would have written, and recovery.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request, key string) {
	sw := statusWriters.Get().(*statusWriter)
	sw.ResponseWriter = w
	defer s.socketDone(sw, r, key, time.Now())
	s.acceptSocket(sw, r, key)
}

// socketDone recovers from a panic of the connect, as gin's recovery did,
// and writes its access line and metrics.
func (s *Server) socketDone(sw *statusWriter, r *http.Request, key string, start time.Time) {
	line := access.Line{Route: wsRoute, Start: start, Quiet: true}
	if err := recover(); err != nil {
		line.Reason = s.socketPanic(sw, r, err)
	}
	line.Status = sw.answered()
	*sw = statusWriter{}
	statusWriters.Put(sw)
	s.recordConnect(r, key, line)
}

// recordConnect writes a connect's access line and metrics, with its app.
func (s *Server) recordConnect(r *http.Request, key string, line access.Line) {
	if a, ok := s.cfg.AppByKey(key); ok {
		line.App = a.ID
	}
	s.access.Record(r, line)
}

// socketPanic logs a connect's panic and answers 500 as gin's recovery did,
// if the connection is still the server's to answer on.
func (s *Server) socketPanic(sw *statusWriter, r *http.Request, err any) (reason string) {
	s.log.Error("handler panic", slog.Any("error", err), slog.String("path", r.URL.Path))
	if !sw.hijacked && sw.status == 0 {
		w := sw.ResponseWriter
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":"internal error"}`))
		reason = "internal error"
	}
	sw.status = http.StatusInternalServerError
	return reason
}

// acceptSocket upgrades r and hands the socket to the node. A refused
// handshake has been answered (400) when Upgrade fails.
func (s *Server) acceptSocket(w http.ResponseWriter, r *http.Request, key string) {
	conn, err := wsconn.Upgrade(w, r, s.connOpts)
	if err != nil {
		return
	}
	// RemoteAddr is always host:port for a TCP peer; if ever it were not,
	// the node gets "" as the address (as before).
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	s.node.Accept(conn, key, queryValue(r.URL.RawQuery, "protocol"), r.Header.Get("Origin"), ip)
}

// queryValue is url.Values.Get of the parsed raw query for one key, without
// building the map (and its strings) for every parameter: the first
// "name=value" pair whose name is name. Queries with an escape, a '+', a
// semicolon or many parameters take url.ParseQuery's path, so that the
// answer is always the parser's.
func queryValue(raw, name string) string {
	if strings.ContainsAny(raw, "%+;") || strings.Count(raw, "&") >= 64 {
		v, _ := url.ParseQuery(raw)
		return v.Get(name)
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if k, v, _ := strings.Cut(pair, "="); k == name {
			return v
		}
	}
	return ""
}

// statusWriter remembers the status a refused handshake was answered with
// and whether the connection was hijacked. Pooled: a connect allocates
// enough.
type statusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	nc, brw, err := h.Hijack()
	if err == nil {
		w.hijacked = true
	}
	return nc, brw, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// answered is the status the client got: what was written, else 101 once
// the connection was hijacked (the handshake's answer goes on the raw
// connection), else net/http's 200.
func (w *statusWriter) answered() int {
	switch {
	case w.status != 0:
		return w.status
	case w.hijacked:
		return http.StatusSwitchingProtocols
	}
	return http.StatusOK
}
