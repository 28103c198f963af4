package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

const ctxApp = "parley.app"

// pusherAuth resolves the app of /apps/{app_id}/... and checks the request's
// signature; the verified body is kept for the handler.
func (s *Server) pusherAuth(c *gin.Context) {
	app, ok := s.node.App(c.Param("app_id"))
	if !ok {
		abortJSON(c, http.StatusNotFound, "unknown app id "+wsconn.Truncate(c.Param("app_id"), 64))
		return
	}
	limit := int64(app.MaxEventSize)*MaxBatchEvents*2 + 256<<10
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			abortJSON(c, http.StatusRequestEntityTooLarge, "request body is too large")
			return
		}
		abortJSON(c, http.StatusBadRequest, "could not read the request body")
		return
	}
	if msg := verifyRequest(app, c.Request.Method, c.Request.URL.Path, c.Request.URL.Query(), body, time.Now()); msg != "" {
		abortJSON(c, http.StatusUnauthorized, msg)
		return
	}
	c.Set(ctxApp, app)
	c.Set(gin.BodyBytesKey, body)
}

func appOf(c *gin.Context) *config.App { return c.MustGet(ctxApp).(*config.App) }

func bodyOf(c *gin.Context) []byte {
	b, _ := c.Get(gin.BodyBytesKey)
	body, _ := b.([]byte)
	return body
}

func abortJSON(c *gin.Context, status int, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"error": msg})
}

func (s *Server) triggerEvent(c *gin.Context) {
	app := appOf(c)
	ev, aerr := parseTrigger(bodyOf(c), app.MaxEventSize)
	if aerr != nil {
		abortJSON(c, aerr.Status, aerr.Msg)
		return
	}
	// The info is read before publishing: once an event is out, the answer
	// must be 200, or an SDK's retry would publish it twice.
	var channels gin.H
	if len(ev.Info) > 0 {
		// In a cluster each channel's counts are a survey of every node:
		// ask for all channels at once, not one after another.
		attrs := make([]gin.H, len(ev.Channels))
		errs := make([]error, len(ev.Channels))
		var wg sync.WaitGroup
		for i, ch := range ev.Channels {
			wg.Add(1)
			go func() {
				defer wg.Done()
				attrs[i], errs[i] = s.channelAttributes(c, app.ID, ch, ev.Info)
			}()
		}
		wg.Wait()
		channels = gin.H{}
		for i, ch := range ev.Channels {
			if errs[i] != nil {
				unavailable(c, errs[i])
				return
			}
			channels[ch] = attrs[i]
		}
	}
	if err := s.node.Publish(actors.Event{AppID: app.ID, Channels: ev.Channels, Name: ev.Name, Data: ev.Data, SocketID: ev.SocketID}); err != nil {
		unavailable(c, err)
		return
	}
	if channels == nil {
		c.JSON(http.StatusOK, gin.H{})
		return
	}
	c.JSON(http.StatusOK, gin.H{"channels": channels})
}

func (s *Server) triggerBatch(c *gin.Context) {
	app := appOf(c)
	events, aerr := parseBatch(bodyOf(c), app.MaxEventSize)
	if aerr != nil {
		abortJSON(c, aerr.Status, aerr.Msg)
		return
	}
	// Everything that can fail happens before the first event goes out: a
	// batch is published whole or not at all.
	out := make([]gin.H, len(events))
	evs := make([]actors.Event, len(events))
	for i, ev := range events {
		out[i] = gin.H{}
		if len(ev.Info) > 0 {
			attrs, err := s.channelAttributes(c, app.ID, ev.Channels[0], ev.Info)
			if err != nil {
				unavailable(c, err)
				return
			}
			out[i] = attrs
		}
		evs[i] = actors.Event{AppID: app.ID, Channels: ev.Channels, Name: ev.Name, Data: ev.Data, SocketID: ev.SocketID}
	}
	if err := s.node.Publish(evs...); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"batch": out})
}

// unavailable answers 503 for a core that cannot take the request now.
func unavailable(c *gin.Context, err error) {
	c.Header("Retry-After", "1")
	abortJSON(c, http.StatusServiceUnavailable, err.Error())
}

// channelAttributes answers info=user_count,subscription_count.
func (s *Server) channelAttributes(c *gin.Context, appID, channel string, info []string) (gin.H, error) {
	ci, err := s.node.Channel(c.Request.Context(), appID, channel)
	if err != nil {
		return nil, err
	}
	attrs := gin.H{}
	for _, a := range info {
		switch a {
		case "user_count":
			if pusher.IsPresence(channel) {
				attrs["user_count"] = ci.Users
			}
		case "subscription_count":
			attrs["subscription_count"] = ci.Subscriptions
		}
	}
	return attrs, nil
}

func splitInfo(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func (s *Server) listChannels(c *gin.Context) {
	app := appOf(c)
	prefix := c.Query("filter_by_prefix")
	info := splitInfo(c.Query("info"))
	for _, a := range info {
		switch a {
		case "user_count":
			if !strings.HasPrefix(prefix, "presence-") {
				abortJSON(c, http.StatusBadRequest, "info=user_count needs filter_by_prefix=presence-")
				return
			}
		case "subscription_count":
		default:
			abortJSON(c, http.StatusBadRequest, "info attribute "+wsconn.Truncate(a, 40)+" is not supported here (user_count, subscription_count)")
			return
		}
	}
	list, err := s.node.Channels(c.Request.Context(), app.ID, prefix)
	if err != nil {
		unavailable(c, err)
		return
	}
	markPartial(c, list.Missing)
	channels := gin.H{}
	for _, ci := range list.Channels {
		attrs := gin.H{}
		for _, a := range info {
			if a == "user_count" {
				attrs["user_count"] = ci.Users
			} else {
				attrs["subscription_count"] = ci.Subscriptions
			}
		}
		channels[ci.Name] = attrs
	}
	c.JSON(http.StatusOK, gin.H{"channels": channels})
}

func (s *Server) showChannel(c *gin.Context) {
	app := appOf(c)
	name := c.Param("channel_name")
	if p := pusher.ValidateChannel(name, false); p != "" {
		abortJSON(c, http.StatusBadRequest, "channel "+wsconn.Truncate(name, 64)+": "+p)
		return
	}
	info := splitInfo(c.Query("info"))
	for _, a := range info {
		switch a {
		case "user_count":
			if !pusher.IsPresence(name) {
				abortJSON(c, http.StatusBadRequest, "info=user_count is only for presence channels")
				return
			}
		case "subscription_count":
		default:
			abortJSON(c, http.StatusBadRequest, "info attribute "+wsconn.Truncate(a, 40)+" is not supported (user_count, subscription_count)")
			return
		}
	}
	ci, err := s.node.Channel(c.Request.Context(), app.ID, name)
	if err != nil {
		unavailable(c, err)
		return
	}
	markPartial(c, ci.Missing)
	out := gin.H{"occupied": ci.Occupied}
	for _, a := range info {
		if a == "user_count" {
			out["user_count"] = ci.Users
		} else {
			out["subscription_count"] = ci.Subscriptions
		}
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) channelUsers(c *gin.Context) {
	app := appOf(c)
	name := c.Param("channel_name")
	if p := pusher.ValidateChannel(name, false); p != "" {
		abortJSON(c, http.StatusBadRequest, "channel "+wsconn.Truncate(name, 64)+": "+p)
		return
	}
	if !pusher.IsPresence(name) {
		abortJSON(c, http.StatusBadRequest, "users can only be listed for presence channels")
		return
	}
	ids, err := s.node.PresenceUsers(c.Request.Context(), app.ID, name)
	if err != nil {
		unavailable(c, err)
		return
	}
	users := make([]gin.H, len(ids))
	for i, id := range ids {
		users[i] = gin.H{"id": id}
	}
	c.JSON(http.StatusOK, gin.H{"users": users})
}

func (s *Server) terminateUser(c *gin.Context) {
	app := appOf(c)
	uid := c.Param("user_id")
	if uid == "" || len(uid) > 128 {
		abortJSON(c, http.StatusBadRequest, "user id must be 1-128 characters")
		return
	}
	s.node.TerminateUser(app.ID, uid)
	c.JSON(http.StatusOK, gin.H{})
}

// markPartial flags an answer that misses the nodes of the cluster that did
// not answer in time; the body keeps Pusher's shape.
func markPartial(c *gin.Context, missing int) {
	if missing > 0 {
		c.Header("X-Parley-Partial", strconv.Itoa(missing)+" node(s) did not answer")
	}
}
