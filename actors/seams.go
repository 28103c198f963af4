package actors

import (
	"context"
	"encoding/json"
)

// The seams between a node and the rest of its cluster. A single node uses
// the local implementations below (nothing to tell anyone); a cluster node
// uses package cluster's, given with Attach before the node serves.

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
	// LocalPresence reports that userID's first socket on this node joined
	// the presence channel key (ChannelKey) or its last one left.
	LocalPresence(key, userID string, info json.RawMessage, joined bool)
	// SignedIn reports the same for a user's signed-in sockets (watchlists).
	SignedIn(appID, userID string, online bool)
	// Foreground reports the same for a chat user's foreground sockets
	// (push notifications; see foreground.go).
	Foreground(appID, userID string, on bool)
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

// WebhookRoutes carries webhook states to the node that sends a channel's
// webhooks (its owner among the live members; see hooks.go).
type WebhookRoutes interface {
	// Members is this node's process and the other live members' processes.
	Members() (self string, others []string)
	// SendState reports this node's state of one channel to its owner.
	SendState(owner string, st WebhookState)
	// SendStates reports every state this node holds of the channels owner
	// owns, at once.
	SendStates(owner string, sts WebhookStates)
}

// WebhookState is what one node (a process) holds of a channel.
type WebhookState struct {
	Node          string
	AppID         string
	Channel       string
	Subscriptions int
	Users         []string // presence: users with a socket on that node
	Sync          bool     // a hand-over to a new owner: no events for the difference
}

// WebhookStates is every state a node holds of the channels one owner owns.
type WebhookStates struct {
	Node    string
	States  []WebhookState
	Sync    bool     // no events for the differences
	Members []string // the processes the sender sees live, itself included, sorted
}

// Membership is what the node asks of its cluster.
type Membership interface {
	// Status describes the cluster as this node sees it.
	Status() ClusterStatus
	// Forwards counts forwards sent again to a node that missed them, and
	// those this node missed and gave up.
	Forwards() (resent, lost int64)
	// Leave tells the other members this node is stopping.
	Leave()
	// Stop leaves the membership and stops the actor system.
	Stop()
}

// Seams are a cluster implementation, for Attach.
type Seams struct {
	Broker     Broker
	Presence   Presence
	Directory  ChannelDirectory
	Census     Census
	Webhooks   WebhookRoutes
	Membership Membership
}

// Attach makes the node a member of a cluster: its seams are s from now on,
// and it does not serve until the membership finds a quorum (SetServing).
// Call it once, before the node serves.
func (n *Node) Attach(s Seams) {
	n.broker, n.cluster, n.dir, n.remote, n.routes, n.members = s.Broker, s.Presence, s.Directory, s.Census, s.Webhooks, s.Membership
	n.cut.Store(true)
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
func (localNode) LocalPresence(string, string, json.RawMessage, bool) {}
func (localNode) SignedIn(string, string, bool)                       {}
func (localNode) Foreground(string, string, bool)                     {}
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

// ClusterStatus is what /up and the metrics tell of a node's cluster.
type ClusterStatus struct {
	Member  string // this node's member id
	Up      bool   // it has a quorum and serves
	Live    int    // members it hears, itself included
	Counted int    // members counted for the quorum
	Missing int    // known addresses with no live member
}

// Membership is the node's cluster membership (nil on a single node).
func (n *Node) Membership() Membership { return n.members }

// Cluster describes this node's cluster; ok is false on a single node.
func (n *Node) Cluster() (st ClusterStatus, ok bool) {
	if n.members == nil {
		return ClusterStatus{}, false
	}
	return n.members.Status(), true
}

// LeaveCluster tells the other members this node is stopping, so they drop
// its presence at once and stop counting it. Sockets and HTTP requests may
// still be served meanwhile; publishes are still forwarded.
func (n *Node) LeaveCluster() {
	if n.members != nil {
		n.members.Leave()
	}
}
