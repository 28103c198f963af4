package actors

import (
	"hash/maphash"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/internal/protoactor"
)

// registryShards splits the channel registry so that subscribes, publishes
// and queries on different channels never wait for each other.
const registryShards = 64

// channelStats are written only by the channel's actor and read by queries
// without a round trip to it.
type channelStats struct {
	subscriptions atomic.Int64 // local sockets
	users         atomic.Int64 // presence: distinct users, cluster-wide
}

type channelEntry struct {
	pid   *actor.PID    // set at construction
	appID string        // set at construction
	name  string        // set at construction
	stats *channelStats // set at construction
	// forwarded counts the subscribes, presence updates and cache publishes
	// sent to pid (guarded by the shard's mu); the channel may only stop
	// when it has processed all of them.
	forwarded uint64
}

// registryShard is one slice of the registry.
type registryShard struct {
	mu      sync.RWMutex
	entries map[string]*channelEntry // guarded by mu
	peak    int                      // guarded by mu; the largest len(entries) since the map was made
}

// registry maps channel keys to their ChannelActors. It replaces a router
// actor: a single mailbox for every subscribe, publish and query was a
// bottleneck (a GET /channels sorted every channel inside it and stalled
// publishing meanwhile) and a single point of failure. Channel actors are
// spawned on first use and stop themselves when vacated (vacate).
type registry struct {
	node   *Node // set at construction
	seed   maphash.Seed
	shards [registryShards]registryShard

	live        atomic.Int64 // channel actors registered
	peak        atomic.Int64 // the most live since the last compaction
	compacting  atomic.Bool
	compactions atomic.Int64
}

func newRegistry(n *Node) *registry {
	r := &registry{node: n, seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].entries = map[string]*channelEntry{}
	}
	return r
}

func (r *registry) shard(key string) *registryShard {
	return &r.shards[maphash.String(r.seed, key)%registryShards]
}

// lookup returns the channel's actor, or nil when it has none.
func (r *registry) lookup(key string) *actor.PID {
	s := r.shard(key)
	s.mu.RLock()
	e := s.entries[key]
	s.mu.RUnlock()
	if e == nil {
		return nil
	}
	return e.pid
}

// forward sends msg to the channel's actor, spawning it if needed, and
// counts it so the channel cannot stop while msg is on its way.
func (r *registry) forward(key, appID, name string, msg any) {
	s := r.shard(key)
	s.mu.Lock()
	e := s.entries[key]
	if e == nil {
		e = r.spawnLocked(s, key, appID, name)
	}
	e.forwarded++
	s.mu.Unlock()
	r.node.system.Root.Send(e.pid, msg)
}

// forwardTo is forward to the channel name of app appID. The channel's key
// is made on the stack, and as a string only for a new channel: a socket's
// subscribe allocates no key.
func (r *registry) forwardTo(appID, name string, msg any) {
	var buf [keyBuf]byte
	key := appendChannelKey(buf[:0], appID, name)
	s := &r.shards[maphash.Bytes(r.seed, key)%registryShards]
	s.mu.Lock()
	e := s.entries[string(key)]
	if e == nil {
		e = r.spawnLocked(s, string(key), appID, name)
	}
	e.forwarded++
	s.mu.Unlock()
	r.node.system.Root.Send(e.pid, msg)
}

// keyBuf is room for the key of a channel whose name and app id fit the
// protocol's limits (200 bytes of name); longer keys grow on the heap.
const keyBuf = 256

// spawnLocked starts the channel's actor and registers it; the caller holds
// s.mu and found no entry for key.
func (r *registry) spawnLocked(s *registryShard, key, appID, name string) *channelEntry {
	e := &channelEntry{appID: appID, name: name, stats: &channelStats{}}
	e.pid = r.node.system.Root.Spawn(r.node.channelProps(key, name, e.stats))
	s.entries[key] = e
	if len(s.entries) > s.peak {
		s.peak = len(s.entries)
	}
	if l := r.live.Add(1); l > r.peak.Load() {
		r.peak.Store(l)
	}
	return e
}

// forwardIfPresent is forward without the spawn: msg is dropped when the
// channel has no actor.
func (r *registry) forwardIfPresent(key string, msg any) {
	s := r.shard(key)
	s.mu.Lock()
	e := s.entries[key]
	if e != nil {
		e.forwarded++
	}
	s.mu.Unlock()
	if e != nil {
		r.node.system.Root.Send(e.pid, msg)
	}
}

// send delivers msg to the channel's actor if the channel exists.
func (r *registry) send(key string, msg any) {
	if pid := r.lookup(key); pid != nil {
		r.node.system.Root.Send(pid, msg)
	}
}

// sendTo is send to the channel name of app appID, without making its key.
func (r *registry) sendTo(appID, name string, msg any) {
	var buf [keyBuf]byte
	key := appendChannelKey(buf[:0], appID, name)
	s := &r.shards[maphash.Bytes(r.seed, key)%registryShards]
	s.mu.RLock()
	e := s.entries[string(key)]
	s.mu.RUnlock()
	if e != nil {
		r.node.system.Root.Send(e.pid, msg)
	}
}

// vacate removes a channel that has nobody left, unless a message counted by
// forward is still on its way to it. It reports whether the channel must stop.
func (r *registry) vacate(key string, pid *actor.PID, processed uint64) bool {
	s := r.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil || !e.pid.Equal(pid) || e.forwarded != processed {
		return false
	}
	s.removeLocked(key)
	r.removed()
	return true
}

// forget removes the channel's entry if it is still pid's (a channel stopped
// by its supervisor).
func (r *registry) forget(key string, pid *actor.PID) {
	s := r.shard(key)
	s.mu.Lock()
	if e := s.entries[key]; e != nil && e.pid.Equal(pid) {
		s.removeLocked(key)
		r.removed()
	}
	s.mu.Unlock()
}

// removed accounts for a channel gone. After a mass subscribe and close the
// actor system's process registry keeps its high-water mark (its 2,048 Go
// maps never shrink): once the channels are down to a quarter of their peak,
// rebuild them in the background.
func (r *registry) removed() {
	l := r.live.Add(-1)
	if p := r.peak.Load(); p > 4096 && l < p/4 && r.compacting.CompareAndSwap(false, true) {
		go func() {
			defer r.compacting.Store(false)
			protoactor.CompactRegistry(r.node.system)
			r.peak.Store(r.live.Load())
			r.compactions.Add(1)
		}()
	}
}

func (s *registryShard) removeLocked(key string) {
	delete(s.entries, key)
	// Go maps never shrink: after a mass subscribe and close, rebuild the
	// map so its buckets go back to the collector.
	if s.peak > 64 && len(s.entries) < s.peak/4 {
		fresh := make(map[string]*channelEntry, len(s.entries))
		for k, v := range s.entries {
			fresh[k] = v
		}
		s.entries, s.peak = fresh, len(fresh)
	}
}

// each calls f for every channel of the app whose name starts with prefix,
// holding one shard's read lock at a time.
func (r *registry) each(appID, prefix string, f func(e *channelEntry)) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		for _, e := range s.entries {
			if e.appID == appID && strings.HasPrefix(e.name, prefix) {
				f(e)
			}
		}
		s.mu.RUnlock()
	}
}

// all calls f for every channel's actor.
func (r *registry) all(f func(key string, pid *actor.PID)) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		for k, e := range s.entries {
			f(k, e.pid)
		}
		s.mu.RUnlock()
	}
}

// subscriptions is the number of sockets in this node's channels.
func (r *registry) subscriptions() int64 {
	var n int64
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		for _, e := range s.entries {
			n += e.stats.subscriptions.Load()
		}
		s.mu.RUnlock()
	}
	return n
}

// localChannels lists the app's channels with sockets on this node.
func (r *registry) localChannels(appID, prefix string) []ChannelInfo {
	var out []ChannelInfo
	r.each(appID, prefix, func(e *channelEntry) {
		if strings.HasPrefix(e.name, "#") {
			return
		}
		if info := e.info(); info.Occupied {
			out = append(out, info)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// localChannel describes one channel as this node sees it.
func (r *registry) localChannel(key, name string) ChannelInfo {
	s := r.shard(key)
	s.mu.RLock()
	e := s.entries[key]
	s.mu.RUnlock()
	if e == nil {
		return ChannelInfo{Name: name}
	}
	return e.info()
}

func (e *channelEntry) info() ChannelInfo {
	subs := int(e.stats.subscriptions.Load())
	return ChannelInfo{Name: e.name, Occupied: subs > 0, Subscriptions: subs, Users: int(e.stats.users.Load())}
}
