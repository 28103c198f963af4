package chat

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/push"
	"github.com/parley-chat/parley/push/pushtest"
)

// pushEnv is a chat server whose pushes go to the three test services.
type pushEnv struct {
	*env
	*pushtest.Services
}

// startPushEnv starts the test providers and a server pushing to them,
// one push at a time (so pushes arrive in the order they were decided).
func startPushEnv(t *testing.T, db database, window time.Duration, textLength int) *pushEnv {
	t.Helper()
	pe := &pushEnv{Services: pushtest.StartServices(t)}
	pe.env = startDeps(t, db, nil, func(d *Deps) {
		d.Push = &PushDeps{Providers: pe.Providers, VAPIDPublicKey: pe.Keys.Public, Window: window, TextLength: textLength,
			Dispatch: push.Options{Concurrency: 1, Backoff: 50 * time.Millisecond}}
	})
	t.Cleanup(func() {
		if p := pe.Rec.Problems(); len(p) > 0 {
			t.Errorf("the test providers saw protocol problems: %v", p)
		}
	})
	return pe
}

// devices registers an FCM, an APNs and a Web Push device for p and
// returns the tokens their pushes arrive with.
func (pe *pushEnv) devices(p person) []string {
	t := pe.t
	fcm, apns := "fcm-"+p.Name, strings.Repeat(fmt.Sprintf("%02x", p.ID), 32)
	pe.call("POST", "/api/devices", p.token, map[string]any{"platform": "fcm", "token": fcm}).want(t, http.StatusCreated)
	pe.call("POST", "/api/devices", p.token, map[string]any{"platform": "apns", "token": apns}).want(t, http.StatusCreated)
	id, sub := pe.Web.Subscribe(t)
	pe.call("POST", "/api/devices", p.token, map[string]any{"platform": "webpush", "subscription": sub}).want(t, http.StatusCreated)
	return []string{fcm, apns, id}
}

// waitPush waits for the push of message id to each token, and checks it.
func (pe *pushEnv) waitPush(tokens []string, msgID int64, title, body string, badge int) {
	pe.t.Helper()
	for _, tok := range tokens {
		p := pe.Rec.Wait(pe.t, 15*time.Second, fmt.Sprintf("of message %d to %s", msgID, tok), func(p pushtest.Push) bool {
			return p.Token == tok && p.MessageID == msgID
		})
		if p.Title != title || p.Body != body || p.Badge != badge || p.Collapse != fmt.Sprintf("matter-%d", p.MatterID) {
			pe.t.Fatalf("%s push %+v, want title %q body %q badge %d", p.Platform, p, title, body, badge)
		}
	}
}

// pushesOf counts the pushes to tok (of message id, or any when 0).
func (pe *pushEnv) pushesOf(tok string, msgID int64) int {
	n := 0
	for _, p := range pe.Rec.All() {
		if p.Token == tok && (msgID == 0 || p.MessageID == msgID) {
			n++
		}
	}
	return n
}

// roundTrip: everything the socket sent before has been handled.
func (w *wsClient) roundTrip() {
	w.T.Helper()
	w.Send(`{"event":"pusher:ping","data":{}}`)
	w.Before("pusher:pong", func(f testkit.Frame) bool { return f.Event == "pusher:pong" }, 3*time.Second)
}

func (w *wsClient) appState(t testing.TB, userID int64, state string) {
	t.Helper()
	w.Send(fmt.Sprintf(`{"event":%q,"channel":"private-user.%d","data":{"state":%q}}`, actors.AppStateEvent, userID, state))
	w.roundTrip()
}

// TestPushOfflineOnlineMuted: a member with no socket gets one push per
// message on each device, with the matter's title, the sender and text,
// and the total unread count as the badge; never the sender; a member
// whose app is in the foreground gets none, one whose only socket is
// marked background does; a muted matter gives none. Absence is shown by
// a later message's push arriving first (pushes leave one at a time, in
// the order decided).
func TestPushOfflineOnlineMuted(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		pe := startPushEnv(t, db, time.Nanosecond, 120) // no coalescing here
		ann, bob := pe.user("Ann"), pe.user("Bob")
		m, other := pe.matter("Case 456", ann, bob), pe.matter("Other", ann, bob)
		bobDevs, annDevs := pe.devices(bob), pe.devices(ann)
		if got := pe.call("GET", "/api/push/vapid-public-key", "", nil).want(t, http.StatusOK)["public_key"]; got != pe.Web.VAPIDPublic {
			t.Fatalf("vapid key %v", got)
		}

		// Offline: one push per device, badge 1, then 2 in the other matter.
		first := num(pe.send(ann, m, "Hello Bob")["id"])
		pe.waitPush(bobDevs, first, "Case 456", "Ann: Hello Bob", 1)
		second := num(pe.send(ann, other, "And here")["id"])
		pe.waitPush(bobDevs, second, "Other", "Ann: And here", 2)

		// Online (the user channel, app in the foreground): none. Then
		// marked background: pushed; the foreground message was not.
		ws := pe.dial()
		ws.join(bob, userChannel(bob.ID))
		online := num(pe.send(ann, m, "You are here")["id"])
		pe.settleUnread(bob.ID)
		ws.appState(t, bob.ID, "background")
		bg := num(pe.send(ann, m, "Now in the background")["id"])
		pe.waitPush(bobDevs, bg, "Case 456", "Ann: Now in the background", 4)

		// Muted (Bob's socket still in the background): none; the next
		// message of an unmuted matter is first.
		pe.call("PUT", fmt.Sprintf("/api/matters/%d/settings", m.ID), bob.token, map[string]any{"muted": true}).want(t, http.StatusOK)
		muted := num(pe.send(ann, m, "Muted")["id"])
		after := num(pe.send(ann, other, "Not muted")["id"])
		pe.waitPush(bobDevs, after, "Other", "Ann: Not muted", 6)
		for _, tok := range bobDevs {
			if n := pe.pushesOf(tok, online) + pe.pushesOf(tok, muted); n != 0 {
				t.Fatalf("%d pushes to %s of the foreground or muted message: %+v", n, tok, pe.Rec.All())
			}
			if n := pe.pushesOf(tok, 0); n != 4 {
				t.Fatalf("%d pushes to %s, want 4: %+v", n, tok, pe.Rec.All())
			}
		}
		// The sender got nothing of her own messages: Bob's reply is her first.
		reply := num(pe.send(bob, m, "Thanks")["id"])
		pe.waitPush(annDevs, reply, "Case 456", "Bob: Thanks", 1)
		for _, tok := range annDevs {
			if n := pe.pushesOf(tok, 0); n != 1 {
				t.Fatalf("%d pushes to the sender's %s, want only Bob's reply", n, tok)
			}
		}
	})
}

// TestPushBurstCoalesces: a burst in one matter gives at most one push per
// device per window, the last one with the last text and the full count.
func TestPushBurstCoalesces(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		const window, burst = 2 * time.Second, 10
		pe := startPushEnv(t, db, window, 120)
		ann, bob := pe.user("Ann"), pe.user("Bob")
		m := pe.matter("Busy", ann, bob)
		devs := pe.devices(bob)
		start := time.Now()
		var last int64
		for i := range burst {
			last = num(pe.send(ann, m, fmt.Sprint("message ", i))["id"])
		}
		took := time.Since(start)
		pe.waitPush(devs, last, "Busy", fmt.Sprint("Ann: message ", burst-1), burst)
		for _, tok := range devs {
			// One at once, then at most one per window while sending,
			// and the last one when the window after the burst ended.
			if n, most := pe.pushesOf(tok, 0), 2+int(took/window); n > most || n >= burst {
				t.Fatalf("%d pushes to %s for a burst of %d sent in %s, want at most %d", n, tok, burst, took, most)
			}
		}
	})
}

// TestPushHeldDroppedWhenReadOrForeground: a push held by the window is
// dropped when, before the window ends, the member reads the matter or
// comes to the foreground. Absence is shown by a marker message of another
// matter, sent after the window ended, whose push arrives with none of the
// held ones before it (pushes leave one at a time, in the order decided).
func TestPushHeldDroppedWhenReadOrForeground(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		const window = 3 * time.Second
		pe := startPushEnv(t, db, window, 120)
		ann, bob := pe.user("Ann"), pe.user("Bob")
		read, fg, marker := pe.matter("Read", ann, bob), pe.matter("Foreground", ann, bob), pe.matter("Marker", ann, bob)
		devs := pe.devices(bob)

		// Read: the first message is pushed at once, the second held; Bob
		// reads the matter up to it before the window ends.
		first := num(pe.send(ann, read, "first")["id"])
		pe.waitPush(devs, first, "Read", "Ann: first", 1)
		firstAt := time.Now()
		heldRead := num(pe.send(ann, read, "held, then read")["id"])
		pe.call("PUT", fmt.Sprintf("/api/matters/%d/read", read.ID), bob.token, map[string]any{"up_to_id": heldRead}).want(t, http.StatusOK)

		// Foreground: the same, and Bob's app comes to the foreground.
		second := num(pe.send(ann, fg, "second")["id"])
		pe.waitPush(devs, second, "Foreground", "Ann: second", 1)
		secondAt := time.Now()
		heldFg := num(pe.send(ann, fg, "held, then seen")["id"])
		pe.settleUnread(bob.ID)
		ws := pe.dial()
		ws.join(bob, userChannel(bob.ID))
		if time.Since(firstAt) >= window || time.Since(secondAt) >= window {
			t.Fatalf("the steps took longer than the %s window: nothing was held, so the test shows nothing", window)
		}

		// Both windows are over (the held pushes were due by then); Bob goes
		// to the background and a message of a third matter is pushed.
		time.Sleep(time.Until(secondAt.Add(window + 200*time.Millisecond)))
		ws.appState(t, bob.ID, "background")
		last := num(pe.send(ann, marker, "marker")["id"])
		pe.waitPush(devs, last, "Marker", "Ann: marker", 3)
		for _, tok := range devs {
			if n := pe.pushesOf(tok, heldRead) + pe.pushesOf(tok, heldFg); n != 0 {
				t.Fatalf("%d held pushes to %s went out after a read or the foreground: %+v", n, tok, pe.Rec.All())
			}
		}
	})
}

// TestPushDeadTokenRemoved: a device whose provider says the token is dead
// is removed; the user's other devices still get the push.
func TestPushDeadTokenRemoved(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		pe := startPushEnv(t, db, time.Nanosecond, 0)
		ann, bob := pe.user("Ann"), pe.user("Bob")
		m := pe.matter("M", ann, bob)
		devs := pe.devices(bob)
		pe.FCM.Dead(devs[0])
		pe.Web.Dead(devs[2])
		id := num(pe.send(ann, m, "secret text")["id"])
		// Text length 0: no text at all.
		pe.waitPush(devs[1:2], id, "M", "Ann sent a message", 1)
		deadline := time.Now().Add(10 * time.Second)
		for {
			list := pe.call("GET", "/api/devices", bob.token, nil).want(t, http.StatusOK)["data"].([]any)
			if len(list) == 1 && list[0].(map[string]any)["platform"] == persistence.PlatformAPNs {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dead devices not removed: %v", list)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
