package actors

import "testing"

func TestSubscriptions(t *testing.T) {
	var s subscriptions
	s.set("a", "")
	s.set("b", "u1")
	s.set("b", "u2")
	if len(s) != 2 {
		t.Fatal(s)
	}
	if u, ok := s.get("b"); !ok || u != "u2" {
		t.Fatal(u, ok)
	}
	s.remove("a")
	if _, ok := s.get("a"); ok || len(s) != 1 {
		t.Fatal(s)
	}
	s.remove("nope")
	if len(s) != 1 {
		t.Fatal(s)
	}
}
