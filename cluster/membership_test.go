package cluster

import (
	"slices"
	"testing"
	"time"
)

// The membership's rules, on a simulated clock: each node's view is fed the
// reports the others would send.

type simNode struct {
	m *membership
}

func simMember(process, addr string, inc uint64, started int64) memberInfo {
	return memberInfo{ID: memberIDOf(process, inc), Process: process, Incarnation: inc, Started: started, Address: addr}
}

var simAddrs = []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}

func newSim(t *testing.T, count int, now time.Time) []*simNode {
	t.Helper()
	nodes := make([]*simNode, count)
	for i := range nodes {
		self := simMember("p"+string(rune('1'+i)), simAddrs[i], 1, int64(i+1))
		nodes[i] = &simNode{m: newMembership(self, simAddrs[:count], true, now)}
	}
	return nodes
}

// exchange has every node in from report to every node in to.
func exchange(now time.Time, from, to []*simNode) (changes []memberChanges) {
	for _, a := range from {
		for _, b := range to {
			if a != b {
				changes = append(changes, b.m.heard(a.m.self, a.m.view(), now))
			}
		}
	}
	return changes
}

func TestMembershipStartsServingWithAMajorityThatHearsIt(t *testing.T) {
	now := time.Unix(1000, 0)
	n := newSim(t, 3, now)
	if n[0].m.tick(now); n[0].m.up {
		t.Fatal("a node alone of three serves")
	}
	// Node 1 hears node 2, which does not know node 1 yet: not enough.
	ch := n[0].m.heard(n[1].m.self, n[1].m.view(), now)
	if len(ch.admitted) != 1 || n[0].m.up {
		t.Fatalf("after one report: admitted %v, up %v; want node 2 admitted, not up", ch.admitted, n[0].m.up)
	}
	// Once node 2 hears node 1 and says so, both serve.
	exchange(now, n[:2], n[:2])
	exchange(now, n[:2], n[:2])
	if !n[0].m.up || !n[1].m.up {
		t.Fatalf("two of three that hear each other: up %v %v", n[0].m.up, n[1].m.up)
	}
	if n[2].m.tick(now); n[2].m.up {
		t.Fatal("node 3, alone, serves")
	}
}

// settle runs the cluster: ticks and full exchanges, for d.
func settle(now time.Time, d time.Duration, groups ...[]*simNode) time.Time {
	for end := now.Add(d); now.Before(end); now = now.Add(statsInterval) {
		for _, g := range groups {
			for _, x := range g {
				x.m.tick(now)
			}
			exchange(now, g, g)
		}
	}
	return now
}

func TestMembershipPartitionAndHeal(t *testing.T) {
	now := time.Unix(1000, 0)
	n := newSim(t, 3, now)
	now = settle(now, 3*time.Second, n)
	for i, x := range n {
		if !x.m.up || len(x.m.peers()) != 2 {
			t.Fatalf("node %d: up %v, peers %v", i+1, x.m.up, x.m.peers())
		}
	}
	old3 := n[2].m.self.ID

	// Node 3 is cut off. The majority removes it; node 3 goes down and
	// removes nobody.
	wentDown := false
	for end := now.Add(suspectAfter + downAfter + 2*statsInterval); now.Before(end); now = now.Add(statsInterval) {
		for _, x := range n {
			if ch := x.m.tick(now); ch.wentDown {
				if x != n[2] {
					t.Fatalf("a majority node went down")
				}
				wentDown = true
			}
		}
		exchange(now, n[:2], n[:2])
	}
	if !wentDown || n[2].m.up {
		t.Fatal("node 3 still serves, cut off from the majority")
	}
	if len(n[2].m.removed) != 0 {
		t.Fatalf("node 3, without a quorum, removed %v", n[2].m.removed)
	}
	if !n[0].m.up || !n[0].m.removed[old3] || n[0].m.counted() != 2 {
		t.Fatalf("node 1: up %v, removed %v, counted %d; want up, node 3 removed, 2 counted", n[0].m.up, n[0].m.removed, n[0].m.counted())
	}
	if n[0].m.missing() != 1 {
		t.Fatalf("node 1 misses %d addresses, want 1 (node 3's)", n[0].m.missing())
	}

	// Heal: node 1 refuses node 3's old id and says so; node 3 rejoins
	// as a new incarnation and everybody serves.
	ch := n[0].m.heard(n[2].m.self, n[2].m.view(), now)
	if len(ch.tellRemoved) != 1 || ch.tellRemoved[0].ID != old3 || len(ch.admitted) != 0 {
		t.Fatalf("node 1 on hearing node 3's old id: %+v", ch)
	}
	ch = n[2].m.removedBy(n[0].m.self.ID, old3, n[0].m.liveCount(), n[0].m.lowestLive(), now)
	if !ch.reincarnated || n[2].m.self.ID == old3 || n[2].m.self.Incarnation != 2 {
		t.Fatalf("node 3 told it was removed: %+v, id %s", ch, n[2].m.self.ID)
	}
	now = settle(now, 3*time.Second, n)
	for i, x := range n {
		if !x.m.up || len(x.m.peers()) != 2 || x.m.counted() != 3 {
			t.Fatalf("after the heal, node %d: up %v, peers %v, counted %d", i+1, x.m.up, x.m.peers(), x.m.counted())
		}
	}
	if !slices.Contains(n[0].m.view(), n[2].m.self.ID) {
		t.Fatalf("node 1 hears %v, not node 3's new id %s", n[0].m.view(), n[2].m.self.ID)
	}
	// The old id stays refused.
	if ch := n[0].m.heard(simMember("p3", simAddrs[2], 1, 3), nil, now); len(ch.tellRemoved) != 1 || len(ch.admitted) != 0 {
		t.Fatalf("node 3's old id reported again: %+v", ch)
	}
}

func TestMembershipPausedProcessConvictsNobody(t *testing.T) {
	now := time.Unix(1000, 0)
	n := newSim(t, 3, now)
	now = settle(now, 3*time.Second, n)
	// Node 2 is frozen for 20 s: its next tick is late.
	now = now.Add(20 * time.Second)
	if ch := n[1].m.tick(now); len(ch.dropped) != 0 || ch.wentDown || !n[1].m.up {
		t.Fatalf("the paused node, on its first tick: %+v (up %v)", ch, n[1].m.up)
	}
}

func TestMembershipNewerProcessReplacesTheOlder(t *testing.T) {
	now := time.Unix(1000, 0)
	n := newSim(t, 3, now)
	now = settle(now, 3*time.Second, n)
	old := n[1].m.self
	restarted := simMember("p2b", simAddrs[1], 1, 100)
	ch := n[0].m.heard(restarted, []string{restarted.ID}, now)
	if len(ch.dropped) != 1 || ch.dropped[0].ID != old.ID || len(ch.admitted) != 1 || !slices.Equal(ch.processGone, []string{"p2"}) {
		t.Fatalf("a new process at node 2's address: %+v", ch)
	}
	// A late report from the dead process admits nothing.
	if ch := n[0].m.heard(old, nil, now); len(ch.admitted) != 0 || len(ch.dropped) != 0 {
		t.Fatalf("a late report of the replaced process: %+v", ch)
	}
	// Nor does one from an older process never seen before.
	if ch := n[0].m.heard(simMember("p2old", simAddrs[1], 1, 50), nil, now); len(ch.admitted) != 0 {
		t.Fatalf("an older process's report: %+v", ch)
	}
}

func TestMembershipTwoNodesLowestAddressKeepsServing(t *testing.T) {
	now := time.Unix(1000, 0)
	n := newSim(t, 2, now)
	now = settle(now, 3*time.Second, n)
	if !n[0].m.up || !n[1].m.up {
		t.Fatal("a pair that hears each other does not serve")
	}
	now = settle(now, suspectAfter+downAfter+2*statsInterval, n[:1], n[1:])
	if !n[0].m.up || n[1].m.up {
		t.Fatalf("split pair: up %v %v; want the lowest address (node 1) only", n[0].m.up, n[1].m.up)
	}
}

func TestMembershipMutualRemovalTheSmallerSideRejoins(t *testing.T) {
	now := time.Unix(1000, 0)
	n := newSim(t, 3, now)
	now = settle(now, 3*time.Second, n)
	// Both sides removed each other (as two sides that both believed they
	// had a quorum would): {1, 2} and {3}.
	n[0].m.removed[n[2].m.self.ID] = true
	n[2].m.removed[n[0].m.self.ID] = true
	ch := n[0].m.removedBy(n[2].m.self.ID, n[0].m.self.ID, 1, simAddrs[2], now)
	if ch.reincarnated {
		t.Fatal("the side hearing two members rejoined for the side hearing one")
	}
	ch = n[2].m.removedBy(n[0].m.self.ID, n[2].m.self.ID, 3, simAddrs[0], now)
	if !ch.reincarnated {
		t.Fatal("the smaller side did not rejoin")
	}
}

func TestMembershipLeaveShrinksTheCount(t *testing.T) {
	now := time.Unix(1000, 0)
	n := newSim(t, 3, now)
	now = settle(now, 3*time.Second, n)
	ch := n[0].m.left(n[2].m.self.ID, now)
	if len(ch.dropped) != 1 || n[0].m.counted() != 2 {
		t.Fatalf("after node 3 left: %+v, counted %d", ch, n[0].m.counted())
	}
	// Then node 2 dies: node 1, with the lowest address, keeps serving.
	now = settle(now, suspectAfter+downAfter+2*statsInterval, n[:1])
	if !n[0].m.up {
		t.Fatal("node 1 stopped serving after a leave and a death")
	}
}

func TestMembershipEtcdLeaseAndRegistry(t *testing.T) {
	now := time.Unix(1000, 0)
	self := simMember("p1", simAddrs[0], 1, 1)
	m := newMembership(self, nil, false, now)
	m.tick(now)
	if m.up {
		t.Fatal("serving before holding a lease")
	}
	m.setLease(true, now)
	if !m.up {
		t.Fatal("alone in etcd with a lease: not serving")
	}
	peer := simMember("p2", simAddrs[1], 1, 2)
	m.registry(map[string]memberInfo{simAddrs[0]: self, simAddrs[1]: peer}, now)
	// Two counted, node 1 has the lowest address: it still serves.
	if !m.up || m.counted() != 2 {
		t.Fatalf("with a registered peer: up %v, counted %d", m.up, m.counted())
	}
	m.setLease(false, now)
	now = now.Add(downAfter)
	if m.tick(now); m.up {
		t.Fatal("serving without the lease")
	}
	// The peer's registration goes: it counts no more.
	m.setLease(true, now)
	m.registry(map[string]memberInfo{simAddrs[0]: self}, now)
	if m.counted() != 1 || !m.up {
		t.Fatalf("after the peer's registration went: counted %d, up %v", m.counted(), m.up)
	}
}

// A node cut off from everyone drops its peers one at a time, as their
// probes fail; the peer still counted at the first drop has been silent as
// long: it makes no quorum that removes the other.
func TestMembershipSilentPeersRemoveNobody(t *testing.T) {
	now := time.Unix(1000, 0)
	n := newSim(t, 3, now)
	now = settle(now, 3*time.Second, n)
	for range 4 { // cut: nothing heard for 4 s
		now = now.Add(statsInterval)
		n[2].m.tick(now)
	}
	n[2].m.unreachable(n[1].m.self.ID, now)
	n[2].m.unreachable(n[0].m.self.ID, now)
	if len(n[2].m.removed) != 0 || n[2].m.counted() != 3 {
		t.Fatalf("node 3, cut off, removed %v (counts %d)", n[2].m.removed, n[2].m.counted())
	}
}
