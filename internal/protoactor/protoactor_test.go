package protoactor

import (
	"io"
	"log/slog"
	"math"
	"net"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	cmap "github.com/orcaman/concurrent-map"
)

func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
}

// TestRegistryLayout: the registry is what NarrowRegistry and
// CompactRegistry reach into: a slice of concurrent maps whose shards keep
// their entries in an unexported map "items". Another layout (an upgrade)
// fails here; the reflection would otherwise do nothing, silently.
func TestRegistryLayout(t *testing.T) {
	system := quietSystem()
	defer system.Shutdown()
	var _ []cmap.ConcurrentMap = system.ProcessRegistry.LocalPIDs.LocalPIDs
	for _, cm := range system.ProcessRegistry.LocalPIDs.LocalPIDs {
		for _, shard := range cm {
			f := reflect.ValueOf(shard).Elem().FieldByName("items")
			if !f.IsValid() || f.Kind() != reflect.Map {
				t.Fatalf("a registry shard has no map field items: %T", shard)
			}
			return
		}
	}
	t.Fatal("the registry has no shard")
}

// TestNarrowAndCompactKeepEveryActor: after NarrowRegistry every actor
// registered before is found and new ones register; CompactRegistry keeps
// them all.
func TestNarrowAndCompactKeepEveryActor(t *testing.T) {
	system := quietSystem()
	defer system.Shutdown()
	props := actor.PropsFromFunc(func(actor.Context) {})
	before := system.Root.Spawn(props)
	NarrowRegistry(system)
	if n := len(system.ProcessRegistry.LocalPIDs.LocalPIDs); n != RegistryBuckets {
		t.Fatalf("%d maps, want %d", n, RegistryBuckets)
	}
	var pids []*actor.PID
	for range 1000 {
		pids = append(pids, system.Root.Spawn(props))
	}
	for _, p := range pids[:900] {
		_ = system.Root.StopFuture(p).Wait()
	}
	CompactRegistry(system)
	for _, p := range append([]*actor.PID{before}, pids[900:]...) {
		if _, ok := system.ProcessRegistry.GetLocal(p.Id); !ok {
			t.Fatalf("%s lost", p.Id)
		}
	}
	if _, ok := system.ProcessRegistry.GetLocal("eventstream"); !ok {
		t.Fatal("the event stream is no longer found")
	}
}

// TestMemberListNeverListsARemovedIDAgain: protoactor's member list blocks
// the id of a member that leaves the topology and never lists it again.
// Parley's membership relies on it (a removed member rejoins under a new
// incarnation id) and on nothing else blocking ids: if an upgrade lists a
// removed id again, or blocks ids on its own, the membership needs a look.
func TestMemberListNeverListsARemovedIDAgain(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	system := quietSystem()
	cc := ClusterConfig("probe", "127.0.0.1", port)
	if cc.HeartbeatExpiration != time.Duration(math.MaxInt64) || cc.GossipInterval < time.Hour {
		t.Fatalf("gossip: heartbeat expiry %v, interval %v", cc.HeartbeatExpiration, cc.GossipInterval)
	}
	c := cluster.New(system, cc)
	c.StartMember()
	defer c.Shutdown(false)
	self := Member(system.ID, "127.0.0.1:"+strconv.Itoa(port), nil)
	other := Member("other.1", "127.0.0.1:1", nil)
	ids := func() []string {
		var out []string
		for _, m := range c.MemberList.Members().Members() {
			out = append(out, m.Id)
		}
		return out
	}
	c.MemberList.UpdateClusterTopology([]*cluster.Member{self, other})
	if got := ids(); len(got) != 2 {
		t.Fatalf("members %v, want both", got)
	}
	c.MemberList.UpdateClusterTopology([]*cluster.Member{self})
	c.MemberList.UpdateClusterTopology([]*cluster.Member{self, other})
	if got := ids(); len(got) != 1 || got[0] != self.Id {
		t.Fatalf("members %v after the other left and came back: protoactor lists a removed id again", got)
	}
	again := Member("other.2", "127.0.0.1:1", nil) // a new incarnation
	c.MemberList.UpdateClusterTopology([]*cluster.Member{self, again})
	if got := ids(); len(got) != 2 {
		t.Fatalf("members %v: a new incarnation's id is not admitted", got)
	}
}
