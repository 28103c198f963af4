package actors

import (
	"encoding/json"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/wsconn"
)

// Messages between the node's actors. They stay inside one process; messages
// that cross nodes will be protobuf (see DESIGN.md, Clustering).

// subscriber is one socket's membership of one channel; the channel actor
// owns it after subscribeMsg.
type subscriber struct {
	socketID string
	conn     *wsconn.Conn
	owner    *actor.PID      // the socket's ConnectionActor
	userID   string          // presence channels only
	userInfo json.RawMessage // presence channels only; nil means none
}

// subscribeMsg asks the router to add a socket to a channel.
type subscribeMsg struct {
	key     string // appID + "\x00" + channel
	appID   string
	channel string
	sub     *subscriber
	silent  bool // no subscription_succeeded frame (server-side subscriptions)
}

// unsubscribeMsg removes a socket from a channel.
type unsubscribeMsg struct {
	key      string
	socketID string
}

// publishMsg fans a pre-encoded frame out to a channel's sockets.
type publishMsg struct {
	key     string
	channel string
	frame   *wsconn.Prepared
	exclude string // socket id that must not receive it ("" = none)
}

// clientEventMsg is a client-* event from a subscriber; it is never echoed.
type clientEventMsg struct {
	key    string
	sender string // socket id
	frame  *wsconn.Prepared
}

// vacatedMsg tells the router a channel has nobody left. processed counts the
// subscribes (and cache publishes) the channel has handled, so the router
// only stops it when none is still on its way.
type vacatedMsg struct {
	key       string
	pid       *actor.PID
	processed uint64
}

// subscribeFailedMsg tells a ConnectionActor its subscription was refused by
// the channel (presence full), so it forgets the channel.
type subscribeFailedMsg struct{ channel string }

// Requests answered with ctx.Respond.
type (
	listChannelsMsg struct {
		appID  string
		prefix string
	}
	channelInfoMsg   struct{ key string }
	presenceUsersMsg struct{ key string }
	terminateMsg     struct{ key string }
)

// ChannelInfo describes one occupied channel.
type ChannelInfo struct {
	Name          string
	Occupied      bool
	Subscriptions int
	Users         int // presence channels only
}

// connInitMsg gives a new ConnectionActor its socket; it is always the
// actor's first message.
type connInitMsg struct {
	node     *Node
	app      *appRuntime
	conn     *wsconn.Conn
	socketID string
}

// Messages to a ConnectionActor from its socket's read loop.
type (
	inboundMsg  struct{ data []byte }
	activityMsg struct{}
	goneMsg     struct{}
	idleTickMsg struct{} // from the socket's idle timer
)

var (
	activity = &activityMsg{}
	gone     = &goneMsg{}
	idleTick = &idleTickMsg{}
)

func channelKey(appID, channel string) string { return appID + "\x00" + channel }
