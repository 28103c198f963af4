// Package httpapi is Parley's HTTP layer (gin): the Pusher HTTP API, the
// WebSocket upgrade route, health, and the chat REST API. Handlers parse,
// validate, call the core and render; they never reach into actor state.
package httpapi

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/wsconn"
)

// Server holds the routes' dependencies.
type Server struct {
	cfg    *config.Config
	node   *actors.Node
	log    *slog.Logger
	engine *gin.Engine
}

// New builds the routes.
func New(cfg *config.Config, node *actors.Node, log *slog.Logger) *Server {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		log.Error("handler panic", slog.Any("error", err), slog.String("path", c.Request.URL.Path))
		c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
	}))
	e.RemoveExtraSlash = true
	s := &Server{cfg: cfg, node: node, log: log, engine: e}

	e.GET("/app/:key", s.upgrade)
	e.GET("/up", s.health)

	apps := e.Group("/apps/:app_id", s.pusherAuth)
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
		c.JSON(http.StatusNotFound, gin.H{"error": "no route " + c.Request.Method + " " + truncate(path, 100)})
	})
	return s
}

// Engine is the gin engine, for packages that add routes (the chat API).
func (s *Server) Engine() *gin.Engine { return s.engine }

// Handler is the http.Handler to serve.
func (s *Server) Handler() http.Handler { return s.engine }

// upgrade hands the socket to the node and returns.
func (s *Server) upgrade(c *gin.Context) {
	conn, err := wsconn.Upgrade(c.Writer, c.Request, s.node.ConnOptions())
	if err != nil {
		return // gorilla has answered with 400
	}
	s.node.Accept(conn, c.Param("key"), c.Query("protocol"), c.GetHeader("Origin"))
}

// health is Reverb's /up: 200 while the node accepts traffic.
func (s *Server) health(c *gin.Context) {
	if !s.node.Ready() {
		c.JSON(http.StatusServiceUnavailable, gin.H{"health": "draining"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"health": "OK"})
}
