package actors

import (
	"sort"
	"strings"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// channelStats are written only by the channel's actor and read by the
// router to answer the HTTP API without a round trip per channel.
type channelStats struct {
	subscriptions atomic.Int64
	users         atomic.Int64
}

type channelEntry struct {
	pid       *actor.PID
	appID     string
	name      string
	stats     *channelStats
	forwarded uint64 // subscribes and cache publishes sent to pid
}

// routerActor is the node's entry point for subscribes and publishes: it owns
// the registry of ChannelActors (spawned on first use, stopped when vacated).
// A cluster adds peer routers behind it; the channel actors do not change.
type routerActor struct {
	channels map[string]*channelEntry // only touched inside Receive
}

func newRouter() actor.Actor { return &routerActor{channels: map[string]*channelEntry{}} }

func (r *routerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *subscribeMsg:
		e := r.entry(ctx, m.key, m.appID, m.channel)
		e.forwarded++
		ctx.Send(e.pid, m)
	case *unsubscribeMsg:
		if e := r.channels[m.key]; e != nil {
			ctx.Send(e.pid, m)
		}
	case *publishMsg:
		e := r.channels[m.key]
		if _, cache := classify(m.channel); cache {
			if e == nil {
				appID, _, _ := strings.Cut(m.key, "\x00")
				e = r.entry(ctx, m.key, appID, m.channel)
			}
			e.forwarded++
		}
		if e != nil {
			ctx.Send(e.pid, m)
		}
	case *clientEventMsg:
		if e := r.channels[m.key]; e != nil {
			ctx.Send(e.pid, m)
		}
	case *vacatedMsg:
		if e := r.channels[m.key]; e != nil && e.pid.Equal(m.pid) && e.forwarded == m.processed {
			delete(r.channels, m.key)
			ctx.Poison(e.pid)
		}
	case *listChannelsMsg:
		var out []ChannelInfo
		for _, e := range r.channels {
			if e.appID != m.appID || !strings.HasPrefix(e.name, m.prefix) || strings.HasPrefix(e.name, "#") {
				continue
			}
			if info := e.info(); info.Occupied {
				out = append(out, info)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		ctx.Respond(out)
	case *channelInfoMsg:
		if e := r.channels[m.key]; e != nil {
			ctx.Respond(e.info())
		} else {
			ctx.Respond(ChannelInfo{})
		}
	case *presenceUsersMsg:
		if e := r.channels[m.key]; e != nil {
			ctx.Forward(e.pid)
		} else {
			ctx.Respond([]string(nil))
		}
	case *terminateMsg:
		if e := r.channels[m.key]; e != nil {
			ctx.Send(e.pid, m)
		}
	}
}

func (r *routerActor) entry(ctx actor.Context, key, appID, name string) *channelEntry {
	if e := r.channels[key]; e != nil {
		return e
	}
	e := &channelEntry{appID: appID, name: name, stats: &channelStats{}}
	router := ctx.Self()
	e.pid = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return newChannel(key, name, router, e.stats)
	}))
	r.channels[key] = e
	return e
}

func (e *channelEntry) info() ChannelInfo {
	subs := int(e.stats.subscriptions.Load())
	return ChannelInfo{Name: e.name, Occupied: subs > 0, Subscriptions: subs, Users: int(e.stats.users.Load())}
}
