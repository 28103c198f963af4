package actors

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// Client event limits (Pusher's).
const (
	clientEventsPerSecond = 10
)

// pongFrame answers every pusher:ping; frames are shared read-only.
var pongFrame = wsconn.NewPrepared(pusher.EncodeEvent("pusher:pong", "", "{}", ""))

// connActor owns one socket's protocol state. Every field is only touched
// inside Receive; the socket's read loop talks to it through the mailbox.
type connActor struct {
	node     *Node
	app      *appRuntime
	conn     Socket
	socketID string

	subs      subscriptions // the channels this socket joined
	userID    string        // set by a successful pusher:signin
	lastHeard int64         // when the client last sent anything (monoNow)
	rlStart   int64         // client event rate window start (monoNow)
	pid       *actor.PID    // this actor, for the node's idle wheel
	wheelDue  int64         // the idle wheel's tick for the next check; 0 = none; guarded by the wheel
	wheelPos  int32         // position in the wheel's slot; guarded by the wheel
	rlEvents  int16         // client events in the rate window (it stops counting past the limit)
	pinged    bool          // a pusher:ping is waiting for an answer
}

func (a *connActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *connInitMsg:
		a.node, a.app, a.conn, a.socketID = m.node, m.app, m.conn, m.socketID
		a.conn.SendNow(established(a.socketID, a.app.ActivityTimeout))
		a.lastHeard = monoNow()
		a.pid = ctx.Self()
		a.node.idle.schedule(a, a.activityTimeout())
	case *inboundMsg:
		a.alive()
		a.handle(ctx, m.data)
		a.conn.Done(len(m.data)) // the socket's reader pauses while too much is unhandled
	case *activityMsg:
		a.alive()
	case *idleTickMsg:
		a.checkIdle()
	case *subscribeFailedMsg:
		a.subs.remove(m.channel)
		a.node.fg.unsubscribed(a.app.ID, a.socketID, m.channel)
	case *goneMsg:
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		// After the socket ended, or stopped by its supervisor after a
		// panic: then the socket is still open and must go too (4200: the
		// client reconnects and starts clean).
		closeSocket(a.conn, pusher.CodeServerRestart, "Internal error, reconnect")
		a.cleanup(ctx)
	}
}

// established is the socket's pusher:connection_established, encoded in
// its frame's buffer.
func established(socketID string, activityTimeout int) *wsconn.Prepared {
	data := `{"socket_id":"` + socketID + `","activity_timeout":` + strconv.Itoa(activityTimeout) + `}`
	return wsconn.NewPreparedWith(64+len(data)*11/10, func(b []byte) []byte {
		return pusher.AppendEvent(b, "pusher:connection_established", "", data, "")
	})
}

// cleanup leaves every channel and gives the socket's slot back.
func (a *connActor) cleanup(ctx actor.Context) {
	if a.pid != nil {
		a.node.idle.cancel(a)
	}
	counted := false
	for _, sub := range a.subs {
		a.node.reg.sendTo(a.app.ID, sub.channel, &unsubscribeMsg{socketID: a.socketID})
		counted = counted || strings.HasPrefix(sub.channel, UserChannelPrefix)
	}
	if counted {
		a.node.fg.unsubscribed(a.app.ID, a.socketID, "")
	}
	a.subs = nil
	if a.userID != "" {
		ctx.Send(a.node.watch, &signedOutMsg{appID: a.app.ID, userID: a.userID, socketID: a.socketID})
	}
	a.node.release(a.app, a.conn)
}

func (a *connActor) activityTimeout() time.Duration {
	return time.Duration(a.app.ActivityTimeout) * time.Second
}

// monoNow is the time on the monotonic clock, in nanoseconds since the
// process started: 8 bytes per timestamp a ConnectionActor keeps instead
// of a time.Time's 24.
func monoNow() int64 { return int64(time.Since(processStart)) }

var processStart = time.Now()

// alive records that the client spoke: any frame answers a ping.
func (a *connActor) alive() {
	a.lastHeard = monoNow()
	a.pinged = false
}

// checkIdle pings a socket silent for activity_timeout and closes one that
// does not answer within the pong timeout (4201). Woken by the node's idle
// wheel, not SetReceiveTimeout: protoactor's receive-timeout timer writes
// actor state from the timer goroutine.
func (a *connActor) checkIdle() {
	quiet := time.Duration(monoNow() - a.lastHeard)
	switch {
	case a.pinged && quiet >= a.activityTimeout()+a.node.cfg.PongTimeout:
		closeSocket(a.conn, pusher.CodePongTimeout, pusher.CodePongTimeout.Message())
	case a.pinged:
		a.node.idle.schedule(a, a.activityTimeout()+a.node.cfg.PongTimeout-quiet)
	case quiet >= a.activityTimeout():
		a.pinged = true
		sendEvent(a.conn, "pusher:ping", "", "{}")
		a.lastHeard = monoNow() - int64(a.activityTimeout()) // the pong clock starts now
		a.node.idle.schedule(a, a.node.cfg.PongTimeout)
	default:
		a.node.idle.schedule(a, a.activityTimeout()-quiet)
	}
}

func (a *connActor) fail(code pusher.Code, format string, args ...any) {
	sendError(a.conn, pusher.Errorf(code, format, args...))
}

func (a *connActor) handle(ctx actor.Context, raw []byte) {
	f, err := pusher.DecodeMessage(raw)
	if err != nil {
		a.fail(pusher.CodeInvalidMessage, "%v", err)
		return
	}
	switch {
	case f.Event == "pusher:ping":
		a.conn.SendNow(pongFrame)
	case f.Event == "pusher:pong":
		// alive() has recorded it
	case f.Event == "pusher:subscribe":
		a.subscribe(ctx, f)
	case f.Event == "pusher:unsubscribe":
		var d struct {
			Channel string `json:"channel"`
		}
		if err := pusher.DecodeData(f.Data, &d); err != nil {
			a.fail(pusher.CodeInvalidMessage, "pusher:unsubscribe: %v", err)
			return
		}
		if _, ok := a.subs.get(d.Channel); ok {
			a.subs.remove(d.Channel)
			a.node.reg.sendTo(a.app.ID, d.Channel, &unsubscribeMsg{socketID: a.socketID})
			a.node.fg.unsubscribed(a.app.ID, a.socketID, d.Channel)
		}
	case f.Event == "pusher:signin":
		a.signin(ctx, f)
	case strings.HasPrefix(f.Event, "client-"):
		a.clientEvent(ctx, f)
	default:
		a.fail(pusher.CodeInvalidMessage, "unknown event %q: clients may send pusher:subscribe, pusher:unsubscribe, pusher:ping, pusher:pong, pusher:signin and client-* events", wsconn.Truncate(f.Event, 64))
	}
}

// subscriptionError is what pusher-js surfaces on the channel as
// pusher:subscription_error (Echo's .error()).
func (a *connActor) subscriptionError(channel, typ, msg string, status int) {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Error  string `json:"error"`
		Status int    `json:"status"`
	}{typ, msg, status})
	if typ == "AuthError" {
		a.node.log.Warn("subscription refused", "app", a.app.ID, "socket", a.socketID, "channel", wsconn.Truncate(channel, 200), "status", status, "reason", msg)
	}
	sendEvent(a.conn, "pusher:subscription_error", channel, string(b))
}

func (a *connActor) subscribe(ctx actor.Context, f pusher.Message) {
	var d pusher.SubscribeData
	if err := pusher.DecodeData(f.Data, &d); err != nil {
		a.fail(pusher.CodeInvalidMessage, "pusher:subscribe: %v", err)
		return
	}
	if problem := pusher.ValidateChannel(d.Channel, true); problem != "" {
		a.fail(pusher.CodeSubscriptionRefused, "cannot subscribe to %q: %s", wsconn.Truncate(d.Channel, 64), problem)
		return
	}
	if _, ok := a.subs.get(d.Channel); !ok && len(a.subs) >= a.app.MaxChannelsPerConnection {
		a.fail(pusher.CodeSubscriptionRefused, "cannot subscribe to %q: this connection is already in %d channels, the limit (unsubscribe from one first)",
			wsconn.Truncate(d.Channel, 64), a.app.MaxChannelsPerConnection)
		return
	}
	sub := &subscriber{socketID: a.socketID, conn: a.conn, owner: ctx.Self()}
	kind, _ := pusher.Classify(d.Channel)
	switch kind {
	case pusher.KindPrivate, pusher.KindEncrypted:
		if !pusher.ValidChannelAuth(d.Auth, a.app.Key, a.app.Secret, a.socketID, d.Channel, "") {
			a.subscriptionError(d.Channel, "AuthError", "Invalid signature: expected "+a.app.Key+":hex(HMAC-SHA256(secret, socket_id:channel))", 401)
			return
		}
	case pusher.KindPresence:
		if !pusher.ValidChannelAuth(d.Auth, a.app.Key, a.app.Secret, a.socketID, d.Channel, d.ChannelData) {
			a.subscriptionError(d.Channel, "AuthError", "Invalid signature: expected "+a.app.Key+":hex(HMAC-SHA256(secret, socket_id:channel:channel_data))", 401)
			return
		}
		uid, info, problem := pusher.ParseChannelData(d.ChannelData)
		if problem != "" {
			a.subscriptionError(d.Channel, "InvalidChannelData", problem, 400)
			return
		}
		sub.userID, sub.userInfo = uid, info
	case pusher.KindServerToUser:
		if a.userID == "" || d.Channel != pusher.ServerToUserPrefix+a.userID {
			a.subscriptionError(d.Channel, "AuthError", "sign in as this user (pusher:signin) before subscribing to "+d.Channel, 403)
			return
		}
	}
	a.subs.set(d.Channel, sub.userID)
	a.node.reg.forwardTo(a.app.ID, d.Channel, &subscribeMsg{sub: sub})
	if kind == pusher.KindPrivate {
		a.node.fg.subscribed(a.app.ID, a.socketID, d.Channel)
	}
}

func (a *connActor) clientEvent(ctx actor.Context, f pusher.Message) {
	if f.Event == AppStateEvent {
		// For the server, not the channel: consumed even when client
		// events are off, but counted against the rate limit.
		_, subscribed := a.subs.get(f.Channel)
		if bg, ok := appState(pusher.DataString(f.Data)); ok && subscribed && a.node.fg.userOf(a.app.ID, f.Channel) != "" {
			if !a.overRate() {
				a.node.fg.setState(a.app.ID, a.socketID, f.Channel, bg)
			}
			return
		}
	}
	if !a.app.ClientEvents {
		a.fail(pusher.CodeClientEventRefused, "client events are disabled for this app")
		return
	}
	kind, _ := pusher.Classify(f.Channel)
	if kind != pusher.KindPrivate && kind != pusher.KindPresence && kind != pusher.KindEncrypted {
		a.fail(pusher.CodeClientEventRefused, "client events are only allowed on private and presence channels, not %q", wsconn.Truncate(f.Channel, 64))
		return
	}
	userID, ok := a.subs.get(f.Channel)
	if !ok {
		a.fail(pusher.CodeClientEventRefused, "subscribe to %q before sending client events on it", wsconn.Truncate(f.Channel, 64))
		return
	}
	if a.overRate() {
		return
	}
	data := pusher.DataString(f.Data)
	if len(data) > a.app.MaxEventSize {
		a.fail(pusher.CodeEventTooLarge, "client event data is %d bytes; the limit is %d", len(data), a.app.MaxEventSize)
		return
	}
	a.node.deliverClientEvent(a.app.ID, f.Channel, f.Event, data, userID, a.socketID, false)
	a.node.broker.ClientEvent(a.app.ID, f.Channel, f.Event, data, userID, a.socketID)
	a.node.hooks.s.ClientEvent(a.app.ID, f.Channel, f.Event, data, a.socketID, userID)
}

// overRate counts a client event against the socket's limit; true (and
// the client told) when it is over.
func (a *connActor) overRate() bool {
	now := monoNow()
	if a.rlEvents == 0 || now-a.rlStart >= int64(time.Second) {
		a.rlStart, a.rlEvents = now, 0
	}
	if a.rlEvents <= clientEventsPerSecond {
		a.rlEvents++
	}
	if a.rlEvents > clientEventsPerSecond {
		a.fail(pusher.CodeClientEventRateLimit, "client event rejected: more than %d client events a second", clientEventsPerSecond)
		return true
	}
	return false
}

func (a *connActor) signin(ctx actor.Context, f pusher.Message) {
	if !a.app.UserAuthentication {
		a.fail(pusher.CodeSigninRefused, "user authentication is disabled for this app")
		return
	}
	var d pusher.SigninData
	if err := pusher.DecodeData(f.Data, &d); err != nil {
		a.fail(pusher.CodeInvalidMessage, "pusher:signin: %v", err)
		return
	}
	if !pusher.ValidAuth(d.Auth, pusher.UserAuth(a.app.Key, a.app.Secret, a.socketID, d.UserData)) {
		closeWithError(a.conn, pusher.Errorf(pusher.CodeUnauthorized, "Invalid signin signature: expected %s:hex(HMAC-SHA256(secret, socket_id::user::user_data))", a.app.Key))
		return
	}
	var ud struct {
		ID        any   `json:"id"`
		Watchlist []any `json:"watchlist"`
	}
	if err := json.Unmarshal([]byte(d.UserData), &ud); err != nil {
		a.fail(pusher.CodeSigninRefused, "user_data is not a JSON object: %v", err)
		return
	}
	id, ok := ud.ID.(string)
	if !ok || id == "" || len(id) > pusher.MaxUserID {
		a.fail(pusher.CodeSigninRefused, "user_data must have a non-empty string \"id\" of at most 128 characters")
		return
	}
	watchlist := make([]string, 0, len(ud.Watchlist))
	for _, w := range ud.Watchlist {
		if ws, ok := w.(string); ok && ws != "" {
			watchlist = append(watchlist, ws)
		}
	}
	if len(watchlist) != len(ud.Watchlist) || len(watchlist) > MaxWatchlist {
		a.fail(pusher.CodeSigninRefused, "user_data.watchlist must be a list of at most %d non-empty string user ids", MaxWatchlist)
		return
	}
	if a.userID != "" && a.userID != id {
		a.fail(pusher.CodeSigninRefused, "this connection is already signed in as another user")
		return
	}
	signedIn := a.userID != id
	if signedIn {
		a.userID = id
		// Subscribe on the server's side too, so SDKs that never send the
		// #server-to-user subscribe still get server-to-user events. The
		// subscribe reaches the channel before the client hears of its
		// success: a server-to-user event published once the client has it
		// is delivered.
		ch := pusher.ServerToUserPrefix + id
		a.subs.set(ch, "")
		sub := &subscriber{socketID: a.socketID, conn: a.conn, owner: ctx.Self()}
		a.node.reg.forwardTo(a.app.ID, ch, &subscribeMsg{sub: sub, silent: true})
	}
	sendEvent(a.conn, "pusher:signin_success", "", `{"user_data":`+string(pusher.AppendString(nil, d.UserData))+`}`)
	if signedIn {
		ctx.Send(a.node.watch, &signedInMsg{appID: a.app.ID, userID: id, socketID: a.socketID, conn: a.conn, watchlist: watchlist})
	}
}

// subscriptions is a socket's channel list: a slice, because sockets join a
// handful of channels and a map costs several times the memory of an idle
// socket.
type subscriptions []subscription

type subscription struct {
	channel string
	userID  string // presence channels only
}

func (s subscriptions) get(channel string) (userID string, ok bool) {
	for _, x := range s {
		if x.channel == channel {
			return x.userID, true
		}
	}
	return "", false
}

func (s *subscriptions) set(channel, userID string) {
	for i := range *s {
		if (*s)[i].channel == channel {
			(*s)[i].userID = userID
			return
		}
	}
	*s = append(*s, subscription{channel, userID})
}

func (s *subscriptions) remove(channel string) {
	for i, x := range *s {
		if x.channel == channel {
			last := len(*s) - 1
			(*s)[i] = (*s)[last]
			(*s)[last] = subscription{}
			*s = (*s)[:last]
			return
		}
	}
}
