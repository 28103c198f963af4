package cluster

import (
	"slices"
	"sort"
	"strconv"
	"time"
)

// Membership: who is in the cluster, decided by Parley rather than left to
// protoactor's member list, which never lists a removed member again and so
// splits a cluster for good after a partition of more than a few seconds.
//
// The rules (docs/clustering.md, "Membership and partitions", says them for operators):
//
//   - Every node reports to every known address once a second (NodeStats),
//     with its member id and the members it hears. A member not heard from
//     for suspectAfter leaves the live set.
//   - Keep the majority: a node serves (is up) while it and the members that
//     hear it are more than half of the members it counts: the configured
//     addresses (static peers) or the registered ones (etcd), less the ones
//     it removed or saw leave. Exactly half serves if it holds the lowest
//     address. With etcd a node must also hold its lease. A node without a
//     quorum for downAfter goes down: /up answers 503, it refuses new sockets
//     and publishes, closes its sockets with a reconnect code and sends no
//     webhooks, so clients reconnect, through the load balancer, to the side
//     that serves, and catch up.
//   - Only a node with a quorum removes the members it no longer hears. A
//     removed member id is never admitted again: a node that learns it was
//     removed (Removed, the answer to its reports) rejoins as a new
//     incarnation, process.N+1, and sends its state again (snapshots) as a
//     newcomer does. A newer process at an address replaces the older one.
//   - When two nodes removed each other (possible only when both sides
//     believed they had a quorum), the one hearing fewer members rejoins; on
//     a tie, the one whose live set lacks the lowest address.
//   - A process that did not run for pauseAfter (SIGSTOP, a VM pause)
//     convicts nobody for what it did not hear meanwhile.

// Membership timings.
const (
	suspectAfter = 5 * statsInterval // a member not heard from for this long leaves the live set
	downAfter    = 2 * time.Second   // a node without a quorum this long goes down
	pauseAfter   = 3 * statsInterval // a tick this late means this process was paused
	// freshWithin: only members heard this recently make a quorum that
	// removes others, or that tells webhooks a dropped member's users are
	// gone. A node cut off from everyone drops its peers one at a time
	// (each when its connection breaks and its probe fails, 5 s or more
	// after the cut); without this, the first drop would be decided with
	// the others, as silent, still counted.
	freshWithin = 3 * statsInterval
)

// memberInfo is one incarnation of a node.
type memberInfo struct {
	ID          string // Process.Incarnation: the member id
	Process     string // the process (its actor system id): forwards are numbered per process
	Incarnation uint64
	Started     int64  // process start, Unix ns: a newer process at an address replaces an older one
	Address     string // its cluster address, host:port
	Kinds       []string
}

func memberIDOf(process string, incarnation uint64) string {
	return process + "." + strconv.FormatUint(incarnation, 10)
}

// slot is what a node knows of one address of the cluster.
type slot struct {
	address    string
	member     memberInfo // the member last heard there (ID "" = none yet)
	seen       time.Time  // its last report, or when the slot appeared
	alive      bool       // heard within suspectAfter: a peer
	mutual     bool       // its last report listed this node's current id
	excluded   bool       // not counted: removed by this node with a quorum, or left
	left       bool       // its member said goodbye: it holds nothing (until a member shows up again)
	configured bool       // a --cluster-peers address, or registered in etcd
}

// membership is a node's view of its cluster. It is only touched by the
// node actor.
type membership struct {
	self    memberInfo
	static  bool // slots are the configured addresses; else etcd's registry
	slots   map[string]*slot
	removed map[string]bool // member ids never admitted again
	lease   bool            // etcd: this node holds its lease (always true with static peers)
	up      bool

	noQuorumSince time.Time
	lastTick      time.Time
}

// memberChanges is what an event changed, for the node actor to carry out.
type memberChanges struct {
	admitted     []memberInfo // new peers
	dropped      []memberInfo // peers no longer live
	processGone  []string     // processes known to be gone (replaced, left): their forwards can be forgotten
	tellRemoved  []memberInfo // members to tell that they were removed
	reincarnated bool         // this node has a new member id
	wentUp       bool
	wentDown     bool
}

func (c *memberChanges) any() bool {
	return len(c.admitted) > 0 || len(c.dropped) > 0 || c.reincarnated || c.wentUp || c.wentDown
}

// newMembership starts a node's view: static peers (addresses other than
// self's) or, with etcd, none until the registry is read.
func newMembership(self memberInfo, peers []string, static bool, now time.Time) *membership {
	m := &membership{self: self, static: static, slots: map[string]*slot{}, removed: map[string]bool{}, lease: static}
	m.slots[self.Address] = &slot{address: self.Address, member: self, seen: now, alive: true, configured: true}
	for _, a := range peers {
		if a != self.Address {
			m.slots[a] = &slot{address: a, seen: now, configured: true}
		}
	}
	return m
}

func (m *membership) isSelf(s *slot) bool { return s.address == m.self.Address }

// heard applies a member's report: it names the members it hears (view).
func (m *membership) heard(x memberInfo, view []string, now time.Time) (ch memberChanges) {
	if x.ID == "" || x.Address == "" || x.ID == m.self.ID || x.Address == m.self.Address {
		return
	}
	if m.removed[x.ID] {
		ch.tellRemoved = append(ch.tellRemoved, x)
		return
	}
	s := m.slots[x.Address]
	if s == nil {
		// Not configured (or not registered yet): a node that knows us.
		s = &slot{address: x.Address, seen: now}
		m.slots[x.Address] = s
	}
	if old := s.member; old.ID != "" && old.ID != x.ID {
		if (old.Process == x.Process && x.Incarnation < old.Incarnation) || (old.Process != x.Process && x.Started < old.Started) {
			// A late report of an earlier incarnation or process.
			m.removed[x.ID] = true
			return
		}
		m.removed[old.ID] = true
		if s.alive {
			ch.dropped = append(ch.dropped, old)
		}
		if old.Process != x.Process {
			ch.processGone = append(ch.processGone, old.Process)
		}
		s.alive = false
	}
	s.member, s.seen, s.excluded, s.left = x, now, false, false
	s.mutual = slices.Contains(view, m.self.ID)
	if !s.alive {
		s.alive = true
		ch.admitted = append(ch.admitted, x)
	}
	m.decide(now, &ch)
	return ch
}

// tick runs every statsInterval: members not heard from leave, and the node
// decides whether it serves.
func (m *membership) tick(now time.Time) (ch memberChanges) {
	if !m.lastTick.IsZero() && now.Sub(m.lastTick) > pauseAfter {
		// This process did not run: what it did not hear meanwhile says
		// nothing about the others. Start counting again.
		for _, s := range m.slots {
			s.seen = now
		}
		m.noQuorumSince = time.Time{}
	}
	m.lastTick = now
	for _, s := range m.slots {
		if !m.isSelf(s) && s.alive && now.Sub(s.seen) > suspectAfter {
			s.alive, s.mutual = false, false
			ch.dropped = append(ch.dropped, s.member)
		}
	}
	m.decide(now, &ch)
	return ch
}

// unreachable drops a member at once: its connection broke and it did not
// answer a probe.
func (m *membership) unreachable(id string, now time.Time) (ch memberChanges) {
	for _, s := range m.slots {
		if s.member.ID == id && s.alive && !m.isSelf(s) {
			s.alive, s.mutual = false, false
			s.seen = now.Add(-suspectAfter - time.Nanosecond) // removable now
			ch.dropped = append(ch.dropped, s.member)
		}
	}
	m.decide(now, &ch)
	return ch
}

// left applies a member's goodbye: it is not counted any more.
func (m *membership) left(id string, now time.Time) (ch memberChanges) {
	m.removed[id] = true
	for _, s := range m.slots {
		if s.member.ID != id || m.isSelf(s) {
			continue
		}
		if s.alive {
			ch.dropped = append(ch.dropped, s.member)
		}
		ch.processGone = append(ch.processGone, s.member.Process)
		s.alive, s.mutual, s.excluded, s.left = false, false, true, true
	}
	m.decide(now, &ch)
	return ch
}

// removedBy applies a member's answer that it removed this node's member id
// (it reports its live-set size and lowest address, for the tie-break when
// this node removed it too). The node rejoins under a new id.
func (m *membership) removedBy(by string, member string, view int, lowest string, now time.Time) (ch memberChanges) {
	if member != m.self.ID {
		return // an earlier incarnation's: done already
	}
	if m.removed[by] {
		mine, myLowest := m.liveCount(), m.lowestLive()
		if mine > view || (mine == view && myLowest < lowest) {
			return // this side stays; the other rejoins
		}
	}
	m.self.Incarnation++
	m.self.ID = memberIDOf(m.self.Process, m.self.Incarnation)
	m.slots[m.self.Address].member = m.self
	for _, s := range m.slots {
		s.mutual = false // nobody lists the new id yet
	}
	ch.reincarnated = true
	m.decide(now, &ch)
	return ch
}

// registry applies etcd's list of members (address → member): addresses
// that appear become slots; those that disappear stop counting once nothing
// is heard from them.
func (m *membership) registry(reg map[string]memberInfo, now time.Time) (ch memberChanges) {
	for addr := range reg {
		if s := m.slots[addr]; s == nil {
			m.slots[addr] = &slot{address: addr, seen: now, configured: true}
		} else {
			s.configured = true
		}
	}
	for addr, s := range m.slots {
		if _, ok := reg[addr]; !ok && !m.isSelf(s) {
			s.configured = false
		}
	}
	m.decide(now, &ch)
	return ch
}

// setLease records whether this node holds its etcd lease.
func (m *membership) setLease(held bool, now time.Time) (ch memberChanges) {
	m.lease = held
	m.decide(now, &ch)
	return ch
}

// decide settles whether the node serves, and with a quorum removes the
// members it has not heard from for suspectAfter.
func (m *membership) decide(now time.Time, ch *memberChanges) {
	if !m.static {
		// An address neither registered nor heard from is no member.
		for addr, s := range m.slots {
			if !s.configured && !s.alive && !m.isSelf(s) {
				delete(m.slots, addr)
			}
		}
	}
	if !m.quorum(now, 0) {
		if m.up {
			if m.noQuorumSince.IsZero() {
				m.noQuorumSince = now
			}
			if now.Sub(m.noQuorumSince) >= downAfter {
				m.up = false
				ch.wentDown = true
			}
		}
		return
	}
	m.noQuorumSince = time.Time{}
	removing := m.decides(now)
	for _, s := range m.slots {
		if !removing || s.excluded || s.alive || m.isSelf(s) || now.Sub(s.seen) <= suspectAfter {
			continue
		}
		s.excluded = true
		if s.member.ID != "" {
			m.removed[s.member.ID] = true
		}
	}
	if !m.up {
		m.up = true
		ch.wentUp = true
	}
}

// quorum reports whether this node and the members that hear it are a
// majority of the counted members (half, with the lowest address); with
// fresh, only the members heard within it count.
func (m *membership) quorum(now time.Time, fresh time.Duration) bool {
	if !m.lease {
		return false
	}
	total, count := 0, 0
	lowest, lowestCounted := "", false
	for _, s := range m.slots {
		if s.excluded {
			continue
		}
		total++
		counted := m.isSelf(s) || (s.alive && s.mutual && (fresh == 0 || now.Sub(s.seen) <= fresh))
		if counted {
			count++
		}
		if lowest == "" || s.address < lowest {
			lowest, lowestCounted = s.address, counted
		}
	}
	return 2*count > total || (2*count == total && lowestCounted)
}

// decides reports whether this node, now, speaks for the cluster: a quorum
// of members heard within freshWithin.
func (m *membership) decides(now time.Time) bool { return m.quorum(now, freshWithin) }

// liveCount is the node and its peers.
func (m *membership) liveCount() int {
	n := 0
	for _, s := range m.slots {
		if s.alive {
			n++
		}
	}
	return n
}

// lowestLive is the lowest address among the node and its peers.
func (m *membership) lowestLive() string {
	lowest := m.self.Address
	for _, s := range m.slots {
		if s.alive && s.address < lowest {
			lowest = s.address
		}
	}
	return lowest
}

// view is the member ids this node hears, its own included, sorted.
func (m *membership) view() []string {
	ids := make([]string, 0, len(m.slots))
	for _, s := range m.slots {
		if s.alive {
			ids = append(ids, s.member.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// peers are the live members other than this node.
func (m *membership) peers() []memberInfo {
	var out []memberInfo
	for _, s := range m.slots {
		if s.alive && !m.isSelf(s) {
			out = append(out, s.member)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

// addresses are where this node reports: every known address but its own.
func (m *membership) addresses() []string {
	out := make([]string, 0, len(m.slots))
	for addr := range m.slots {
		if addr != m.self.Address {
			out = append(out, addr)
		}
	}
	sort.Strings(out)
	return out
}

// missing is the number of known addresses with no live member (but those
// whose member left in order): answers collected from the peers miss what
// those hold.
func (m *membership) missing() int {
	n := 0
	for _, s := range m.slots {
		if !s.alive && !s.left && (s.configured || !s.excluded) {
			n++
		}
	}
	return n
}

// counted is the members that count towards the quorum.
func (m *membership) counted() int {
	n := 0
	for _, s := range m.slots {
		if !s.excluded {
			n++
		}
	}
	return n
}
