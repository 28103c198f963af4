package actors

import (
	"encoding/json"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// Messages between the node's actors. They stay inside one process; messages
// that cross nodes are protobuf (package cluster/clusterpb).

// subscriber is one socket's membership of one channel; the channel actor
// owns it after subscribeMsg.
type subscriber struct {
	socketID string
	conn     Socket
	owner    *actor.PID      // the socket's ConnectionActor
	userID   string          // presence channels only
	userInfo json.RawMessage // presence channels only; nil means none
}

// subscribeMsg adds a socket to a channel.
type subscribeMsg struct {
	sub    *subscriber
	silent bool // no subscription_succeeded frame (server-side subscriptions)
}

// unsubscribeMsg removes a socket from a channel.
type unsubscribeMsg struct{ socketID string }

// publishMsg fans a pre-encoded frame out to a channel's sockets.
type publishMsg struct {
	frame   *wsconn.Prepared
	exclude string // socket id that must not receive it ("" = none)
	counted bool   // sent through registry.forward (cache channels)
}

// clientEventMsg is a client-* event; it is never echoed to its sender.
type clientEventMsg struct {
	sender string // socket id
	frame  *wsconn.Prepared
	remote bool // sent by a socket of another node
}

// remotePresenceMsg is another node's news that a user's first socket there
// joined a presence channel, or its last one left.
type remotePresenceMsg struct {
	node   string
	userID string
	info   json.RawMessage
	joined bool
}

// nodeGoneMsg tells a channel another node left the cluster.
type nodeGoneMsg struct{ node string }

// nodeStateMsg gives a presence channel everything another node reports for
// it (from that node's snapshot); users absent from it have left.
type nodeStateMsg struct {
	node  string
	users map[string]json.RawMessage // nil: none
}

// nodeOnlineMsg gives the watchlist every user another node has signed in.
type nodeOnlineMsg struct {
	node   string
	online map[string]bool // appID\x00userID
}

// subscribeFailedMsg tells a ConnectionActor its subscription was refused by
// the channel (presence full), so it forgets the channel.
type subscribeFailedMsg struct{ channel string }

// Requests answered with ctx.Respond.
type (
	presenceUsersMsg struct{}
	terminateMsg     struct{}
)

// ChannelInfo describes one occupied channel.
type ChannelInfo struct {
	Name          string
	Occupied      bool
	Subscriptions int
	Users         int // presence channels only
	Missing       int // cluster nodes that did not answer; the counts may be low
}

// connInitMsg gives a new ConnectionActor its socket; it is always the
// actor's first message.
type connInitMsg struct {
	node     *Node
	app      *appRuntime
	conn     Socket
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

// appendChannelKey appends channelKey(appID, channel) to dst.
func appendChannelKey(dst []byte, appID, channel string) []byte {
	return append(append(append(dst, appID...), 0), channel...)
}

// closeSubscribersMsg closes every subscriber of a channel with code: events
// meant for them were lost (a cluster gap that cannot be filled).
type closeSubscribersMsg struct {
	code pusher.Code
	msg  string
}
