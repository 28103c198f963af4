// Package chat is Parley's chat REST API (Laravel-compatible routes under
// /api and /broadcasting/auth): log in with a bearer token, send, list, edit
// and read messages, unread counts, and channel authorization for Echo.
//
// Every write is persisted first and broadcast after it committed; a database
// failure answers 503 and publishes nothing.
package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/cluster"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/unread"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/persistence"
)

// Deps are what the chat API needs from the server.
type Deps struct {
	Config *config.Config
	Store  persistence.Store
	Node   *actors.Node
	// App is the Pusher app chat events go to and broadcasting auth signs
	// with (cfg.Apps[0] after EnsureApp).
	App *config.App
	Log *slog.Logger
	// Login bounds login throttling and password hashing; zero fields take
	// their defaults.
	Login LoginOptions
	// Unread tunes the unread counters (coalescing window, reconciliation
	// period, ...); zero fields take their defaults. Log is Deps.Log.
	Unread unread.Options
	// Signed is the /apps/:app_id route group whose requests are signed
	// like the Pusher HTTP API (httpapi.Server.Signed); the admin API is
	// mounted on it. Nil: no admin API.
	Signed *gin.RouterGroup
	// Push turns push notifications on (push.go); nil: off.
	Push *PushDeps
}

// Service holds the chat routes' state. Its fields are set by Mount and
// never change; the limiter and the counters are safe for concurrent use.
type Service struct {
	cfg      *config.Config
	st       persistence.Store
	node     *actors.Node
	app      *config.App
	log      *slog.Logger
	counters *unread.Counters
	sender   *persistence.Sender // group commit of sends
	limiter  *limiter            // nil when the rate limit is 0 (unlimited)
	// authLimiter counts channel authorizations apart; nil = unlimited.
	authLimiter *limiter
	ns          string // event namespace without a trailing backslash
	logins      *loginThrottle
	hashing     *hashSlots
	proxies     []netip.Prefix // trusted reverse proxies (LoginOptions.TrustedProxies)
	auth        *authCache     // tokens checked lately, with their users
	push        *pushService   // nil: no push notifications
}

// LoginTokenTTL is how long a token from POST /api/auth/login is valid.
const LoginTokenTTL = 24 * time.Hour

// maxBody bounds request bodies; a 5,000-character message is at most 20 KB.
const maxBody = 1 << 20

// Mount registers the chat routes on e and starts the unread counters.
func Mount(e *gin.Engine, d Deps) *Service {
	if d.Config == nil || d.Store == nil || d.Node == nil || d.App == nil {
		panic("chat.Mount: Config, Store, Node and App are required")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	lo := d.Login.withDefaults()
	proxies, err := parsePrefixes(lo.TrustedProxies)
	if err != nil {
		panic("chat.Mount: " + err.Error())
	}
	s := &Service{
		cfg: d.Config, st: d.Store, node: d.Node, app: d.App, log: d.Log,
		ns:      strings.TrimRight(d.Config.EventNamespace, `\`),
		logins:  newLoginThrottle(lo, time.Minute),
		auth:    newAuthCache(authCacheTTL),
		hashing: newHashSlots(lo.HashConcurrency, lo.HashWait),
		proxies: proxies,
	}
	if d.Config.APIRateLimit > 0 {
		s.limiter = newLimiter(d.Config.APIRateLimit, time.Minute)
	}
	if d.Config.AuthRateLimit > 0 {
		s.authLimiter = newLimiter(d.Config.AuthRateLimit, time.Minute)
	}
	uo := d.Unread
	uo.Log = d.Log
	if d.Push != nil {
		uo.Push = s.startPush(d)
	}
	s.counters = d.Node.StartUnreadCounters(d.Store, s.publishUnread, uo)
	so := persistence.SenderOptions{Timeout: writeTimeout}
	if d.Store.Dialect() == "postgres" {
		// Groups of different matters commit side by side (one connection
		// each, of the send pool's); the embedded database has one writer.
		so.Lanes = persistence.SendLanes
	}
	s.sender = persistence.NewSender(d.Store, so)

	auth := []gin.HandlerFunc{s.authenticate, s.throttle}

	api := e.Group("/api", s.cors)
	api.OPTIONS("/*path", s.preflight)
	api.POST("/auth/login", s.login)
	authed := api.Group("", auth...)
	authed.POST("/auth/logout", s.logout)
	authed.GET("/user", s.currentUser)
	authed.GET("/matters", s.listMatters)
	authed.POST("/messages/send", s.publishable, s.sendMessage)
	authed.GET("/messages", s.listMessages)
	authed.GET("/messages/unread-count", s.unreadCount)
	authed.PUT("/messages/:id/read", s.publishable, s.markRead)
	authed.PUT("/messages/:id", s.publishable, s.ownMessage(s.editMessage))
	authed.DELETE("/messages/:id", s.publishable, s.ownMessage(s.deleteMessage))
	authed.PUT("/matters/:id/read", s.publishable, s.markMatterRead)
	authed.GET("/matters/:id/settings", s.matterSettings)
	authed.PUT("/matters/:id/settings", s.updateMatterSettings)
	authed.POST("/devices", s.registerDevice)
	authed.GET("/devices", s.listDevices)
	authed.DELETE("/devices/:id", s.deleteDevice)
	api.GET("/push/vapid-public-key", s.vapidPublicKey)
	// Channel authorization has its own budget: joining a matter is two of
	// them, repeated after every reconnect.
	channelAuth := []gin.HandlerFunc{s.authenticate, s.throttleAuth, s.broadcastingAuth}
	api.POST("/broadcasting/auth", channelAuth...)

	bc := e.Group("/broadcasting", s.cors)
	bc.OPTIONS("/auth", s.preflight)
	bc.POST("/auth", channelAuth...)

	if d.Signed != nil {
		s.mountAdmin(d.Signed)
	}
	return s
}

// Stop stores the sends still queued, then stops the unread counter actors.
func (s *Service) Stop() {
	s.sender.Close()
	s.counters.Stop()
	if s.push != nil {
		s.push.dispatcher.Close()
	}
}

// UnreadKind is the cluster grain kind of the unread counters, to register
// when the node joins a cluster.
func (s *Service) UnreadKind() *cluster.Kind { return s.counters.Kind() }

// UseCluster makes every user's unread counter a grain: one per user in the
// whole cluster, wherever its notifications come from.
func (s *Service) UseCluster(cl *cluster.Cluster) { s.counters.UseCluster(cl) }

// PingTimeout bounds Ping, so a health check answers promptly even when the
// database hangs rather than refuses.
const PingTimeout = 2 * time.Second

// Ping reports whether the database answers within PingTimeout (or ctx's
// deadline, if sooner); GET /up can use it.
func (s *Service) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	return s.st.Ping(ctx)
}

// Laravel's texts for the common refusals.
const (
	msgUnauthenticated = "Unauthenticated."
	msgForbidden       = "This action is unauthorized."
	msgTooMany         = "Too Many Attempts."
	msgUnavailable     = "The database is unavailable; try again."
	msgBusy            = "The server is busy; try again."
	msgNoQuorum        = "This server cannot reach its cluster; try again."
)

// publishable refuses a write (503, Retry-After) before it does anything
// when its events could not be published now: the fan-out backlog is full,
// or this node cannot reach a majority of its cluster. A write that passes
// commits, then publishes whatever the backlog holds by then: the events of
// an acknowledged write are never dropped.
func (s *Service) publishable(c *gin.Context) {
	switch err := s.node.CanPublish(); {
	case errors.Is(err, actors.ErrNoQuorum):
		c.Header("Retry-After", "5")
		abortMessage(c, http.StatusServiceUnavailable, msgNoQuorum)
	case err != nil:
		c.Header("Retry-After", "1")
		abortMessage(c, http.StatusServiceUnavailable, msgBusy)
	}
}

func abortMessage(c *gin.Context, status int, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"message": msg})
}

// unavailable answers 503 for a database (or counter) failure; nothing has
// been broadcast when it is called.
func (s *Service) unavailable(c *gin.Context, err error) {
	s.log.Error("chat: database unavailable", slog.Any("error", err),
		slog.String("method", c.Request.Method), slog.String("path", c.Request.URL.Path))
	c.Header("Retry-After", "5")
	abortMessage(c, http.StatusServiceUnavailable, msgUnavailable)
}

// cors lets browsers on the app's allowed origins call the API (Echo's auth
// request, a web client on another host).
func (s *Service) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	if origin == "" {
		return
	}
	c.Header("Vary", "Origin")
	if !s.app.OriginAllowed(origin) {
		return // the browser refuses the response
	}
	h := c.Writer.Header()
	// No Allow-Credentials: the API authenticates with bearer tokens, never cookies.
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset")
}

// preflight answers a CORS OPTIONS request.
func (s *Service) preflight(c *gin.Context) {
	if origin := c.GetHeader("Origin"); origin != "" && !s.app.OriginAllowed(origin) {
		abortMessage(c, http.StatusForbidden, "Origin not allowed.")
		return
	}
	h := c.Writer.Header()
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, X-Socket-ID, X-Requested-With, X-CSRF-TOKEN")
	h.Set("Access-Control-Max-Age", "600")
	c.AbortWithStatus(http.StatusNoContent)
}

// userOf is the authenticated user; set by authenticate.
func userOf(c *gin.Context) persistence.User {
	u, _ := c.Get(ctxUser)
	return u.(persistence.User)
}

// tokenOf is the request's token; set by authenticate.
func tokenOf(c *gin.Context) persistence.Token {
	t, _ := c.Get(ctxToken)
	return t.(persistence.Token)
}

const (
	ctxUser  = "chat.user"
	ctxToken = "chat.token"
)

// timeJSON is how every time leaves the API: RFC 3339 in UTC with
// microseconds, as Laravel serializes Carbon dates.
func timeJSON(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00") }

func timePtrJSON(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := timeJSON(*t)
	return &s
}

type userJSON struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	CreatedAt string `json:"created_at"`
}

func newUserJSON(u persistence.User) userJSON {
	return userJSON{ID: u.ID, Name: u.Name, Email: u.Email, CreatedAt: timeJSON(u.CreatedAt)}
}

// messageJSON is a message as the REST API returns it and as events carry it.
type messageJSON struct {
	ID             int64   `json:"id"`
	Message        string  `json:"message"`
	ClientMatterID int64   `json:"client_matter_id"`
	SenderID       int64   `json:"sender_id"`
	SenderName     string  `json:"sender_name"`
	CreatedAt      string  `json:"created_at"`
	UpdatedAt      string  `json:"updated_at"`
	EditedAt       *string `json:"edited_at"`  // null unless edited
	DeletedAt      *string `json:"deleted_at"` // null unless deleted (then message is "")
	// Read state as the caller sees it (see viewedBy); in events, which
	// every receiver shares, is_read is false (true once deleted), read_at
	// null and read_by empty.
	ReadAt *string      `json:"read_at"`
	IsRead bool         `json:"is_read"`
	ReadBy []readerJSON `json:"read_by"`
	// ClientMessageID is the sender's idempotency key for the send, or null.
	ClientMessageID *string `json:"client_message_id"`
	// PreviousID is the id of the message before this one in the matter (0
	// for the first), in MessageSent and the send's answer only: a client
	// that showed PreviousID last knows it missed nothing; one that did not
	// fetches what came after what it showed (GET /api/messages?after_id=).
	PreviousID *int64 `json:"previous_id,omitempty"`
}

// newMessageJSON is the message as events carry it: no one's read state.
func newMessageJSON(m persistence.Message) messageJSON {
	return messageJSON{
		ID: m.ID, Message: m.Body, ClientMatterID: m.MatterID,
		SenderID: m.SenderID, SenderName: m.SenderName,
		CreatedAt: timeJSON(m.CreatedAt), UpdatedAt: timeJSON(m.UpdatedAt), EditedAt: timePtrJSON(m.EditedAt),
		DeletedAt: timePtrJSON(m.DeletedAt), IsRead: m.DeletedAt != nil, ReadBy: []readerJSON{},
		ClientMessageID: m.ClientMessageID,
	}
}

// Channel names the chat uses.
func userChannel(id int64) string   { return fmt.Sprintf("private-user.%d", id) }
func matterChannel(id int64) string { return fmt.Sprintf("private-matter.%d", id) }
