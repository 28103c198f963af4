package pusher

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\n\r\t", "üñí €", "\u2028\u2029", "bad \xff utf8", "<html>&"} {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q encoded to invalid JSON %s: %v", s, got, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if back != want {
			t.Fatalf("%q round-tripped to %q", s, back)
		}
	}
}

func TestEncodeEvent(t *testing.T) {
	b := EncodeEvent("my-event", "chan", `{"a":"b"}`, "u1")
	var f struct {
		Event, Channel, Data string
		UserID               string `json:"user_id"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.Event != "my-event" || f.Channel != "chan" || f.Data != `{"a":"b"}` || f.UserID != "u1" {
		t.Fatalf("%+v", f)
	}
	if s := string(EncodeEvent("e", "", "d", "")); s != `{"event":"e","data":"d"}` {
		t.Fatal(s)
	}
}

func TestDecodeMessage(t *testing.T) {
	good := []string{`{"event":"pusher:ping","data":{}}`, ` {"event":"client-x","channel":"private-a","data":"s"}`}
	for _, g := range good {
		if _, err := DecodeMessage([]byte(g)); err != nil {
			t.Fatalf("%s: %v", g, err)
		}
	}
	bad := []string{``, `x`, `[]`, `"s"`, `{}`, `{"event":1}`, `{"event":"e","channel":2}`, `{"event":"e"`, `null`}
	for _, b := range bad {
		_, err := DecodeMessage([]byte(b))
		if !errors.Is(err, ErrMessage) {
			t.Fatalf("%q: want ErrMessage, got %v", b, err)
		}
	}
}

func TestDecodeData(t *testing.T) {
	var d SubscribeData
	if err := DecodeData(json.RawMessage(`{"channel":"a","auth":"k:s"}`), &d); err != nil || d.Channel != "a" {
		t.Fatal(d, err)
	}
	// Some SDKs send the object as a JSON string.
	d = SubscribeData{}
	if err := DecodeData(json.RawMessage(`"{\"channel\":\"b\"}"`), &d); err != nil || d.Channel != "b" {
		t.Fatal(d, err)
	}
	for _, bad := range []string{``, `"x"`, `5`, `{"channel":5}`, `[1]`, `{"channel_data":{}}`} {
		if err := DecodeData(json.RawMessage(bad), &SubscribeData{}); !errors.Is(err, ErrMessage) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

func TestCodes(t *testing.T) {
	if !CodeAppNotFound.Closes() || CodeClientEventRateLimit.Closes() {
		t.Fatal("closing flags")
	}
	if CodeAppNotFound.Reconnect() != "never" || CodeOverCapacity.Reconnect() != "with back-off" || CodeServerRestart.Reconnect() != "immediately" {
		t.Fatal("reconnect ranges")
	}
	// pusher-js backs off after 1002-1004 and retries other WebSocket statuses.
	if Code(1003).Reconnect() != "with back-off" || Code(1007).Reconnect() != "after 1 s" || !Code(1008).Closes() {
		t.Fatal("WebSocket statuses")
	}
	for c := range codeText {
		if c.Message() == "" {
			t.Fatal(c)
		}
	}
	if !utf8.ValidString(Errorf(CodeInvalidMessage, "x %d", 1).Error()) {
		t.Fatal()
	}
}
