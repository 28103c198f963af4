package actors

import (
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/pusher"
)

// What a cluster implementation (package cluster) may do to this node:
// deliver what other nodes publish to its sockets, mirror their presence and
// signed-in users, answer their queries, report its sockets, and stop
// serving when it has no quorum. Another node is named by its process id,
// which outlives the node's incarnations in the cluster.

// System is the node's actor system.
func (n *Node) System() *actor.ActorSystem { return n.system }

// Log is the node's logger.
func (n *Node) Log() *slog.Logger { return n.log }

// Config is the node's configuration.
func (n *Node) Config() *config.Config { return n.cfg }

// DeliverLocal fans out an event published on another node to this node's
// sockets.
func (n *Node) DeliverLocal(ev Event) { n.deliver(ev) }

// DeliverClientEventLocal fans out a client event sent on another node to
// this node's sockets.
func (n *Node) DeliverClientEventLocal(appID, channel, name, data, userID, sender string) {
	n.deliverClientEvent(appID, channel, name, data, userID, sender, true)
}

// TerminateLocal disconnects the user's sockets on this node.
func (n *Node) TerminateLocal(appID, userID string) { n.terminateLocal(appID, userID) }

// MirrorMember applies another process's report that userID's first socket
// there joined the presence channel (joined) or its last one left.
func (n *Node) MirrorMember(process, appID, channel, userID string, info json.RawMessage, joined bool) {
	msg := &remotePresenceMsg{node: process, userID: userID, info: info, joined: joined}
	key := channelKey(appID, channel)
	if joined {
		n.reg.forward(key, appID, channel, msg)
	} else {
		n.reg.forwardIfPresent(key, msg)
	}
}

// MirrorMembers makes what this node mirrors of another process's presence
// exactly members (channel key, see ChannelKey, → user id → user_info):
// every presence channel forgets that process's members not listed.
func (n *Node) MirrorMembers(process string, members map[string]map[string]json.RawMessage) {
	n.reg.all(func(key string, pid *actor.PID) {
		if _, channel, _ := strings.Cut(key, "\x00"); pusher.IsPresence(channel) {
			n.system.Root.Send(pid, &nodeStateMsg{node: process, users: members[key]})
		}
	})
	for key, users := range members {
		appID, channel, _ := strings.Cut(key, "\x00")
		for uid, info := range users {
			n.reg.forward(key, appID, channel, &remotePresenceMsg{node: process, userID: uid, info: info, joined: true})
		}
	}
}

// MirrorOnline applies another process's report that userID signed in there
// on a first socket (online) or signed out of its last one.
func (n *Node) MirrorOnline(process, appID, userID string, online bool) {
	n.system.Root.Send(n.watch, &remoteOnlineMsg{node: process, key: channelKey(appID, userID), userID: userID, online: online})
}

// MirrorOnlineAll makes the users signed in on another process exactly
// online (keys: ChannelKey(appID, userID)).
func (n *Node) MirrorOnlineAll(process string, online map[string]bool) {
	n.system.Root.Send(n.watch, &nodeOnlineMsg{node: process, online: online})
}

// ForgetProcess drops what this node mirrors of another process: its
// presence members (member_removed where they were the last) and its
// signed-in users.
func (n *Node) ForgetProcess(process string) {
	gone := &nodeGoneMsg{node: process}
	n.reg.all(func(key string, pid *actor.PID) {
		if _, channel, _ := strings.Cut(key, "\x00"); pusher.IsPresence(channel) {
			n.system.Root.Send(pid, gone)
		}
	})
	n.system.Root.Send(n.watch, gone)
	n.fg.forget(process)
}

// ChannelKey is how the node keys an app's channel (or user).
func ChannelKey(appID, name string) string { return channelKey(appID, name) }

// LocalChannels lists this node's occupied channels of an app whose names
// start with prefix.
func (n *Node) LocalChannels(appID, prefix string) []ChannelInfo {
	return n.reg.localChannels(appID, prefix)
}

// LocalChannel describes one channel as this node holds it.
func (n *Node) LocalChannel(appID, name string) ChannelInfo {
	return n.reg.localChannel(channelKey(appID, name), name)
}

// LocalUsers lists a presence channel's members as this node knows them
// (every node mirrors every presence channel's members).
func (n *Node) LocalUsers(appID, name string) ([]string, error) { return n.localUsers(appID, name) }

// SocketsByApp is this node's sockets per app id.
func (n *Node) SocketsByApp() map[string]int64 {
	out := make(map[string]int64, len(n.byID))
	for id, rt := range n.byID {
		out[id] = rt.conns.Load()
	}
	return out
}

// SetServing is the cluster membership's decision: serve (a quorum) or not
// (see setServing).
func (n *Node) SetServing(serving, closeSockets bool) { n.setServing(serving, closeSockets) }

// CloseSubscribed closes every socket subscribed to a channel here with code
// (events for them were lost); it returns how many channels were told.
func (n *Node) CloseSubscribed(code pusher.Code, msg string) int { return n.closeSubscribed(code, msg) }
