package pusher

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeMessage feeds the client-frame decoder real frames, broken ones, and
// inputs split at arbitrary points: it must never panic, and whatever it
// accepts must have an event name and re-encode to valid JSON.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"k:s"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":"{\"user_id\":\"1\"}"}}`,
		`{"event":"pusher:ping","data":{}}`,
		`{"event":"client-typing","channel":"private-a","data":{"t":true}}`,
		`{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"1\"}"}}`,
		`{"event":5}`, `{"event":"pusher:subscribe","data":"x"}`, `not json`, `{"event":"e","data":"\ud800"}`,
		"{\"event\":\"client-x\",\"channel\":\"private-a\",\"data\":\"café ☕ 😀\"}",
		"{\"event\":\"caf\xc3\",\"data\":\"\xff\"}", // invalid UTF-8 (the wire layer refuses it before)
	} {
		f.Add([]byte(s), 0)
		f.Add([]byte(s), len(s)/2)
	}
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if cut >= 0 && cut <= len(b) {
			b = b[:cut] // a frame split mid-way is just another invalid input
		}
		fr, err := DecodeMessage(b)
		if err != nil {
			return
		}
		if fr.Event == "" {
			t.Fatal("accepted a frame without event")
		}
		var sd SubscribeData
		_ = DecodeData(fr.Data, &sd)
		out := EncodeEvent(fr.Event, fr.Channel, DataString(fr.Data), sd.Channel)
		if !json.Valid(out) {
			t.Fatalf("re-encoded to invalid JSON: %s", out)
		}
	})
}
