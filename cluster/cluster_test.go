//go:build !race

// Two cluster nodes in one process: protoactor's remote sets gRPC's global
// logger when it starts, racing with the other node's gRPC server, which
// the race detector reports (one node per process never does). .ci/run runs
// these tests without it.

package cluster

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
	"google.golang.org/protobuf/proto"
)

// startClusterPair runs two in-process nodes that form one cluster on
// 127.0.0.1 and returns them with their cluster addresses.
func startClusterPair(t *testing.T, mutate func(*config.Config)) (a, b *testNode, addrA, addrB string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		a, b, addrA, addrB, err := tryClusterPair(t, mutate)
		if err == nil {
			return a, b, addrA, addrB
		}
		if !strings.Contains(err.Error(), "address already in use") || attempt == 2 {
			t.Fatal(err)
		}
		// A port found free was taken before the node bound it: others.
	}
}

func tryClusterPair(t *testing.T, mutate func(*config.Config)) (a, b *testNode, addrA, addrB string, err error) {
	t.Helper()
	pa, pb := testkit.FreePort(t), testkit.FreePort(t)
	addrA, addrB = "127.0.0.1:"+strconv.Itoa(pa), "127.0.0.1:"+strconv.Itoa(pb)
	name := "pair-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	a, b = startNode(t, mutate), startNode(t, mutate)
	for _, j := range []struct {
		n          *testNode
		self, peer string
	}{{a, addrA, addrB}, {b, addrB, addrA}} {
		if _, err := Join(j.n.Node, Options{Name: name, Address: j.self, Peers: []string{j.peer}}); err != nil {
			return nil, nil, "", "", err
		}
	}
	// A node serves once it has a quorum: here, both hear each other.
	waitUntil(t, "both nodes serve", func() bool { return a.Node.Ready() && b.Node.Ready() })
	return a, b, addrA, addrB, nil
}

// waitForwarded publishes on from until w (a socket on another node,
// subscribed to channel) receives one: from forwards to w's node.
func waitForwarded(t *testing.T, from *testNode, w *tClient, channel string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		probe := "probe-" + strconv.Itoa(i)
		if err := from.Node.Publish(actors.Event{AppID: testkit.AppID, Channels: []string{channel}, Name: "probe", Data: probe}); err != nil {
			t.Fatal(err)
		}
		wait := time.After(200 * time.Millisecond)
	read:
		for {
			select {
			case r := <-w.Reads:
				if r.Frame.Event == "probe" && r.Frame.Data == probe {
					return
				}
			case <-wait:
				break read
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no forwarding within 10 s")
		}
	}
}

// subscribedVia subscribes a socket on to to channel and returns it once
// from forwards to it.
func subscribedVia(t *testing.T, from, to *testNode, channel string) *tClient {
	t.Helper()
	w := to.dial()
	w.subscribe(channel)
	waitForwarded(t, from, w, channel)
	return w
}

// publishTicks publishes ticks 0 to n-1 on channel through from, calling
// after(i) (nil: none) after tick i.
func publishTicks(t *testing.T, from *testNode, channel string, n int, after func(i int)) {
	t.Helper()
	for i := range n {
		if err := from.Node.Publish(actors.Event{AppID: testkit.AppID, Channels: []string{channel}, Name: "tick", Data: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		if after != nil {
			after(i)
		}
	}
}

// expectTicks reads ticks 0 to n-1 from w, in order (probes left over from
// waitForwarded aside), then publishes a marker on from and expects it next:
// no tick came twice.
func expectTicks(t *testing.T, from *testNode, w *tClient, channel string, n int) {
	t.Helper()
	nextFrame := func() tFrame {
		for {
			if f := w.Next(); f.Event != "probe" {
				return f
			}
		}
	}
	for i := range n {
		if f := nextFrame(); f.Event != "tick" || f.Data != strconv.Itoa(i) {
			t.Fatalf("want tick %d, got %+v", i, f)
		}
	}
	if err := from.Node.Publish(actors.Event{AppID: testkit.AppID, Channels: []string{channel}, Name: "marker", Data: "{}"}); err != nil {
		t.Fatal(err)
	}
	if f := nextFrame(); f.Event != "marker" {
		t.Fatalf("want the marker after %d ticks, got %+v", n, f)
	}
}

// TestForwardingSurvivesEndpointTeardown: protoactor tears down the remote
// endpoint to an address whenever its membership reports a member there as
// gone, even when a new process already serves at that address (a node
// restarted on the same port before the provider noticed it was down; with
// etcd, the old member's lease expiring after the new one registered). The
// messages queued in that endpoint are dropped. Events forwarded to the node
// at that address must arrive anyway: all of them, in order.
func TestForwardingSurvivesEndpointTeardown(t *testing.T) {
	a, b, _, addrB := startClusterPair(t, nil)
	w := subscribedVia(t, a, b, "teardown")

	const events = 3000
	publishTicks(t, a, "teardown", events, func(i int) {
		if i%300 == 150 {
			// What protoactor's MemberList does for a member that left.
			a.Node.System().EventStream.Publish(&remote.EndpointTerminatedEvent{Address: addrB})
		}
	})
	expectTicks(t, a, w, "teardown", events)
	resent, _ := a.Node.ClusterForwards()
	_, lost := b.Node.ClusterForwards()
	t.Logf("node A sent %d forwards again", resent)
	if resent == 0 || lost != 0 {
		t.Fatalf("A resent %d forwards (want some), B lost %d (want none)", resent, lost)
	}
}

// TestForwardingRecoversLostForwards: 100 of 1,000 forwards are kept but
// never sent, as if lost on the way. In the middle, the next forward shows
// the gap; at the end, no later forward does and the sender's next
// NodeStats shows it. Either way every event arrives, once and in order.
func TestForwardingRecoversLostForwards(t *testing.T) {
	a, b, _, _ := startClusterPair(t, nil)
	w := subscribedVia(t, a, b, "lost")

	const events, lost = 1000, 100
	for _, c := range []struct {
		name string
		from int // the first event lost
	}{{"in the middle", 400}, {"at the end", events - lost}} {
		t.Run(c.name, func(t *testing.T) {
			out := &clusterOf(a.Node).out
			first := out.last() + 1 + uint64(c.from)
			loseForwards(t, a.Node, func(seq uint64) bool { return seq >= first && seq < first+lost })
			before, _ := a.Node.ClusterForwards()
			publishTicks(t, a, "lost", events, nil)
			expectTicks(t, a, w, "lost", events)
			if resent, _ := a.Node.ClusterForwards(); resent-before < lost {
				t.Fatalf("node A sent %d forwards again, want at least %d", resent-before, lost)
			}
			if _, l := b.Node.ClusterForwards(); l != 0 {
				t.Fatalf("node B gave up %d forwards", l)
			}
		})
	}
}

// TestWebhookStatesSentAgainAfterEndpointTeardown: what a node reports to a
// channel's owner for webhooks (its sockets there) is lost like the forwards
// when protoactor tears its endpoint down. Once the owner answers the probe
// that follows, the node sends all its states of the owner's channels again,
// and the owner forgets the ones not listed: the events it missed are sent.
func TestWebhookStatesSentAgainAfterEndpointTeardown(t *testing.T) {
	r := newHookReceiver(t)
	a, b, addrA, _ := startClusterPair(t, func(c *config.Config) {
		c.Apps[0].Webhooks = []config.Webhook{{URL: r.URL, EventTypes: []string{"channel_occupied", "channel_vacated"}}}
		c.WebhookVacateDelay = 0
	})
	w := subscribedVia(t, a, b, "mesh")
	r.ExpectAnyOrder("channel_occupied mesh")

	aID, bID := clusterOf(a.Node).process, clusterOf(b.Node).process // webhook states are kept per process
	ownedByA := func(prefix string) string {
		for i := 0; ; i++ {
			if ch := prefix + strconv.Itoa(i); actors.WebhookOwner(actors.ChannelKey(testkit.AppID, ch), aID, []string{bID}) == aID {
				return ch
			}
		}
	}
	vacated, occupied := ownedByA("vacated-"), ownedByA("occupied-")
	w.subscribe(occupied)
	r.ExpectAnyOrder("channel_occupied " + occupied)
	// A's view as lost reports leave it, set silently: B's socket in
	// vacated (B's report that it left lost), none in occupied (B's report
	// that it joined lost).
	a.Node.ApplyWebhookState(actors.WebhookState{Node: bID, AppID: testkit.AppID, Channel: vacated, Subscriptions: 1, Sync: true})
	a.Node.ApplyWebhookState(actors.WebhookState{Node: bID, AppID: testkit.AppID, Channel: occupied, Subscriptions: 0, Sync: true})

	// What protoactor's MemberList does for a member at A's address that left.
	b.Node.System().EventStream.Publish(&remote.EndpointTerminatedEvent{Address: addrA})
	r.ExpectAnyOrder("channel_vacated "+vacated, "channel_occupied "+occupied)
}

// clusterOf is the cluster a node joined.
func clusterOf(n *actors.Node) *clusterNode {
	return n.Membership().(*clusterNode)
}

// loseForwards makes the node's forwards numbered seq with lose(seq) go
// nowhere, as if lost on the way: its peers' node actors are reached
// through a local actor that drops them (the peers' resend requests, and
// what is sent again, go straight).
func loseForwards(t *testing.T, n *actors.Node, lose func(seq uint64) bool) {
	t.Helper()
	cn := clusterOf(n)
	v := *cn.view()
	root := n.System().Root
	var ps []peer
	for _, p := range v.peers {
		target := p.pid
		p.pid = root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			if m, ok := ctx.Message().(proto.Message); ok {
				if _, seq := forwardOf(m); seq != 0 && lose(seq) {
					return
				}
				ctx.Send(target, m)
			}
		}))
		ps = append(ps, p)
	}
	v.peers = ps
	cn.live.Store(&v)
}
