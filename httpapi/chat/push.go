package chat

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/actors/unread"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/push"
	"github.com/prometheus/client_golang/prometheus"
)

// PushDeps turn push notifications on (docs/push.md): the providers, what
// the pushes carry and how often they leave.
type PushDeps struct {
	Providers []push.Provider
	// VAPIDPublicKey is Web Push's application server key, which browsers
	// subscribe with (GET /api/push/vapid-public-key); "" with Web Push off.
	VAPIDPublicKey string
	// Window: at most one push per device and matter per window.
	Window time.Duration
	// TextLength is the longest text a push carries; 0: none.
	TextLength int
	// Dispatch tunes the delivery (queue, concurrency, retries); its Log
	// and Removed are set by Mount.
	Dispatch push.Options
	// Registerer gets the push metrics; nil: none.
	Registerer prometheus.Registerer
}

// pushService is the chat's side of push notifications.
type pushService struct {
	dispatcher *push.Dispatcher
	vapid      string
	textLength int
}

// startPush starts the dispatcher and returns the counters' push options:
// they decide, the dispatcher delivers.
func (s *Service) startPush(d Deps) *unread.PushOptions {
	p := d.Push
	o := p.Dispatch
	o.Log, o.Registerer = d.Log, p.Registerer
	// A dead token was removed: the user's counter loads the devices again.
	o.Removed = func(userID int64) { s.counters.PushTargetsChanged(userID) }
	s.push = &pushService{dispatcher: push.NewDispatcher(p.Providers, d.Store, o), vapid: p.VAPIDPublicKey, textLength: p.TextLength}
	d.Node.TrackForeground(d.App.ID)
	appID, node := d.App.ID, d.Node
	return &unread.PushOptions{
		Send:       s.push.dispatcher.Push,
		Targets:    d.Store.PushTargets,
		Foreground: func(userID int64) bool { return node.UserForeground(appID, strconv.FormatInt(userID, 10)) },
		Window:     p.Window,
	}
}

// countAndPush tells each recipient's counter of a new message, with what
// a push of it shows when pushes are on.
func (s *Service) countAndPush(recipients []int64, m persistence.Message) {
	if s.push == nil {
		for _, id := range recipients {
			s.counters.Incr(id, m.MatterID, m.ID)
		}
		return
	}
	info := unread.PushInfo{SenderID: m.SenderID, SenderName: m.SenderName, Text: cutText(m.Body, s.push.textLength)}
	for _, id := range recipients {
		s.counters.IncrPush(id, m.MatterID, m.ID, info)
	}
}

// cutText is text cut to n characters (with an ellipsis), or "" for n 0.
func cutText(text string, n int) string {
	if n <= 0 {
		return ""
	}
	r := []rune(text)
	if len(r) <= n {
		return text
	}
	return string(r[:n]) + "…"
}

// vapidPublicKey is GET /api/push/vapid-public-key → {"public_key"}: the
// applicationServerKey a browser subscribes with; 404 with Web Push off.
func (s *Service) vapidPublicKey(c *gin.Context) {
	if s.push == nil || s.push.vapid == "" {
		abortMessage(c, http.StatusNotFound, "Web Push is off on this server.")
		return
	}
	c.JSON(http.StatusOK, gin.H{"public_key": s.push.vapid})
}
