package httpapi

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testkit"
	"github.com/parley-chat/parley/pusher"
)

func TestTriggerToManyChannelsAndExclusion(t *testing.T) {
	s := startServer(t, nil)
	a := s.subscriber("c1")
	b := s.subscriber("c2", "c1")
	st, body := s.api("POST", "/apps/"+testkit.AppID+"/events", nil,
		map[string]any{"name": "e", "channels": []string{"c1", "c2"}, "data": "d", "socket_id": b.SocketID})
	if st != 200 || len(body) != 0 {
		t.Fatalf("%d %v", st, body)
	}
	a.Expect("e")
	s.expectNothingBeforeMarker(b, "c1", "c2") // excluded from both channels

	// Data that is not a string is passed on as its JSON.
	st, _ = s.api("POST", "/apps/"+testkit.AppID+"/events", nil, `{"name":"o","channel":"c1","data":{"k":[1,2]}}`)
	if st != 200 {
		t.Fatal(st)
	}
	if f := a.Expect("o"); f.Data != `{"k":[1,2]}` {
		t.Fatalf("got %q", f.Data)
	}
}

func TestTriggerInfo(t *testing.T) {
	s := startServer(t, nil)
	s.subscriber("presence-p")
	st, body := s.api("POST", "/apps/"+testkit.AppID+"/events", nil,
		map[string]any{"name": "e", "channels": []string{"presence-p", "c"}, "data": "d", "info": "user_count,subscription_count"})
	if st != 200 {
		t.Fatalf("%d %v", st, body)
	}
	ch := body["channels"].(map[string]any)
	if p := ch["presence-p"].(map[string]any); p["user_count"].(float64) != 1 || p["subscription_count"].(float64) != 1 {
		t.Fatalf("%v", body)
	}
	if c := ch["c"].(map[string]any); c["subscription_count"].(float64) != 0 || c["user_count"] != nil {
		t.Fatalf("%v", body)
	}
}

func TestBatchEvents(t *testing.T) {
	s := startServer(t, nil)
	a := s.subscriber("b1", "b2")
	st, body := s.api("POST", "/apps/"+testkit.AppID+"/batch_events", nil, map[string]any{"batch": []map[string]any{
		{"name": "x", "channel": "b1", "data": "1"},
		{"name": "y", "channel": "b2", "data": "2", "info": "subscription_count"},
	}})
	if st != 200 {
		t.Fatalf("%d %v", st, body)
	}
	batch := body["batch"].([]any)
	if len(batch) != 2 || batch[1].(map[string]any)["subscription_count"].(float64) != 1 {
		t.Fatalf("%v", body)
	}
	// Order is kept per channel; these are two channels.
	got := map[string]bool{a.Next().Event: true, a.Next().Event: true}
	if !got["x"] || !got["y"] {
		t.Fatalf("got %v", got)
	}

	var eleven []map[string]any
	for i := 0; i < 11; i++ {
		eleven = append(eleven, map[string]any{"name": "x", "channel": "b1", "data": "1"})
	}
	if st, body := s.api("POST", "/apps/"+testkit.AppID+"/batch_events", nil, map[string]any{"batch": eleven}); st != 400 || !strings.Contains(body["error"].(string), "limit") {
		t.Fatalf("%d %v", st, body)
	}
}

func TestHTTPAPIErrors(t *testing.T) {
	s := startServer(t, nil)
	ev := func(extra map[string]any) map[string]any {
		m := map[string]any{"name": "e", "channel": "c", "data": "d"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	hundredOne := make([]string, 101)
	for i := range hundredOne {
		hundredOne[i] = fmt.Sprintf("c%d", i)
	}
	cases := []struct {
		name   string
		body   any
		status int
	}{
		{"not json", "{nope", 400},
		{"empty", "", 400},
		{"no name", map[string]any{"channel": "c", "data": "d"}, 400},
		{"name wrong type", map[string]any{"name": 3, "channel": "c", "data": "d"}, 400},
		{"no channel", map[string]any{"name": "e", "data": "d"}, 400},
		{"no data", map[string]any{"name": "e", "channel": "c"}, 400},
		{"bad channel", ev(map[string]any{"channel": "a b"}), 400},
		{"101 channels", map[string]any{"name": "e", "channels": hundredOne, "data": "d"}, 400},
		{"encrypted plus another", map[string]any{"name": "e", "channels": []string{"private-encrypted-a", "b"}, "data": "d"}, 400},
		{"data too large", ev(map[string]any{"data": strings.Repeat("x", 10*1024+1)}), 413},
		{"bad socket id", ev(map[string]any{"socket_id": "abc"}), 400},
		{"bad info", ev(map[string]any{"info": "bogus"}), 400},
		{"ok at the limit", ev(map[string]any{"data": strings.Repeat("x", 10*1024)}), 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body := s.api("POST", "/apps/"+testkit.AppID+"/events", nil, tc.body)
			if st != tc.status {
				t.Fatalf("status %d, want %d: %v", st, tc.status, body)
			}
			if st != 200 && body["error"] == "" {
				t.Fatalf("no error message: %v", body)
			}
		})
	}

	body := []byte(`{"name":"e","channel":"c","data":"d"}`)
	path := "/apps/" + testkit.AppID + "/events"
	t.Run("wrong secret", func(t *testing.T) {
		st, res := s.rawAPI("POST", signedURL(s.url, "POST", path, nil, body, "wrong"), body)
		if st != 401 || !strings.Contains(res["error"].(string), "signature") {
			t.Fatalf("%d %v", st, res)
		}
	})
	t.Run("unknown app", func(t *testing.T) {
		st, _ := s.rawAPI("POST", signedURL(s.url, "POST", "/apps/nope/events", nil, body, testkit.Secret), body)
		if st != 404 {
			t.Fatal(st)
		}
	})
	t.Run("tampered body", func(t *testing.T) {
		u := signedURL(s.url, "POST", path, nil, body, testkit.Secret)
		st, res := s.rawAPI("POST", u, []byte(`{"name":"x","channel":"c","data":"d"}`))
		if st != 401 || !strings.Contains(res["error"].(string), "body_md5") {
			t.Fatalf("%d %v", st, res)
		}
	})
	t.Run("stale timestamp", func(t *testing.T) {
		q := url.Values{"auth_key": {testkit.Key}, "auth_version": {"1.0"}, "auth_timestamp": {strconv.FormatInt(time.Now().Add(-11*time.Minute).Unix(), 10)}}
		q.Set("body_md5", md5hex(body))
		q.Set("auth_signature", pusher.RequestSignature(testkit.Secret, "POST", path, q))
		st, res := s.rawAPI("POST", s.url+path+"?"+q.Encode(), body)
		if st != 401 || !strings.Contains(res["error"].(string), "auth_timestamp") {
			t.Fatalf("%d %v", st, res)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		st, _ := s.rawAPI("POST", s.url+path, body)
		if st != 401 {
			t.Fatal(st)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		u := strings.Replace(signedURL(s.url, "POST", path, nil, body, testkit.Secret), "auth_key="+testkit.Key, "auth_key=other", 1)
		if st, _ := s.rawAPI("POST", u, body); st != 401 {
			t.Fatal(st)
		}
	})
}

func md5hex(b []byte) string {
	u := signedURL("", "POST", "/", nil, b, testkit.Secret)
	q, _ := url.ParseQuery(u[strings.IndexByte(u, '?')+1:])
	return q.Get("body_md5")
}

func TestChannelQueries(t *testing.T) {
	s := startServer(t, nil)
	s.subscriber("public-1", "private-2", "presence-one")
	s.subscriber("presence-one")

	st, body := s.api("GET", "/apps/"+testkit.AppID+"/channels", nil, nil)
	if st != 200 || len(body["channels"].(map[string]any)) != 3 {
		t.Fatalf("%d %v", st, body)
	}
	st, body = s.api("GET", "/apps/"+testkit.AppID+"/channels", url.Values{"filter_by_prefix": {"presence-"}, "info": {"user_count"}}, nil)
	if st != 200 || body["channels"].(map[string]any)["presence-one"].(map[string]any)["user_count"].(float64) != 2 {
		t.Fatalf("%d %v", st, body)
	}
	if st, _ := s.api("GET", "/apps/"+testkit.AppID+"/channels", url.Values{"info": {"user_count"}}, nil); st != 400 {
		t.Fatalf("user_count without presence prefix: %d", st)
	}
	st, body = s.api("GET", "/apps/"+testkit.AppID+"/channels", url.Values{"filter_by_prefix": {"presence-"}, "info": {"user_count,subscription_count"}}, nil)
	if st != 200 {
		t.Fatalf("%d %v", st, body)
	}
	if attrs := body["channels"].(map[string]any)["presence-one"].(map[string]any); attrs["user_count"].(float64) != 2 || attrs["subscription_count"].(float64) != 2 {
		t.Fatalf("presence-one %v", attrs)
	}
	st, body = s.api("GET", "/apps/"+testkit.AppID+"/channels", url.Values{"info": {"subscription_count"}}, nil)
	if st != 200 || body["channels"].(map[string]any)["public-1"].(map[string]any)["subscription_count"].(float64) != 1 {
		t.Fatalf("%d %v", st, body)
	}
	if st, _ := s.api("GET", "/apps/"+testkit.AppID+"/channels", url.Values{"info": {"cache"}}, nil); st != 400 {
		t.Fatalf("unknown info on channels: %d", st)
	}
	st, body = s.api("GET", "/apps/"+testkit.AppID+"/channels/public-1", url.Values{"info": {"subscription_count"}}, nil)
	if st != 200 || body["occupied"] != true || body["subscription_count"].(float64) != 1 {
		t.Fatalf("%d %v", st, body)
	}
	if st, _ := s.api("GET", "/apps/"+testkit.AppID+"/channels/public-1", url.Values{"info": {"user_count"}}, nil); st != 400 {
		t.Fatalf("user_count on public: %d", st)
	}
	st, body = s.api("GET", "/apps/"+testkit.AppID+"/channels/empty", nil, nil)
	if st != 200 || body["occupied"] != false {
		t.Fatalf("%d %v", st, body)
	}
	if st, _ := s.api("GET", "/apps/"+testkit.AppID+"/channels/public-1/users", nil, nil); st != 400 {
		t.Fatalf("users of public: %d", st)
	}
}

func TestHealth(t *testing.T) {
	s := startServer(t, nil)
	st, body := s.rawAPI("GET", s.url+"/up", nil)
	if st != 200 || body["health"] != "OK" {
		t.Fatalf("%d %v", st, body)
	}
	st, _ = s.rawAPI("GET", s.url+"/nope", nil)
	if st != 404 {
		t.Fatal(st)
	}
	st, body = s.rawAPI("GET", s.url+"/api/nope", nil)
	if st != 404 || body["message"] != "Not Found." {
		t.Fatalf("%d %v", st, body)
	}
}
