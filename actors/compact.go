package actors

import (
	"reflect"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"
)

// compactProcessRegistry rebuilds the maps of the actor system's process
// registry, which never shrink: after 50,000 channel actors came and went
// they held ~8 MB, after 300,000 much more, although every actor had
// stopped (~4 MB since the registry is narrowed to registryBuckets
// concurrent maps of 32 shards each, see narrowProcessRegistry). The
// registry is protoactor's; its shards' maps are unexported, so they are reached by reflection,
// each under its own lock. With another layout (a protoactor upgrade) this
// does nothing, and the registry test shows the memory staying high.
func compactProcessRegistry(system *actor.ActorSystem) {
	for _, cm := range system.ProcessRegistry.LocalPIDs.LocalPIDs {
		for _, shard := range cm {
			f := reflect.ValueOf(shard).Elem().FieldByName("items")
			if !f.IsValid() || f.Kind() != reflect.Map {
				return
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

// registryBuckets is how many concurrent maps the process registry is
// narrowed to (protoactor makes 1,024, of 32 shards each).
const registryBuckets = 64

// narrowProcessRegistry gives a new actor system's process registry
// registryBuckets concurrent maps instead of 1,024, moving what is
// registered already (protoactor's event stream). Protoactor spreads the
// actors over 1,024 × 32 = 32,768 Go maps, so at 10,000 sockets most maps
// hold one actor, and the first entry of a Go map allocates a group of 8
// slots: ~245 B of registry per socket. Over 2,048 maps the groups fill
// (~50 B per socket at 10,000) and 2.7 MB of empty maps are not made at
// start; a shard's lock is still only taken to spawn, stop or resolve a PID
// the first time. Call it before anything else uses the system: an entry
// is found by its key's hash modulo the number of maps.
func narrowProcessRegistry(system *actor.ActorSystem) {
	pids := system.ProcessRegistry.LocalPIDs
	fresh := make([]cmap.ConcurrentMap, registryBuckets)
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
