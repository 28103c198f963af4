package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/pusher"
)

func TestConnectionEstablishedShape(t *testing.T) {
	s := startServer(t, nil)
	w := s.dialRaw("/app/"+testkit.Key+"?protocol=7", nil)
	f := w.Next()
	m := f.DataMap(t)
	id, _ := m["socket_id"].(string)
	var a, b uint64
	if _, err := fmt.Sscanf(id, "%d.%d", &a, &b); err != nil || id != fmt.Sprintf("%d.%d", a, b) {
		t.Fatalf("socket_id %q is not digits.digits", id)
	}
	if to, _ := m["activity_timeout"].(float64); to != 120 {
		t.Fatalf("activity_timeout %v", m["activity_timeout"])
	}
}

// TestAcceptedProtocols connects as the official Java/Android SDK does (its
// protocol number is fixed at 5), and with every other live version.
func TestAcceptedProtocols(t *testing.T) {
	s := startServer(t, nil)
	for _, path := range []string{
		"/app/" + testkit.Key + "?client=java-client&protocol=5&version=2.4.4",
		"/app/" + testkit.Key + "?protocol=4",
		"/app/" + testkit.Key + "?protocol=6&client=ios",
		"/app/" + testkit.Key + "?protocol=7&client=js&version=8.4.0",
	} {
		w := s.dialRaw(path, nil)
		w.T = t
		w.Expect("pusher:connection_established")
		w.Send(`{"event":"pusher:subscribe","data":{"channel":"mobile"}}`)
		w.Expect("pusher_internal:subscription_succeeded")
		w.Conn.Close()
	}
}

func TestRefusedConnections(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.Apps[0].AllowedOrigins = []string{"https://chat.example.com", "*.example.org"}
		c.Apps[0].MaxConnections = 2
	})
	cases := []struct {
		name   string
		path   string
		origin string
		code   int
	}{
		{"unknown key", "/app/nope?protocol=7", "", 4001},
		{"retired protocol", "/app/" + testkit.Key + "?protocol=3", "", 4007},
		{"bad protocol", "/app/" + testkit.Key + "?protocol=x", "", 4007},
		{"no protocol", "/app/" + testkit.Key + "?client=js", "", 4007},
		{"origin not allowed", "/app/" + testkit.Key + "?protocol=7", "https://evil.example.net", 4009},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			if tc.origin != "" {
				hdr.Set("Origin", tc.origin)
			}
			w := s.dialRaw(tc.path, hdr)
			w.T = t
			w.expectError(tc.code)
			if got := w.ExpectClose(5 * time.Second); got != tc.code {
				t.Fatalf("close code %d, want %d", got, tc.code)
			}
		})
	}
	t.Run("allowed origins", func(t *testing.T) {
		for _, o := range []string{"https://chat.example.com", "https://a.example.org"} {
			hdr := http.Header{"Origin": {o}}
			w := s.dialRaw("/app/"+testkit.Key+"?protocol=7", hdr)
			w.Expect("pusher:connection_established")
			w.Conn.Close()
		}
	})
	t.Run("max connections", func(t *testing.T) {
		waitFor(t, func() bool { return s.node.Connections(testkit.AppID) == 0 })
		a, b := s.dial(), s.dial()
		_ = a
		_ = b
		w := s.dialRaw("/app/"+testkit.Key+"?protocol=7", nil)
		w.expectError(4100)
		if got := w.ExpectClose(5 * time.Second); got != 4100 {
			t.Fatalf("close %d", got)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPingPong(t *testing.T) {
	s := startServer(t, nil)
	w := s.dial()
	w.Send(`{"event":"pusher:ping","data":{}}`)
	w.Expect("pusher:pong")
}

func TestActivityTimeoutPingsThenCloses4201(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.Apps[0].ActivityTimeout = 1
		c.PongTimeout = 300 * time.Millisecond
	})
	// A client that answers stays connected.
	good := s.dial()
	good.Expect("pusher:ping")
	good.Send(`{"event":"pusher:pong","data":{}}`)
	// A client that never answers is closed with 4201.
	bad := s.dial()
	bad.Expect("pusher:ping")
	if code := bad.ExpectClose(5 * time.Second); code != 4201 {
		t.Fatalf("close %d, want 4201", code)
	}
	good.Expect("pusher:ping") // pinged again after another idle period, still open
}

func TestPrivateChannelAuth(t *testing.T) {
	s := startServer(t, nil)
	w := s.dial()
	w.Subscribe("private-a", testkit.Key+":deadbeef", "")
	f := w.Expect("pusher:subscription_error")
	if f.Channel != "private-a" || f.DataMap(t)["status"].(float64) != 401 {
		t.Fatalf("got %+v", f)
	}
	// Signature for another socket is refused too.
	w.Subscribe("private-a", pusher.ChannelAuth(testkit.Key, testkit.Secret, "1.1", "private-a", ""), "")
	w.Expect("pusher:subscription_error")
	// Missing auth.
	w.Subscribe("private-a", "", "")
	w.Expect("pusher:subscription_error")
	w.mustSubscribe("private-a")
	w.mustSubscribe("private-encrypted-a")
	s.trigger("private-a", "e", "x")
	if f := w.Expect("e"); f.Data != "x" {
		t.Fatalf("got %+v", f)
	}
}

func TestChannelNameValidation(t *testing.T) {
	s := startServer(t, nil)
	w := s.dial()
	for _, ch := range []string{"bad channel", "ümlaut", strings.Repeat("a", 201), "#x", "#server-to-user-", ""} {
		w.Subscribe(ch, "", "")
		w.expectError(int(pusher.CodeSubscriptionRefused))
	}
	w.mustSubscribe(strings.Repeat("a", 200))
	w.mustSubscribe("-_=@,.;AZaz09")
}

func TestPresenceMembersPerUser(t *testing.T) {
	s := startServer(t, nil)
	ch := "presence-room"
	join := func(w *wsClient, uid string) frame {
		cd := `{"user_id":"` + uid + `","user_info":{"name":"` + uid + `"}}`
		w.Subscribe(ch, pusher.ChannelAuth(testkit.Key, testkit.Secret, w.SocketID, ch, cd), cd)
		return w.Expect("pusher_internal:subscription_succeeded")
	}
	obs := s.dial()
	f := join(obs, "observer")
	p := f.DataMap(t)["presence"].(map[string]any)
	if p["count"].(float64) != 1 || len(p["ids"].([]any)) != 1 || p["hash"].(map[string]any)["observer"].(map[string]any)["name"] != "observer" {
		t.Fatalf("presence data %q", f.Data)
	}

	u1a, u1b := s.dial(), s.dial()
	join(u1a, "u1")
	added := obs.Expect("pusher_internal:member_added")
	if m := added.DataMap(t); m["user_id"] != "u1" || m["user_info"].(map[string]any)["name"] != "u1" {
		t.Fatalf("member_added %q", added.Data)
	}
	f = join(u1b, "u1") // second socket of the same user: no new member_added
	if c := f.DataMap(t)["presence"].(map[string]any)["count"].(float64); c != 2 {
		t.Fatalf("count %v, want 2 users", c)
	}
	// The channel sent subscription_succeeded and any member_added in one step.
	s.expectNothingBeforeMarker(obs, ch)

	st, body := s.api("GET", "/apps/"+testkit.AppID+"/channels/"+ch, map[string][]string{"info": {"user_count,subscription_count"}}, nil)
	if st != 200 || body["user_count"].(float64) != 2 || body["subscription_count"].(float64) != 3 || body["occupied"] != true {
		t.Fatalf("channel info %d %v", st, body)
	}
	st, body = s.api("GET", "/apps/"+testkit.AppID+"/channels/"+ch+"/users", nil, nil)
	if st != 200 || len(body["users"].([]any)) != 2 {
		t.Fatalf("users %d %v", st, body)
	}

	u1a.Conn.Close() // one of two sockets leaves: still a member
	// The channel counts the departure in the step that would send
	// member_removed; only then is a marker ordered after it.
	waitFor(t, func() bool {
		_, body := s.api("GET", "/apps/"+testkit.AppID+"/channels/"+ch, map[string][]string{"info": {"subscription_count"}}, nil)
		n, _ := body["subscription_count"].(float64)
		return n == 2
	})
	s.expectNothingBeforeMarker(obs, ch)
	u1b.Send(`{"event":"pusher:unsubscribe","data":{"channel":"presence-room"}}`)
	removed := obs.Expect("pusher_internal:member_removed")
	if removed.DataMap(t)["user_id"] != "u1" {
		t.Fatalf("member_removed %q", removed.Data)
	}
}

func TestPresenceChannelDataErrors(t *testing.T) {
	s := startServer(t, nil)
	w := s.dial()
	ch := "presence-x"
	for _, cd := range []string{"", "not json", `{"user_info":{}}`, `{"user_id":""}`, `{"user_id":{"a":1}}`,
		`{"user_id":"` + strings.Repeat("u", 129) + `"}`, `{"user_id":"u","user_info":"` + strings.Repeat("i", 1100) + `"}`} {
		w.Subscribe(ch, pusher.ChannelAuth(testkit.Key, testkit.Secret, w.SocketID, ch, cd), cd)
		f := w.Expect("pusher:subscription_error")
		if f.Channel != ch {
			t.Fatalf("channel_data %q: %+v", cd, f)
		}
	}
	// Numeric user ids (Laravel's) are accepted.
	cd := `{"user_id":42,"user_info":{"name":"n"}}`
	w.Subscribe(ch, pusher.ChannelAuth(testkit.Key, testkit.Secret, w.SocketID, ch, cd), cd)
	f := w.Expect("pusher_internal:subscription_succeeded")
	if !strings.Contains(f.Data, `"42"`) {
		t.Fatalf("numeric id: %q", f.Data)
	}
}

func TestPresenceLimit(t *testing.T) {
	// The default is Pusher's 100; an app may set its own.
	for _, limit := range []int{0, 3} {
		want := limit
		if want == 0 {
			want = config.DefaultMaxPresenceMembers
		}
		s := startServer(t, func(c *config.Config) {
			if limit > 0 {
				c.Apps[0].MaxPresenceMembers = limit
			}
		})
		ch := "presence-full"
		for i := 0; i <= want; i++ {
			w := s.dial() // stays open until the test ends (dial's cleanup)
			cd := fmt.Sprintf(`{"user_id":"u%d"}`, i)
			w.Subscribe(ch, pusher.ChannelAuth(testkit.Key, testkit.Secret, w.SocketID, ch, cd), cd)
			if i < want {
				w.Expect("pusher_internal:subscription_succeeded")
			} else {
				f := w.Expect("pusher:subscription_error")
				if !strings.Contains(f.Data, fmt.Sprintf("limit of %d members", want)) {
					t.Fatalf("limit %d: got %q", want, f.Data)
				}
			}
		}
	}
}

func TestClientEvents(t *testing.T) {
	s := startServer(t, nil)
	a, b := s.dial(), s.dial()
	a.mustSubscribe("public")
	a.Send(`{"event":"client-x","channel":"public","data":{}}`)
	a.expectError(int(pusher.CodeClientEventRefused))
	a.Send(`{"event":"client-x","channel":"private-notjoined","data":{}}`)
	a.expectError(int(pusher.CodeClientEventRefused))

	a.mustSubscribe("private-chat")
	b.mustSubscribe("private-chat")
	a.Send(`{"event":"client-typing","channel":"private-chat","data":{"typing":true}}`)
	f := b.Expect("client-typing")
	if f.Channel != "private-chat" || f.Data != `{"typing":true}` {
		t.Fatalf("got %+v", f)
	}
	// Not echoed: the channel relays b's client event after a's, so it is
	// a's next frame.
	m := newMarker()
	b.Send(`{"event":"client-` + markerEvent + `","channel":"private-chat","data":"` + m + `"}`)
	a.expectMarker(m)

	a.mustSubscribe("presence-chat")
	b.mustSubscribe("presence-chat")
	a.Expect("pusher_internal:member_added")
	a.Send(`{"event":"client-typing","channel":"presence-chat","data":"hi"}`)
	f = b.Expect("client-typing")
	if f.UserID != "u-"+a.SocketID || f.Data != "hi" {
		t.Fatalf("presence client event %+v", f)
	}

	// Too large.
	big := strings.Repeat("x", 11*1024)
	a.Send(`{"event":"client-big","channel":"private-chat","data":"` + big + `"}`)
	a.expectError(int(pusher.CodeEventTooLarge))
}

func TestClientEventRateLimit(t *testing.T) {
	s := startServer(t, nil)
	a := s.subscriber("private-r")
	b := s.subscriber("private-r")
	for i := 0; i < 11; i++ {
		a.Send(`{"event":"client-n","channel":"private-r","data":{}}`)
	}
	a.expectError(4301) // the 11th is refused, so it went nowhere before this
	for i := 0; i < 10; i++ {
		b.Expect("client-n")
	}
	s.expectNothingBeforeMarker(b, "private-r")
}

func TestClientEventsDisabled(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Apps[0].ClientEvents = false })
	a := s.subscriber("private-r")
	a.Send(`{"event":"client-n","channel":"private-r","data":{}}`)
	f := a.expectError(int(pusher.CodeClientEventRefused))
	if !strings.Contains(f.Data, "disabled") {
		t.Fatalf("got %q", f.Data)
	}
}

func TestMalformedFramesNeverHurtOthers(t *testing.T) {
	s := startServer(t, nil)
	bystander := s.subscriber("news")
	w := s.dial()
	for _, bad := range []string{
		`not json`, `[]`, `{"event":5}`, `{"event":"pusher:subscribe","data":"x"}`,
		`{"event":"pusher:subscribe","data":{"channel":5}}`, `{"event":"pusher:subscribe"}`,
		`{"event":"pusher:subscribe","data":{"channel":"private-x","auth":7}}`, `{"event":"pusher:unsubscribe","data":[]}`,
		`{"event":"pusher:signin","data":3}`, `{"event":"unknown"}`, `{}`, `{"event":"client-x","channel":{"a":1}}`,
		"\x00", `{"event":"pusher:subscribe","data":{"channel":"a","channel_data":{"user_id":1}}}`,
	} {
		w.Send(bad)
		w.expectError(int(pusher.CodeInvalidMessage))
	}
	// Both sockets still work.
	w.mustSubscribe("news")
	s.trigger("news", "still", "ok")
	w.Expect("still")
	bystander.Expect("still")
}

// TestInvalidUTF8ClosesOnlyThatSocket: a text frame that is not UTF-8 breaks
// RFC 6455 and closes that socket with 1007; others are unaffected.
func TestInvalidUTF8ClosesOnlyThatSocket(t *testing.T) {
	closesOnlyThatSocket(t, 1007, func(w *wsClient) {
		w.Send("{\"event\":\"pusher:ping\",\"data\":\"\xff\xfe\"}")
	})
}

// TestOversizeFrameClosesOnlyThatSocket: 1009, message too big.
func TestOversizeFrameClosesOnlyThatSocket(t *testing.T) {
	closesOnlyThatSocket(t, 1009, func(w *wsClient) {
		// The server may close before the whole frame is written.
		_ = w.Conn.WriteMessage(1, []byte(`{"event":"client-x","channel":"private-a","data":"`+strings.Repeat("x", 100<<10)+`"}`))
	})
}

// closesOnlyThatSocket: what send writes breaks the protocol, and the
// server closes that socket with code; another socket carries on.
func closesOnlyThatSocket(t *testing.T, code int, send func(w *wsClient)) {
	t.Helper()
	s := startServer(t, nil)
	bystander := s.subscriber("news")
	w := s.dial()
	send(w)
	if got := w.ExpectClose(5 * time.Second); got != code {
		t.Fatalf("close %d, want %d", got, code)
	}
	s.trigger("news", "still", "ok")
	bystander.Expect("still")
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	s := startServer(t, nil)
	w := s.subscriber("news")
	w.Send(`{"event":"pusher:unsubscribe","data":{"channel":"news"}}`)
	w.Send(`{"event":"pusher:ping","data":{}}`)
	w.Expect("pusher:pong")
	s.trigger("news", "gone", "x")
	// Subscribing again is the marker: the channel handles the subscribe
	// after the publish, so a "gone" still due to w would come first.
	w.mustSubscribe("news")
	w.Send(`{"event":"pusher:unsubscribe","data":{"channel":"news"}}`)
	// The channel is vacated and disappears from the API.
	waitFor(t, func() bool {
		_, body := s.api("GET", "/apps/"+testkit.AppID+"/channels", nil, nil)
		return len(body["channels"].(map[string]any)) == 0
	})
}

func TestCacheChannels(t *testing.T) {
	s := startServer(t, nil)
	a := s.subscriber("cache-prices")
	if f := a.Expect("pusher:cache_miss"); f.Channel != "cache-prices" {
		t.Fatalf("cache_miss %+v", f)
	}
	s.trigger("cache-prices", "price", "1")
	a.Expect("price")
	s.trigger("cache-prices", "price", "2")
	a.Expect("price")
	b := s.subscriber("cache-prices")
	if f := b.Expect("price"); f.Data != "2" {
		t.Fatalf("replayed %+v", f)
	}
	// An unoccupied cache channel keeps its last event too.
	s.trigger("cache-empty", "v", "kept")
	c := s.subscriber("cache-empty")
	if f := c.Expect("v"); f.Data != "kept" {
		t.Fatalf("got %+v", f)
	}
}

func TestSigninAndServerToUser(t *testing.T) {
	s := startServer(t, nil)
	w := s.dial()
	other := s.dial()
	ud := `{"id":"7","name":"Ann"}`
	w.Send(map[string]any{"event": "pusher:signin", "data": map[string]string{"user_data": ud, "auth": pusher.UserAuth(testkit.Key, testkit.Secret, w.SocketID, ud)}})
	f := w.Expect("pusher:signin_success")
	if f.DataMap(t)["user_data"] != ud {
		t.Fatalf("signin_success %q", f.Data)
	}
	// pusher-js subscribes to its server-to-user channel itself.
	w.Subscribe("#server-to-user-7", "", "")
	w.Expect("pusher_internal:subscription_succeeded")
	// Nobody else may.
	other.Subscribe("#server-to-user-7", "", "")
	other.Expect("pusher:subscription_error")

	s.trigger("#server-to-user-7", "notice", "hi")
	if f := w.Expect("notice"); f.Channel != "#server-to-user-7" || f.Data != "hi" {
		t.Fatalf("got %+v", f)
	}
	// other is in no channel of user 7. Once w has a second event, the
	// channel has finished fanning out the first; then a marker on a
	// channel of other's own must be its next frame.
	s.trigger("#server-to-user-7", "notice", "again")
	w.Expect("notice")
	other.mustSubscribe("lobby")
	s.expectNothingBeforeMarker(other, "lobby")

	st, _ := s.api("POST", "/apps/"+testkit.AppID+"/users/7/terminate_connections", nil, map[string]any{})
	if st != 200 {
		t.Fatalf("terminate %d", st)
	}
	w.expectError(4009)
	if code := w.ExpectClose(5 * time.Second); code != 4009 {
		t.Fatalf("close %d", code)
	}
}

func TestSigninErrors(t *testing.T) {
	s := startServer(t, nil)
	w := s.dial()
	ud := `{"name":"no id"}`
	w.Send(map[string]any{"event": "pusher:signin", "data": map[string]string{"user_data": ud, "auth": pusher.UserAuth(testkit.Key, testkit.Secret, w.SocketID, ud)}})
	w.expectError(int(pusher.CodeSigninRefused))
	ud = `{"id":"1"}`
	w.Send(map[string]any{"event": "pusher:signin", "data": map[string]string{"user_data": ud, "auth": testkit.Key + ":bad"}})
	w.expectError(4009)
	if code := w.ExpectClose(5 * time.Second); code != 4009 {
		t.Fatalf("close %d", code)
	}

	off := startServer(t, func(c *config.Config) { c.Apps[0].UserAuthentication = false })
	w = off.dial()
	w.Send(map[string]any{"event": "pusher:signin", "data": map[string]string{"user_data": ud, "auth": pusher.UserAuth(testkit.Key, testkit.Secret, w.SocketID, ud)}})
	w.expectError(int(pusher.CodeSigninRefused))
}

func TestSlowConsumerIsDisconnected(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.MaxPendingBytes = 64 << 10 })
	// A raw client that reads only what the test tells it to.
	slow, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.url, "http")+"/app/"+testkit.Key+"?protocol=7", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, b, err := slow.ReadMessage(); err != nil || !strings.Contains(string(b), "connection_established") {
		t.Fatalf("%s %v", b, err)
	}
	_ = slow.WriteMessage(websocket.TextMessage, []byte(`{"event":"pusher:subscribe","data":{"channel":"firehose"}}`))
	if _, b, err := slow.ReadMessage(); err != nil || !strings.Contains(string(b), "subscription_succeeded") {
		t.Fatalf("%s %v", b, err)
	}
	fast := s.subscriber("firehose")

	// The fast socket reads every event; the slow one never reads, so once
	// the kernel's buffers are full its queue passes 64 KiB.
	data := strings.Repeat("z", 9000)
	for i := 0; i < 3000; i++ {
		s.node.Publish(actors.Event{AppID: testkit.AppID, Channels: []string{"firehose"}, Name: "blob", Data: data})
		if f := fast.Next(); f.Event != "blob" {
			t.Fatalf("fast reader got %+v", f)
		}
	}
	// Reading now, the slow socket finds what fitted, then a 4101 close.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := slow.ReadMessage()
		if err == nil {
			continue
		}
		ce, ok := err.(*websocket.CloseError)
		if !ok || ce.Code != int(pusher.CodeSlowConsumer) {
			t.Fatalf("slow consumer ended with %v, want close 4101", err)
		}
		break
	}
}

func TestDrainClosesWith4200(t *testing.T) {
	s := startServer(t, nil)
	a, b := s.dial(), s.dial()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		done <- s.node.Drain(ctx)
	}()
	for _, w := range []*wsClient{a, b} {
		if code := w.ExpectClose(5 * time.Second); code != 4200 {
			t.Fatalf("close %d, want 4200", code)
		}
		w.Conn.Close()
	}
	if err := <-done; err != nil {
		t.Fatalf("drain: %v", err)
	}
	st, body := s.rawAPI("GET", s.url+"/up", nil)
	if st != 503 {
		t.Fatalf("/up while draining: %d %v", st, body)
	}
	w := s.dialRaw("/app/"+testkit.Key+"?protocol=7", nil)
	w.expectError(4200)
}

func signin(t *testing.T, w *wsClient, ud string) {
	t.Helper()
	w.Send(map[string]any{"event": "pusher:signin", "data": map[string]string{"user_data": ud, "auth": pusher.UserAuth(testkit.Key, testkit.Secret, w.SocketID, ud)}})
	w.Expect("pusher:signin_success")
}

func TestWatchlistEvents(t *testing.T) {
	s := startServer(t, nil)
	watcher, two := s.dial(), s.dial()
	signin(t, watcher, `{"id":"1","watchlist":["2","3"]}`)
	// Nobody watched is online yet: the marker is user 2 signing in, whose
	// online event must be watcher's next frame. The pong shows watcher's
	// signin was fully handled, so the watchlist actor has it before two's.
	watcher.Send(`{"event":"pusher:ping","data":{}}`)
	watcher.Expect("pusher:pong")
	signin(t, two, `{"id":"2"}`)
	f := watcher.Expect("pusher_internal:watchlist_events")
	if f.Data != `{"events":[{"name":"online","user_ids":["2"]}]}` {
		t.Fatalf("online: %q", f.Data)
	}
	late := s.dial()
	signin(t, late, `{"id":"9","watchlist":["2"]}`)
	if f := late.Expect("pusher_internal:watchlist_events"); !strings.Contains(f.Data, `"online","user_ids":["2"]`) {
		t.Fatalf("already online: %q", f.Data)
	}

	two.Conn.Close()
	for _, w := range []*wsClient{watcher, late} {
		if f := w.Expect("pusher_internal:watchlist_events"); f.Data != `{"events":[{"name":"offline","user_ids":["2"]}]}` {
			t.Fatalf("offline: %q", f.Data)
		}
	}
	bad := s.dial()
	ud := `{"id":"5","watchlist":"2"}`
	bad.Send(map[string]any{"event": "pusher:signin", "data": map[string]string{"user_data": ud, "auth": pusher.UserAuth(testkit.Key, testkit.Secret, bad.SocketID, ud)}})
	bad.expectError(int(pusher.CodeSigninRefused))
}
