package actors

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/pusher"
)

// testNode runs a Node behind a real WebSocket endpoint on 127.0.0.1.
type testNode struct{ *testkit.Served[*Node] }

func startNode(t *testing.T, mutate func(*config.Config)) *testNode {
	t.Helper()
	n := NewNode(testkit.Config(t, "", mutate), slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &testNode{testkit.Start(t, n, n.Stop)}
}

type tFrame = testkit.Frame

// tClient is a test's socket, connected and with its socket id.
type tClient struct{ *testkit.Client }

func (tn *testNode) dial() *tClient {
	tn.T.Helper()
	return &tClient{tn.Dial(testkit.DialOptions{Buffer: 1 << 10})}
}

// dialUnowned connects a client the caller must close.
func (tn *testNode) dialUnowned() *tClient {
	tn.T.Helper()
	return &tClient{tn.Dial(testkit.DialOptions{Buffer: 1 << 10, Unowned: true})}
}

// subscribe joins channel, a presence channel as user "u-" + the socket
// id, and reads subscription_succeeded.
func (w *tClient) subscribe(channel string) tFrame {
	w.T.Helper()
	return w.joinAs(channel, "u-"+w.SocketID)
}

// joinAs joins channel, a presence channel as userID, and reads
// subscription_succeeded.
func (w *tClient) joinAs(channel, userID string) tFrame {
	w.T.Helper()
	w.subscribeAs(channel, userID)
	return w.Expect("pusher_internal:subscription_succeeded")
}

// subscribeAs sends the subscribe, a presence channel's as userID.
func (w *tClient) subscribeAs(channel, userID string) {
	w.T.Helper()
	w.SubscribeSigned(testkit.Key, testkit.Secret, channel, `{"user_id":"`+userID+`"}`)
}

// marker publishes an event and waits for it: everything sent before it to
// w's channels has arrived by then.
func (tn *testNode) marker(w *tClient, channel string) {
	tn.T.Helper()
	if err := tn.Node.Publish(Event{AppID: testkit.AppID, Channels: []string{channel}, Name: "marker", Data: "{}"}); err != nil {
		tn.T.Fatal(err)
	}
	w.Expect("marker")
}

func waitUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestChannelPanicRecovers: a panic in a channel actor stops it; its sockets
// are told to reconnect (4200) and the channel works again for new
// subscribers; sockets elsewhere are untouched.
func TestChannelPanicRecovers(t *testing.T) {
	tn := startNode(t, nil)
	a, b, other := tn.dial(), tn.dial(), tn.dial()
	a.subscribe("presence-room")
	b.subscribe("presence-room")
	a.Expect("pusher_internal:member_added")
	other.subscribe("news")

	key := channelKey(testkit.AppID, "presence-room")
	old := tn.Node.reg.lookup(key)
	// A subscribe without a subscriber: the actor panics on it.
	tn.Node.system.Root.Send(old, &subscribeMsg{})
	if code := a.ExpectClose(5 * time.Second); code != int(pusher.CodeServerRestart) {
		t.Fatalf("a closed with %d, want 4200", code)
	}
	if code := b.ExpectClose(5 * time.Second); code != int(pusher.CodeServerRestart) {
		t.Fatalf("b closed with %d, want 4200", code)
	}
	waitUntil(t, "the crashed channel to leave the registry", func() bool { return tn.Node.reg.lookup(key) == nil })

	// Reconnecting clients find a clean channel: one member each, no ghosts.
	c := tn.dial()
	f := c.subscribe("presence-room")
	if !strings.Contains(f.Data, `"count":1`) {
		t.Fatalf("fresh channel presence %s", f.Data)
	}
	users, err := tn.Node.localUsers(testkit.AppID, "presence-room")
	if err != nil || len(users) != 1 || users[0] != "u-"+c.SocketID {
		t.Fatalf("users %v %v", users, err)
	}
	tn.marker(other, "news")
	// The new channel still stops when vacated.
	c.Conn.Close()
	waitUntil(t, "the channel to stop when vacated", func() bool { return tn.Node.reg.lookup(key) == nil })
}

// TestConnectionPanicRecovers: a panic in a connection actor ends that socket
// with 4200 and takes it out of its channels; the channel and its other
// members carry on.
func TestConnectionPanicRecovers(t *testing.T) {
	tn := startNode(t, nil)
	actorsOf := crashable(tn.Node)
	a, b := tn.dial(), tn.dial()
	a.subscribe("presence-room")
	b.subscribe("presence-room")
	a.Expect("pusher_internal:member_added")

	tn.Node.system.Root.Send(actorsOf(b.SocketID), crash{})
	if code := b.ExpectClose(5 * time.Second); code != int(pusher.CodeServerRestart) {
		t.Fatalf("b closed with %d, want 4200", code)
	}
	f := a.Expect("pusher_internal:member_removed")
	if !strings.Contains(f.Data, "u-"+b.SocketID) {
		t.Fatalf("member_removed %s", f.Data)
	}
	waitUntil(t, "b's slot to be released", func() bool { return tn.Node.Connections(testkit.AppID) == 1 })
	tn.marker(a, "presence-room")
}

// crash makes a ConnectionActor started after crashable panic.
type crash struct{}

// crashable gives the node's ConnectionActors a receiver that panics on
// crash (tests only: Props are the node's, the middleware is the test's),
// and returns a lookup of each one's actor by its socket id.
func crashable(n *Node) func(socketID string) *actor.PID {
	var mu sync.Mutex
	bySocket := map[string]*actor.PID{}
	n.conns0 = n.conns0.Clone(actor.WithReceiverMiddleware(func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			switch m := env.Message.(type) {
			case crash:
				panic("connection actor: crash requested (supervision test)")
			case *connInitMsg:
				mu.Lock()
				bySocket[m.socketID] = c.Self()
				mu.Unlock()
			}
			next(c, env)
		}
	}))
	return func(socketID string) *actor.PID {
		mu.Lock()
		defer mu.Unlock()
		return bySocket[socketID]
	}
}

// TestPresenceResubscribeAsAnotherUser: a socket that subscribes again with
// other channel_data leaves as its old member and joins as the new one, so
// the channel, its members and the socket's client events agree.
func TestPresenceResubscribeAsAnotherUser(t *testing.T) {
	tn := startNode(t, nil)
	a, b := tn.dial(), tn.dial()
	a.joinAs("presence-room", "alice")
	b.subscribe("presence-room")
	a.Expect("pusher_internal:member_added")

	a.joinAs("presence-room", "mallory")
	if f := b.Expect("pusher_internal:member_removed"); !strings.Contains(f.Data, `"alice"`) {
		t.Fatalf("removed %s", f.Data)
	}
	if f := b.Expect("pusher_internal:member_added"); !strings.Contains(f.Data, `"mallory"`) {
		t.Fatalf("added %s", f.Data)
	}
	users, _ := tn.Node.localUsers(testkit.AppID, "presence-room")
	if strings.Join(users, ",") != "mallory,u-"+b.SocketID && strings.Join(users, ",") != "u-"+b.SocketID+",mallory" {
		t.Fatalf("users %v", users)
	}
	a.Send(`{"event":"client-hi","channel":"presence-room","data":{}}`)
	if f := b.Expect("client-hi"); f.UserID != "mallory" {
		t.Fatalf("client event user_id %q", f.UserID)
	}
}

// TestSubscriptionLimit: a socket may be in at most max_channels_per_connection
// channels; past it the subscribe is refused with 4304 and nothing is spawned.
func TestSubscriptionLimit(t *testing.T) {
	tn := startNode(t, func(c *config.Config) { c.Apps[0].MaxChannelsPerConnection = 3 })
	a := tn.dial()
	for _, ch := range []string{"a", "b", "c"} {
		a.subscribe(ch)
	}
	a.subscribeAs("d", "")
	f := a.Expect("pusher:error")
	if !strings.Contains(f.Data, "4304") || !strings.Contains(f.Data, "3 channels") {
		t.Fatalf("error %s", f.Data)
	}
	a.subscribe("a") // subscribing again to a joined channel is not a new one
	a.Send(`{"event":"pusher:unsubscribe","data":{"channel":"b"}}`)
	a.subscribe("d")
	if tn.Node.reg.lookup(channelKey(testkit.AppID, "b")) != nil {
		waitUntil(t, "b to be vacated", func() bool { return tn.Node.reg.lookup(channelKey(testkit.AppID, "b")) == nil })
	}
}

// TestBacklogRefusesPublishes: past the fan-out backlog bound, Publish
// refuses the whole batch instead of queueing without bound.
func TestBacklogRefusesPublishes(t *testing.T) {
	tn := startNode(t, func(c *config.Config) { c.MaxPublishBacklog = 10 })
	a := tn.dial()
	a.subscribe("news")
	tn.Node.backlog.Add(10) // as if 10 publishes were still queued
	err := tn.Node.Publish(Event{AppID: testkit.AppID, Channels: []string{"news"}, Name: "x", Data: "{}"},
		Event{AppID: testkit.AppID, Channels: []string{"news"}, Name: "y", Data: "{}"})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err %v, want ErrBusy", err)
	}
	tn.Node.backlog.Add(-10)
	tn.marker(a, "news") // neither x nor y came before the marker
	waitUntil(t, "the backlog to drain", func() bool { return tn.Node.Backlog() == 0 })
}

// TestMemoryAfterMassSubscribeAndClose: rounds of 50,000 subscribes to
// distinct channels, after each of which every socket closes. Channel actors,
// their registry entries and the maps that held them must all go: the heap
// returns to its level after the first rounds. (Those set what the
// Go runtime keeps for good: a descriptor per goroutine that ever ran at the
// same time, ~0.4 KB each. The maps that would otherwise keep growing — the
// registry's and protoactor's process registry — are rebuilt.)
func TestMemoryAfterMassSubscribeAndClose(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if os.Getenv("PARLEY_TEST_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	tn := startNode(t, nil)
	heap := func() uint64 {
		var ms runtime.MemStats
		for i := 0; i < 3; i++ {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc // live bytes: HeapInuse adds spans' free room, which varies run to run
	}
	round := func(sockets, perSocket int) {
		compactions := tn.Node.reg.compactions.Load()
		// Socket by socket: the Go runtime keeps a descriptor for every
		// goroutine that ever ran at once, so the peak is kept the same.
		clients := make([]*tClient, sockets)
		for i := range clients {
			w := tn.dialUnowned()
			clients[i] = w
			for j := 0; j < perSocket; j++ {
				w.Send(`{"event":"pusher:subscribe","data":{"channel":"c-` + w.SocketID + `-` + itoa(j) + `"}}`)
			}
			for j := 0; j < perSocket; j++ {
				w.Expect("pusher_internal:subscription_succeeded")
			}
		}
		if got := tn.Node.reg.count(); got != sockets*perSocket {
			t.Fatalf("%d channels, want %d", got, sockets*perSocket)
		}
		for i, w := range clients {
			w.Conn.Close()
			left := (sockets - i - 1) * perSocket
			waitUntil(t, "a socket's channels to stop", func() bool { return tn.Node.reg.count() == left })
		}
		waitUntil(t, "every socket to go", func() bool { return tn.Node.Connections(testkit.AppID) == 0 })
		waitUntil(t, "every channel to stop", func() bool { return tn.Node.reg.count() == 0 })
		waitUntil(t, "the process registry to be compacted", func() bool {
			return tn.Node.reg.compactions.Load() > compactions && !tn.Node.reg.compacting.Load()
		})
	}
	sockets := 50
	if raceEnabled {
		sockets = 20 // the race detector makes each subscribe ~10 times dearer
	}
	start := heap()
	round(sockets, 1000)
	round(sockets, 1000)
	base := heap()
	round(sockets, 1000)
	round(sockets, 1000)
	after := heap()
	if p := os.Getenv("PARLEY_TEST_HEAPPROFILE"); p != "" {
		f, _ := os.Create(p)
		_ = pprof.WriteHeapProfile(f)
		f.Close()
	}
	t.Logf("live heap: at start %d KB, after %d subscribe/close %d KB, after as many more %d KB", start>>10, 2*sockets*1000, base>>10, after>>10)
	// The slack is what the runtime's own records vary by from round to
	// round (under the race detector, mostly goroutine descriptors).
	if slack := max(base/10, 512<<10); after > base+slack {
		t.Fatalf("heap %d KB is more than %d KB over %d KB: it grows with every round", after>>10, slack>>10, base>>10)
	}
	// Without the registry compaction the rounds left ~4 MB more than at
	// start (~8 MB before the registry was narrowed to 2,048 maps); with it
	// about 1 MB.
	if after > start+2<<20 {
		t.Fatalf("heap %d KB is more than 2 MB over the %d KB at start", after>>10, start>>10)
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestBigFanoutInOrder: a channel big enough to be cut into parts for the
// fan-out workers gets every event to every socket, in publish order, both
// when events come one by one (written at once, in parts) and in a burst
// (queued for the writers).
func TestBigFanoutInOrder(t *testing.T) {
	tn := startNode(t, nil)
	subs := 3 * fanoutPart
	if raceEnabled {
		subs = 2*fanoutPart + 1
	}
	if fanoutWorkers() == 0 {
		t.Log("GOMAXPROCS 1: no fan-out workers, every part is sent by the channel")
	}
	clients := make([]*tClient, subs)
	for i := range clients {
		clients[i] = tn.dial()
		clients[i].subscribe("big")
	}
	const events = 40
	for i := range events {
		if err := tn.Node.Publish(Event{AppID: testkit.AppID, Channels: []string{"big"}, Name: "e", Data: itoa(i)}); err != nil {
			t.Fatal(err)
		}
		if i < events/2 {
			// One by one: socket 0 has this event before the next is published.
			if f := clients[0].Expect("e"); f.Data != itoa(i) {
				t.Fatalf("socket 0: event %d: got %+v", i, f)
			}
		}
	}
	for ci, w := range clients {
		from := 0
		if ci == 0 {
			from = events / 2
		}
		for i := from; i < events; i++ {
			if f := w.Next(); f.Event != "e" || f.Data != itoa(i) {
				t.Fatalf("socket %d: event %d: got %+v", ci, i, f)
			}
		}
	}
}

// TestConnActorFitsItsSizeClass guards the memory of an idle socket: a
// ConnectionActor is allocated in the 128-byte size class (timestamps are
// monotonic nanoseconds, not time.Time).
func TestConnActorFitsItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(connActor{}); size > 128 {
		t.Fatalf("connActor is %d bytes, want at most 128", size)
	}
}

// A server-to-user event published as soon as the client has its
// pusher:signin_success is delivered: the socket's subscribe to its
// #server-to-user channel went out before the reply. The test holds the
// ConnectionActor right after it queued the reply, publishes, then lets it go.
func TestServerToUserRightAfterSignin(t *testing.T) {
	tn := startNode(t, nil)
	replied := make(chan struct{})
	release := make(chan struct{})
	// Hold the ConnectionActor right after it handled the signin (a
	// receiver the test adds to the node's Props).
	tn.Node.conns0 = tn.Node.conns0.Clone(actor.WithReceiverMiddleware(func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			next(c, env)
			if m, ok := env.Message.(*inboundMsg); ok && strings.Contains(string(m.data), `"pusher:signin"`) {
				close(replied)
				<-release
			}
		}
	}))
	w := tn.dial()
	userData := `{"id":"u-42"}`
	b, _ := json.Marshal(map[string]any{"event": "pusher:signin", "data": map[string]string{
		"user_data": userData, "auth": pusher.UserAuth(testkit.Key, testkit.Secret, w.SocketID, userData)}})
	w.Send(string(b))
	<-replied
	w.Expect("pusher:signin_success")
	if err := tn.Node.Publish(Event{AppID: testkit.AppID, Channels: []string{pusher.ServerToUserPrefix + "u-42"}, Name: "to-user", Data: "{}"}); err != nil {
		t.Fatal(err)
	}
	close(release)
	w.Expect("to-user")
	tn.marker(w, pusher.ServerToUserPrefix+"u-42")
}
