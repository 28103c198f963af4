package httpapi

import (
	"net/http"
	"testing"
)

// FuzzParseTrigger: the HTTP API's body parsing never panics, and anything it
// accepts respects the limits.
func FuzzParseTrigger(f *testing.F) {
	for _, s := range []string{
		`{"name":"e","channel":"c","data":"d"}`,
		`{"name":"e","channels":["a","b"],"data":"{\"x\":1}","socket_id":"1.2","info":"subscription_count"}`,
		`{"name":"e","channels":["private-encrypted-a"],"data":"d"}`,
		`{"batch":[{"name":"e","channel":"c","data":"d"},{"name":"f","channel":"presence-x","data":{},"info":"user_count"}]}`,
		`{"name":1}`, `[]`, `{"name":"e","channel":"#server-to-user-1","data":""}`, `{"name":"e","channel":"c","data":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(ev triggerEvent) {
			if ev.Name == "" || len(ev.Name) > MaxEventNameLength || len(ev.Channels) == 0 || len(ev.Channels) > MaxTriggerChannels || len(ev.Data) > 1024 {
				t.Fatalf("accepted %+v", ev)
			}
		}
		if ev, err := parseTrigger(b, 1024); err == nil {
			check(ev)
		} else if err.Status != http.StatusBadRequest && err.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", err.Status)
		}
		if evs, err := parseBatch(b, 1024); err == nil {
			if len(evs) > MaxBatchEvents {
				t.Fatal("batch too long")
			}
			for _, ev := range evs {
				check(ev)
				if len(ev.Channels) != 1 {
					t.Fatal("batch event with several channels")
				}
			}
		}
	})
}
