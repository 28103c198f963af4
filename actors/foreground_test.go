package actors

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/parley-chat/parley/internal/testkit"
)

// roundTrip sends a ping and waits for the pong: everything the socket
// sent before has been handled by its ConnectionActor.
func (w *tClient) roundTrip() {
	w.T.Helper()
	w.Send(`{"event":"pusher:ping","data":{}}`)
	w.Expect("pusher:pong")
}

func appStateEvent(channel, state string) string {
	b, _ := json.Marshal(map[string]any{"event": AppStateEvent, "channel": channel, "data": map[string]string{"state": state}})
	return string(b)
}

// TestForegroundSockets: a socket of the chat app on the user's own channel
// makes the user foreground until it is marked background, leaves the
// channel or closes; other channels and other apps' sockets never count;
// the app-state event reaches no other socket; each 0↔1 change is
// reported to the cluster once.
func TestForegroundSockets(t *testing.T) {
	// A node that was not told the chat app: nothing counts.
	untracked := startNode(t, nil)
	w := untracked.dial()
	w.subscribe(UserChannelPrefix + "7")
	w.roundTrip()
	if untracked.Node.UserForeground(testkit.AppID, "7") {
		t.Fatal("foreground on a node that was not told the chat app")
	}

	tn := startNode(t, nil)
	tn.Node.TrackForeground(testkit.AppID) // before it serves, as the chat does
	var mu sync.Mutex
	var reports []string
	tn.Node.fg.report = func(appID, userID string, on bool) {
		mu.Lock()
		reports = append(reports, appID+"/"+userID+map[bool]string{true: "+", false: "-"}[on])
		mu.Unlock()
	}
	fg := func() bool { return tn.Node.UserForeground(testkit.AppID, "7") }

	a, b := tn.dial(), tn.dial()
	a.subscribe("private-matter.1")
	a.roundTrip()
	if fg() {
		t.Fatal("a matter channel made the user foreground")
	}
	a.subscribe(UserChannelPrefix + "7")
	b.subscribe(UserChannelPrefix + "7")
	a.roundTrip()
	if !fg() {
		t.Fatal("a socket on the user channel is not foreground")
	}
	a.Send(appStateEvent(UserChannelPrefix+"7", "background"))
	a.roundTrip()
	if !fg() {
		t.Fatal("one of two sockets in the background made the user background")
	}
	b.Send(appStateEvent(UserChannelPrefix+"7", "background"))
	b.roundTrip()
	if fg() {
		t.Fatal("both sockets background, still foreground")
	}
	// The event went to nobody: a marker published after it comes first.
	tn.marker(a, UserChannelPrefix+"7")
	b.Expect("marker")
	b.Send(appStateEvent(UserChannelPrefix+"7", "foreground"))
	b.roundTrip()
	if !fg() {
		t.Fatal("back in the foreground, not counted")
	}
	b.Send(`{"event":"pusher:unsubscribe","data":{"channel":"` + UserChannelPrefix + `7"}}`)
	b.roundTrip()
	if fg() {
		t.Fatal("unsubscribed, still foreground")
	}
	a.Send(appStateEvent(UserChannelPrefix+"7", "foreground"))
	a.roundTrip()
	if !fg() {
		t.Fatal("a's foreground not counted")
	}
	a.Conn.Close()
	waitUntil(t, "the closed socket to stop counting", func() bool { return !fg() })
	mu.Lock()
	defer mu.Unlock()
	want := `[app-1/7+ app-1/7- app-1/7+ app-1/7- app-1/7+ app-1/7-]`
	if got := fmt.Sprint(reports); got != want {
		t.Fatalf("reports %s, want %s", got, want)
	}
}

// TestForegroundMirrored: what other processes report counts until they
// say otherwise, send a snapshot without it, or are forgotten.
func TestForegroundMirrored(t *testing.T) {
	tn := startNode(t, nil)
	n := tn.Node
	n.MirrorForeground("p2", testkit.AppID, "9", true)
	n.MirrorForeground("p3", testkit.AppID, "9", true)
	if !n.UserForeground(testkit.AppID, "9") || n.UserForeground(testkit.AppID, "8") || n.UserForeground("other", "9") {
		t.Fatal("mirrored state wrong")
	}
	n.MirrorForeground("p2", testkit.AppID, "9", false)
	n.MirrorForegroundAll("p3", map[string]bool{ChannelKey(testkit.AppID, "8"): true})
	if n.UserForeground(testkit.AppID, "9") || !n.UserForeground(testkit.AppID, "8") {
		t.Fatal("snapshot not applied")
	}
	n.ForgetProcess("p3")
	if n.UserForeground(testkit.AppID, "8") {
		t.Fatal("a forgotten process still counts")
	}
}
