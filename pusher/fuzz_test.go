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

// FuzzFastDecodeMatchesEncodingJSON: whatever the fast path decodes, it
// decodes exactly as encoding/json does (what it declines goes to
// encoding/json itself).
func FuzzFastDecodeMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"k:s"}}`,
		`{"event":"pusher:subscribe","data":{"auth":"k:0ab","channel":"private-a"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":"{\"user_id\":\"1\"}"}}`,
		`{"event":"pusher:ping","data":{}}`, `{ "event" : "pusher:pong" , "data" : { } }`,
		`{"event":"client-typing","channel":"private-a","data":{"t":"x"}}`,
		`{"event":"e","event":"f"}`, `{"EVENT":"e"}`, `{"event":"e","data":{"channel":"a","channel":"b"}}`,
		`{"event":"e","data":{"Channel":"a"}}`, `{"event":"e","data":{"channel":null}}`, `{"event":""}`,
		`{"event":"e","data":{"x":"y"}}`, `{"event":"e","channel":"c"}`, `{"event":"e"} `, `{"event":"e",}`,
		`{"data":{},"event":"e"}`, `{"event":"a\tb"}`, `{"event":"\u0041"}`, "{\"event\":\"caf\xc3\xa9\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 && b[0] == '{' {
			if m, ok := decodeMessageFast(b); ok {
				var want Message
				if err := json.Unmarshal(b, &want); err != nil {
					t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", b, err)
				}
				if m.Event != want.Event || m.Channel != want.Channel || string(m.Data) != string(want.Data) || m.Event == "" {
					t.Fatalf("%q: fast %+v, encoding/json %+v", b, m, want)
				}
				if m.Data != nil {
					b = m.Data // and the data, as a subscribe's
				}
			}
		}
		got := SubscribeData{Channel: "c0", Auth: "a0", ChannelData: "d0"}
		want := got
		if decodeSubscribeFast(b, &got) {
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatalf("fast path accepted data %q, encoding/json refuses it: %v", b, err)
			}
			if got != want {
				t.Fatalf("data %q: fast %+v, encoding/json %+v", b, got, want)
			}
		} else if got != want {
			t.Fatalf("data %q: declined, but changed the struct to %+v", b, got)
		}
	})
}
