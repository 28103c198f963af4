package wsconn

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

func TestDecodeFrame(t *testing.T) {
	good := []string{`{"event":"pusher:ping","data":{}}`, ` {"event":"client-x","channel":"private-a","data":"s"}`}
	for _, g := range good {
		if _, err := DecodeFrame([]byte(g)); err != nil {
			t.Fatalf("%s: %v", g, err)
		}
	}
	bad := []string{``, `x`, `[]`, `"s"`, `{}`, `{"event":1}`, `{"event":"e","channel":2}`, `{"event":"e"`, `null`}
	for _, b := range bad {
		_, err := DecodeFrame([]byte(b))
		if !errors.Is(err, ErrFrame) {
			t.Fatalf("%q: want ErrFrame, got %v", b, err)
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
		if err := DecodeData(json.RawMessage(bad), &SubscribeData{}); !errors.Is(err, ErrFrame) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

func TestPreparedFraming(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		p := NewPrepared([]byte(strings.Repeat("a", n)))
		if len(p.Payload()) != n || !p.isText() || p.wire[0] != 0x81 {
			t.Fatalf("n=%d header %x", n, p.wire[:2])
		}
		hdr := p.Size() - n
		want := map[bool]int{true: 2}[n < 126]
		if n >= 126 && n <= 65535 {
			want = 4
		} else if n > 65535 {
			want = 10
		}
		if hdr != want {
			t.Fatalf("n=%d header %d bytes, want %d", n, hdr, want)
		}
	}
	c := closeFrame(4200, strings.Repeat("r", 200))
	if c.Size() > 127 || c.wire[0] != 0x88 {
		t.Fatalf("close frame %d bytes", c.Size())
	}
}

// A close reason is cut to 123 bytes at a rune boundary: browsers fail the
// connection on a close frame whose reason is not valid UTF-8.
func TestCloseFrameReasonIsValidUTF8(t *testing.T) {
	for _, reason := range []string{
		strings.Repeat("é", 100),      // 2-byte runes: 123 falls mid-rune
		strings.Repeat("€", 60),       // 3-byte runes
		"a" + strings.Repeat("😀", 40), // 4-byte runes
		"bad \xff byte",
		strings.Repeat("x", 200),
	} {
		c := closeFrame(int(CodeSlowConsumer), reason)
		got := c.Payload()[2:]
		if !utf8.Valid(got) || len(got) > maxCloseReason {
			t.Fatalf("%.20q...: reason %d bytes, valid %v", reason, len(got), utf8.Valid(got))
		}
		want := strings.ToValidUTF8(reason, "\uFFFD")
		if !strings.HasPrefix(want, string(got)) || len(got) < min(len(want), maxCloseReason-3) {
			t.Fatalf("%.20q...: cut to %q", reason, got)
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
	if CodeUnsupportedData.Reconnect() != "with back-off" || CodeInvalidPayload.Reconnect() != "after 1 s" || !CodePolicyViolation.Closes() {
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
