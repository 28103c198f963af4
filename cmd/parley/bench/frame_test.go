package bench

import (
	"testing"
)

func TestEventName(t *testing.T) {
	cases := map[string]string{
		`{"event":"bench","channel":"bench-0","data":"{\"event\":\"nope\"}"}`:       "bench",
		`{"data":"{\"event\":\"nope\"}","channel":"c","event":"bench"}`:             "bench",
		`{ "event" : "pusher:ping" , "data" : {} }`:                                 "pusher:ping",
		`{"event":"App\\Events\\MessageSent","channel":"private-user.1","data":""}`: chatEvent,
		`{"channel":"c"}`:            "",
		`{"event":12}`:               "",
		`{"data":"\"event\"","x":1}`: "",
	}
	for in, want := range cases {
		if got := string(eventName([]byte(in))); got != want {
			t.Errorf("eventName(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestIntAfterFindsMarkers(t *testing.T) {
	payload := eventPayload(1234, 1700000000123456789, 200)
	if len(payload) != 200 {
		t.Errorf("payload is %d bytes, want 200", len(payload))
	}
	frame := []byte(`{"event":"bench","channel":"bench-3","data":` + quote(payload) + `}`)
	if seq, ok := intAfter(frame, keySeq); !ok || seq != 1234 {
		t.Errorf("seq %d %v", seq, ok)
	}
	if ts, ok := intAfter(frame, keyTS); !ok || ts != 1700000000123456789 {
		t.Errorf("ts %d %v", ts, ok)
	}
	chat := []byte(`{"event":"x","data":"{\"message\":{\"message\":\"` + chatText("t1", 7, 99, 10) + `\"}}"}`)
	if seq, ok := intAfter(chat, keySeq); !ok || seq != 7 {
		t.Errorf("chat seq %d %v", seq, ok)
	}
	if _, ok := intAfter([]byte(`"~seq":99999999999999999999`), keySeq); ok {
		t.Error("an overflowing number was accepted")
	}
	if _, ok := intAfter([]byte(`"~seq":"x"`), keySeq); ok {
		t.Error("a non-number was accepted")
	}
}

func TestStringAfter(t *testing.T) {
	in := []byte(`{"event":"pusher_internal:member_added","data":"{\"user_id\":\"bench-x-12\",\"user_info\":{}}"}`)
	if id, ok := stringAfter(in, []byte("user_id")); !ok || string(id) != "bench-x-12" {
		t.Errorf("got %q %v", id, ok)
	}
}

func quote(s string) string {
	b := []byte{'"'}
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(append(b, '"'))
}

// The parsers see whatever a server sends; they must never panic.
func FuzzFrameParsers(f *testing.F) {
	f.Add([]byte(`{"event":"bench","channel":"bench-0","data":"{\"~seq\":1,\"~ts\":2,\"pad\":\"x\"}"}`))
	f.Add([]byte(`{"event":"pusher_internal:member_added","data":"{\"user_id\":\"u\"}"}`))
	f.Add([]byte(`{"event":"App\\Events\\MessageSent","data":"\\"}`))
	f.Add([]byte(`{"event":"`))
	f.Add([]byte(`~seq=`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		eventName(msg)
		stringField(msg, needleChannel)
		intAfter(msg, keySeq)
		stringAfter(msg, []byte("user_id"))
		dataString(msg)
	})
}

func BenchmarkParseDelivery(b *testing.B) {
	frame := []byte(`{"event":"bench","channel":"bench-3","data":` + quote(eventPayload(1234, 1700000000123456789, 200)) + `}`)
	b.ReportAllocs()
	for range b.N {
		if string(eventName(frame)) != benchEvent {
			b.Fatal("name")
		}
		intAfter(frame, keySeq)
		intAfter(frame, keyTS)
	}
}
