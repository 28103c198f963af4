package actors

import (
	"context"
	"encoding/json"
)

// The seams between a node and the rest of its cluster. A single node uses
// the local implementations below (nothing to tell anyone); a cluster node
// uses clusterNode (cluster.go), which carries them over protoactor's remote.

// Broker carries publishes to the other nodes: one message per other node
// per publish, never one per remote subscriber.
type Broker interface {
	// Publish forwards an event published on this node.
	Publish(ev Event)
	// ClientEvent forwards a client event sent by a socket of this node.
	ClientEvent(appID, channel, name, data, userID, sender string)
	// Terminate asks every other node to disconnect the user's sockets.
	Terminate(appID, userID string)
}

// Presence tells the other nodes who is present here. Channel actors report
// a user's 0↔1 transitions of sockets on this node; every node merges what
// the others report, so member events fire on cluster-wide transitions only.
type Presence interface {
	// localPresence reports that userID's first socket on this node joined
	// the presence channel key (joined) or its last one left.
	localPresence(key, userID string, info json.RawMessage, joined bool)
	// signedIn reports the same for a user's signed-in sockets (watchlists).
	signedIn(appID, userID string, online bool)
}

// ChannelDirectory answers the HTTP API's channel queries. In a cluster it
// asks every node and merges the answers under a deadline (a survey).
type ChannelDirectory interface {
	Channels(ctx context.Context, appID, prefix string) (ChannelList, error)
	Channel(ctx context.Context, appID, name string) (ChannelInfo, error)
	Users(ctx context.Context, appID, name string) ([]string, error)
}

// Census counts what the other nodes hold, for cluster-wide limits.
type Census interface {
	// Connections is the app's sockets on other nodes, as last reported
	// (at most about a second old).
	Connections(appID string) int64
}

// ChannelList is the answer to a channel listing.
type ChannelList struct {
	Channels []ChannelInfo
	// Missing is the number of nodes that did not answer in time; the list
	// is then partial.
	Missing int
}

// localNode is the seams of a node alone: nobody else to tell or count.
type localNode struct{}

func (localNode) Publish(Event)                                       {}
func (localNode) ClientEvent(_, _, _, _, _, _ string)                 {}
func (localNode) Terminate(_, _ string)                               {}
func (localNode) localPresence(string, string, json.RawMessage, bool) {}
func (localNode) signedIn(string, string, bool)                       {}
func (localNode) Connections(string) int64                            { return 0 }

// localDirectory answers from this node's registry.
type localDirectory struct{ n *Node }

func (d localDirectory) Channels(_ context.Context, appID, prefix string) (ChannelList, error) {
	return ChannelList{Channels: d.n.reg.localChannels(appID, prefix)}, nil
}

func (d localDirectory) Channel(_ context.Context, appID, name string) (ChannelInfo, error) {
	return d.n.reg.localChannel(channelKey(appID, name), name), nil
}

func (d localDirectory) Users(_ context.Context, appID, name string) ([]string, error) {
	return d.n.localUsers(appID, name)
}
