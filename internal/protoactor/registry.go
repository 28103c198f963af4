// Package protoactor holds every place where Parley works around or into
// protoactor-go (github.com/asynkron/protoactor-go, pinned in go.mod), each
// with a test that fails when an upgrade makes it wrong:
//
//   - registry.go: the process registry narrowed from 1,024 concurrent maps
//     to 64 and compacted after mass stops, by reflection into its unexported
//     shards (memory per socket).
//   - dispatcher.go: a dispatcher that runs mailboxes on long-lived worker
//     goroutines (protoactor's starts a goroutine per mailbox run: stack
//     growth was 11-15 % of a connect storm's CPU).
//   - cluster.go: the cluster and remote configuration Parley needs: its own
//     membership feeds the member list (which never lists a removed member
//     again), gossip's heartbeat expiry off (it would block members for
//     good), one connect attempt, keepalives, large batches.
//
// Not here, because nothing of protoactor's is patched: the node's idle
// wheel (actors/idle.go) replaces actor.ReceiveTimeout, whose timer races
// with the messages that should reset it and costs a timer per socket.
package protoactor

import (
	"reflect"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"
)

// CompactRegistry rebuilds the maps of the actor system's process
// registry, which never shrink: after 50,000 channel actors came and went
// they held ~8 MB, after 300,000 much more, although every actor had
// stopped (~4 MB since the registry is narrowed to RegistryBuckets
// concurrent maps of 32 shards each, see NarrowRegistry). The
// registry is protoactor's; its shards' maps are unexported, so they are reached by reflection,
// each under its own lock. With another layout (a protoactor upgrade) this
// does nothing, and the registry test shows the memory staying high.
func CompactRegistry(system *actor.ActorSystem) {
	for _, cm := range system.ProcessRegistry.LocalPIDs.LocalPIDs {
		for _, shard := range cm {
			f := reflect.ValueOf(shard).Elem().FieldByName("items")
			if !f.IsValid() || f.Kind() != reflect.Map {
				return // another layout: TestRegistryLayout fails
			}
			items := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
			shard.Lock()
			{
				fresh := reflect.MakeMapWithSize(items.Type(), items.Len())
				iter := items.MapRange()
				for iter.Next() {
					fresh.SetMapIndex(iter.Key(), iter.Value())
				}
				items.Set(fresh)
			}
			shard.Unlock()
		}
	}
}

// RegistryBuckets is how many concurrent maps the process registry is
// narrowed to (protoactor makes 1,024, of 32 shards each).
const RegistryBuckets = 64

// NarrowRegistry gives a new actor system's process registry
// RegistryBuckets concurrent maps instead of 1,024, moving what is
// registered already (protoactor's event stream). Protoactor spreads the
// actors over 1,024 × 32 = 32,768 Go maps, so at 10,000 sockets most maps
// hold one actor, and the first entry of a Go map allocates a group of 8
// slots: ~245 B of registry per socket. Over 2,048 maps the groups fill
// (~50 B per socket at 10,000) and 2.7 MB of empty maps are not made at
// start; a shard's lock is still only taken to spawn, stop or resolve a PID
// the first time. Call it before anything else uses the system: an entry
// is found by its key's hash modulo the number of maps.
func NarrowRegistry(system *actor.ActorSystem) {
	pids := system.ProcessRegistry.LocalPIDs
	fresh := make([]cmap.ConcurrentMap, RegistryBuckets)
	for i := range fresh {
		fresh[i] = cmap.New()
	}
	old := pids.LocalPIDs
	pids.LocalPIDs = fresh
	for _, cm := range old {
		for id, p := range cm.Items() {
			pids.GetBucket(id).Set(id, p)
		}
	}
}
