package actors

import (
	"reflect"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
)

// compactProcessRegistry rebuilds the maps of the actor system's process
// registry, which never shrink: after 50,000 channel actors came and went
// they held ~8 MB, after 300,000 much more, although every actor had
// stopped. The registry is protoactor's (1,024 concurrent maps of 32 shards
// each); its shards' maps are unexported, so they are reached by reflection,
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
