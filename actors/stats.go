package actors

import (
	"context"
	"log/slog"
	"strings"

	"github.com/parley-chat/parley/metrics"
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// SetMetrics makes the node count its sockets in m; call it before the node
// accepts sockets. The node is also m's source of gauges.
func (n *Node) SetMetrics(m *metrics.Metrics) {
	if m == nil {
		return
	}
	n.metrics = m
	for _, rt := range n.byID {
		rt.meter = m.App(rt.ID)
	}
	m.Watch(n)
}

// AppStats implements metrics.Source: sockets, occupied channels and
// subscriptions of every app on this node ("#" channels, the sign-in
// channels, are not counted as channels).
func (n *Node) AppStats() map[string]metrics.AppStats {
	out := make(map[string]metrics.AppStats, len(n.byID))
	for id, rt := range n.byID {
		out[id] = metrics.AppStats{Connections: int(rt.conns.Load())}
	}
	for i := range n.reg.shards {
		s := &n.reg.shards[i]
		s.mu.RLock()
		for _, e := range s.entries {
			subs := int(e.stats.subscriptions.Load())
			st, ok := out[e.appID]
			if !ok || subs == 0 {
				continue
			}
			st.Subscriptions += subs
			if !strings.HasPrefix(e.name, "#") {
				st.Channels++
			}
			out[e.appID] = st
		}
		s.mu.RUnlock()
	}
	return out
}

// PublishBacklog implements metrics.Source.
func (n *Node) PublishBacklog() int64 { return n.backlog.Load() }

// ClusterForwards implements metrics.Source.
func (n *Node) ClusterForwards() (resent, lost int64) {
	if n.members == nil {
		return 0, 0
	}
	return n.members.Forwards()
}

// PublishesRefused implements metrics.Source.
func (n *Node) PublishesRefused() (busy, noQuorum int64) {
	return n.refusedBusy.Load(), n.refusedNoQuorum.Load()
}

// ClusterState implements metrics.Source.
func (n *Node) ClusterState() (clustered, serving bool, members, counted int) {
	st, ok := n.Cluster()
	return ok, st.Up, st.Live, st.Counted
}

// refused logs a socket refused at the door and counts its close under its
// app ("" when the key is unknown).
func (n *Node) refused(conn *wsconn.Conn, rt *appRuntime, key, ip string, code pusher.Code, msg string) {
	level, app := slog.LevelWarn, ""
	if code == pusher.CodeServerRestart {
		level = slog.LevelInfo // draining: expected
	}
	if rt != nil {
		app = rt.ID
		if rt.meter != nil {
			conn.SetMeter(rt.meter)
		}
	} else if n.metrics != nil {
		conn.SetMeter(n.metrics.App(""))
	}
	n.log.Log(context.Background(), level, "socket refused", "code", int(code), "reason", msg, "app", app,
		"key", wsconn.Truncate(key, 64), "ip", ip)
}
