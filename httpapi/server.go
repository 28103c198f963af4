// Package httpapi is Parley's HTTP layer (gin): the Pusher HTTP API, the
// WebSocket upgrade route, health, and the chat REST API. Handlers parse,
// validate, call the core and render; they never reach into actor state.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/httpapi/access"
	"github.com/parley-chat/parley/metrics"
	"github.com/parley-chat/parley/wsconn"
)

// Server holds the routes' dependencies.
type Server struct {
	cfg    *config.Config
	node   *actors.Node
	log    *slog.Logger
	engine *gin.Engine
	checks []readiness // set before serving
	access access.Options
	// connOpts are the node's socket options (fixed once it is built).
	connOpts wsconn.Options

	metrics      *metrics.Metrics // set by SetMetrics before serving
	metricsToken string
	metricsHere  bool // /metrics is served on this port
	signed       *gin.RouterGroup
}

// New builds the routes.
func New(cfg *config.Config, node *actors.Node, log *slog.Logger) *Server {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.RemoveExtraSlash = true
	s := &Server{cfg: cfg, node: node, log: log, engine: e, connOpts: node.ConnOptions()}
	s.access = access.Options{
		Log: log, Metrics: func() *metrics.Metrics { return s.metrics },
		App: s.requestApp, Quiet: quietRoute,
	}
	// The access log first, so that a request whose handler panicked is
	// logged and counted with the 500 the recovery answers.
	e.Use(access.Middleware(s.access))
	e.Use(gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		log.Error("handler panic", slog.Any("error", err), slog.String("path", c.Request.URL.Path))
		c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
	}))
	e.Use(s.limitBody)

	e.GET(wsRoute, s.upgrade) // most connects are answered before gin: ServeHTTP
	e.GET("/up", s.health)
	e.GET("/livez", s.live)
	e.GET("/metrics", s.serveMetrics)

	apps := e.Group("/apps/:app_id", s.pusherAuth)
	s.signed = apps
	apps.POST("/events", s.triggerEvent)
	apps.POST("/batch_events", s.triggerBatch)
	apps.GET("/channels", s.listChannels)
	apps.GET("/channels/:channel_name", s.showChannel)
	apps.GET("/channels/:channel_name/users", s.channelUsers)
	apps.POST("/users/:user_id/terminate_connections", s.terminateUser)

	e.NoRoute(func(c *gin.Context) {
		path := c.Request.URL.Path
		if strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/broadcasting/") {
			// The chat API's clients are browsers and Laravel-style code:
			// answer as its other routes do, readable cross-origin.
			if o := c.GetHeader("Origin"); o != "" && len(cfg.Apps) > 0 && cfg.Apps[0].OriginAllowed(o) {
				c.Header("Access-Control-Allow-Origin", o)
				c.Header("Vary", "Origin")
			}
			c.JSON(http.StatusNotFound, gin.H{"message": "Not Found."})
			return
		}
		c.JSON(http.StatusNotFound, gin.H{"error": "no route " + c.Request.Method + " " + wsconn.Truncate(path, 100)})
	})
	return s
}

// Engine is the gin engine, for packages that add routes (the chat API).
func (s *Server) Engine() *gin.Engine { return s.engine }

// Signed is the /apps/:app_id group: its requests are signed like the Pusher
// HTTP API (an app's key and secret), for packages that add signed routes
// (the chat's admin API).
func (s *Server) Signed() *gin.RouterGroup { return s.signed }

// Handler is the http.Handler to serve: WebSocket connects, then gin.
func (s *Server) Handler() http.Handler { return s }

// limitBody bounds every request but the WebSocket upgrade: its body may be
// at most MaxBodyBytes and must arrive within HTTPReadTimeout, so clients
// that trickle a body cannot hold connections (and file descriptors) open.
func (s *Server) limitBody(c *gin.Context) {
	if c.Request.Method == http.MethodGet && strings.HasPrefix(c.Request.URL.Path, wsPrefix) {
		c.Next()
		return
	}
	if d := s.cfg.HTTPReadTimeout; d > 0 {
		_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now().Add(d))
	}
	if max := s.cfg.MaxBodyBytes; max > 0 && c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, max)
	}
	c.Next()
}

// upgrade is the WebSocket route for the paths gin cleans first (see
// ServeHTTP): it hands the socket to the node and returns.
func (s *Server) upgrade(c *gin.Context) {
	s.acceptSocket(c.Writer, c.Request, c.Param("key"))
}

// AddReadinessCheck adds a check that /up runs (the chat's database).
func (s *Server) AddReadinessCheck(name string, check func(context.Context) error) {
	s.checks = append(s.checks, readiness{name, check})
}

type readiness struct {
	name  string
	check func(context.Context) error
}

// health is Reverb's /up, the readiness probe: 200 while the node accepts
// traffic and what it depends on answers; 503 while draining or when a
// dependency is down.
func (s *Server) health(c *gin.Context) {
	cluster, clustered := s.node.Cluster()
	if ok, reason := s.node.Health(); !ok {
		body := gin.H{"health": reason}
		if clustered {
			body["cluster"] = clusterJSON(cluster)
		}
		c.JSON(http.StatusServiceUnavailable, body)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	for _, r := range s.checks {
		if err := r.check(ctx); err != nil {
			s.log.Warn("readiness check failed", "check", r.name, slog.Any("error", err))
			c.JSON(http.StatusServiceUnavailable, gin.H{"health": r.name + " unavailable"})
			return
		}
	}
	if clustered {
		c.JSON(http.StatusOK, gin.H{"health": "OK", "cluster": clusterJSON(cluster)})
		return
	}
	c.JSON(http.StatusOK, gin.H{"health": "OK"})
}

// clusterJSON is what /up tells of the node's cluster: its member id, the
// members it hears (itself included), how many count for the quorum and how
// many known addresses have no live member.
func clusterJSON(st actors.ClusterStatus) gin.H {
	return gin.H{"member": st.Member, "serving": st.Up, "members": st.Live, "counted": st.Counted, "missing": st.Missing}
}

// live is the liveness probe: 200 as long as the process serves HTTP, even
// while draining or while the database is down (restarting would not help).
func (s *Server) live(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"live": true})
}

// SetMetrics counts requests in m and, when onMainPort, serves it at
// /metrics on this server (token, if set, is required as a bearer token).
// Call it before serving.
func (s *Server) SetMetrics(m *metrics.Metrics, onMainPort bool, token string) {
	s.metrics, s.metricsHere, s.metricsToken = m, onMainPort, token
}

func (s *Server) serveMetrics(c *gin.Context) {
	switch {
	case s.metrics == nil:
		c.JSON(http.StatusNotFound, gin.H{"error": "metrics are off"})
		return
	case !s.metricsHere:
		c.JSON(http.StatusNotFound, gin.H{"error": "metrics are served on the --metrics-addr listener"})
		return
	}
	s.metrics.Handler(s.metricsToken).ServeHTTP(c.Writer, c.Request)
}

// requestApp names the app of a request for logs and metrics: the Pusher
// API's app id, the WebSocket key's app, or the chat's app for /api and
// /broadcasting; "" when unknown.
func (s *Server) requestApp(c *gin.Context) string {
	if id := c.Param("app_id"); id != "" {
		if _, ok := s.node.App(id); ok {
			return id
		}
		return ""
	}
	if key := c.Param("key"); key != "" {
		if a, ok := s.cfg.AppByKey(key); ok {
			return a.ID
		}
		return ""
	}
	p := c.Request.URL.Path
	if s.cfg.Chat && len(s.cfg.Apps) > 0 && (strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/broadcasting/")) {
		return s.cfg.Apps[0].ID
	}
	return ""
}

// quietRoute: probes, scrapes and WebSocket upgrades are logged at debug
// level (refused sockets have their own line).
func quietRoute(c *gin.Context) bool {
	switch c.FullPath() {
	case "/up", "/livez", "/metrics", wsRoute:
		return true
	}
	return false
}
