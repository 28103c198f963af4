package httpapi

import (
	"testing"
)

func TestConnectSubscribeAndTrigger(t *testing.T) {
	s := startServer(t, nil)
	a, b := s.dial(), s.dial()
	if a.SocketID == b.SocketID {
		t.Fatal("socket ids must be unique")
	}
	a.mustSubscribe("news")
	b.mustSubscribe("news")
	s.trigger("news", "greeting", `{"hello":"world"}`)
	for _, c := range []*wsClient{a, b} {
		f := c.Expect("greeting")
		if f.Channel != "news" || f.Data != `{"hello":"world"}` {
			t.Fatalf("got %+v", f)
		}
	}
}
