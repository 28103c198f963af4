package actors

import (
	"runtime"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/internal/protoactor"
)

type idleActor struct{}

func (idleActor) Receive(actor.Context) {}

// registryCost spawns n idle actors in system and returns the live heap
// each one adds.
func registryCost(t *testing.T, system *actor.ActorSystem, n int) float64 {
	t.Helper()
	props := actor.PropsFromProducer(func() actor.Actor { return idleActor{} }, actor.WithMailbox(actor.UnboundedLockfree()))
	live := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	pids := make([]*actor.PID, n)
	before := live()
	for i := range pids {
		pids[i] = system.Root.Spawn(props)
	}
	after := live()
	for _, pid := range pids {
		if _, ok := system.ProcessRegistry.GetLocal(pid.Id); !ok {
			t.Fatalf("%s not registered", pid.Id)
		}
	}
	for _, pid := range pids {
		_ = system.Root.StopFuture(pid).Wait()
	}
	return float64(after-before) / float64(n)
}

// The process registry of a node's actor system is narrowed to
// protoactor.RegistryBuckets maps, with what was registered before still found, and an
// actor costs at least 150 B less heap than in protoactor's own layout.
func TestProcessRegistryNarrowed(t *testing.T) {
	tn := startNode(t, nil)
	system := tn.Node.system
	if n := len(system.ProcessRegistry.LocalPIDs.LocalPIDs); n != protoactor.RegistryBuckets {
		t.Fatalf("%d maps, want %d", n, protoactor.RegistryBuckets)
	}
	if _, ok := system.ProcessRegistry.GetLocal("eventstream"); !ok {
		t.Fatal("the event stream is no longer found")
	}
	a := tn.dial()
	a.subscribe("news") // actors spawn, find each other and talk
	if testing.Short() {
		return
	}
	wide := actor.NewActorSystem()
	defer wide.Shutdown()
	const n = 10000
	narrowCost, wideCost := registryCost(t, system, n), registryCost(t, wide, n)
	t.Logf("heap per idle actor: %.0f B narrowed, %.0f B in protoactor's layout", narrowCost, wideCost)
	if narrowCost > wideCost-100 {
		t.Fatalf("heap per idle actor: %.0f B narrowed, %.0f B in protoactor's layout", narrowCost, wideCost)
	}
}
