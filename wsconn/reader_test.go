package wsconn

import (
	"encoding/binary"
	"errors"
	"testing"
	"unicode/utf8"
)

// clientFrame builds a masked frame as a browser would send it.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b := []byte{op}
	if fin {
		b[0] |= 0x80
	}
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, 0, 0)
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = append(b, 0x80|127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	return b
}

type recorder struct {
	msgs   []string
	frags  int
	pings  int
	pongs  int
	closes []int
}

func (r *recorder) message(p []byte) { r.msgs = append(r.msgs, string(p)) }
func (r *recorder) fragment()        { r.frags++ }
func (r *recorder) ping([]byte)      { r.pings++ }
func (r *recorder) pong()            { r.pongs++ }
func (r *recorder) peerClose(c int)  { r.closes = append(r.closes, c) }

func TestFrameReaderSplitsAnywhere(t *testing.T) {
	big := make([]byte, 70000)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	var stream []byte
	stream = append(stream, clientFrame(true, opText, []byte(`{"event":"a"}`))...)
	stream = append(stream, clientFrame(true, opPing, []byte("p"))...)
	stream = append(stream, clientFrame(false, opText, []byte("frag-"))...)
	stream = append(stream, clientFrame(true, opPong, nil)...) // control frames may come between fragments
	stream = append(stream, clientFrame(true, 0, []byte("ment"))...)
	stream = append(stream, clientFrame(true, opText, big[:300])...)
	stream = append(stream, clientFrame(true, opText, big)...)
	// "é" is split across two fragments: valid once reassembled.
	stream = append(stream, clientFrame(false, opText, []byte("caf\xc3"))...)
	stream = append(stream, clientFrame(true, 0, []byte("\xa9"))...)
	stream = append(stream, clientFrame(true, opClose, []byte{0x03, 0xe8})...)
	for _, step := range []int{1, 2, 3, 7, 100, 4096, len(stream)} {
		r := &recorder{}
		fr := frameReader{limit: 1 << 20}
		data := append([]byte(nil), stream...)
		for i := 0; i < len(data); i += step {
			end := min(i+step, len(data))
			if err := fr.feed(data[i:end], r); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		if len(r.msgs) != 5 || r.msgs[0] != `{"event":"a"}` || r.msgs[1] != "frag-ment" || r.msgs[2] != string(big[:300]) || r.msgs[3] != string(big) || r.msgs[4] != "café" {
			t.Fatalf("step %d: messages %d %q", step, len(r.msgs), r.msgs[:min(2, len(r.msgs))])
		}
		if r.frags != 2 || r.pings != 1 || r.pongs != 1 || len(r.closes) != 1 || r.closes[0] != 1000 {
			t.Fatalf("step %d: %+v", step, r)
		}
		if len(fr.pend) != 0 {
			t.Fatalf("step %d: %d bytes left", step, len(fr.pend))
		}
	}
}

func TestFrameReaderRejects(t *testing.T) {
	unmasked := clientFrame(true, opText, []byte("x"))
	unmasked[1] &^= 0x80
	rsv := clientFrame(true, opText, []byte("x"))
	rsv[0] |= 0x40
	cases := map[string]struct {
		data []byte
		want error
	}{
		"unmasked":                {unmasked, errProtocol},
		"reserved bits":           {rsv, errProtocol},
		"unknown opcode":          {clientFrame(true, 0x3, nil), errProtocol},
		"fragmented control":      {clientFrame(false, opPing, nil), errProtocol},
		"long control":            {clientFrame(true, opPing, make([]byte, 126)), errProtocol},
		"stray continuation":      {clientFrame(true, 0, []byte("x")), errProtocol},
		"too big":                 {clientFrame(true, opText, make([]byte, 101)), errTooBig},
		"too big in pieces":       {append(clientFrame(false, opText, make([]byte, 60)), clientFrame(true, 0, make([]byte, 60))...), errTooBig},
		"nested message":          {append(clientFrame(false, opText, []byte("a")), clientFrame(true, opText, []byte("b"))...), errProtocol},
		"binary":                  {clientFrame(true, opBinary, []byte("{}")), errBinary},
		"binary fragment":         {clientFrame(false, opBinary, []byte("{")), errBinary},
		"invalid UTF-8":           {clientFrame(true, opText, []byte("{\"event\":\"\xff\"}")), errInvalidUTF8},
		"truncated rune":          {clientFrame(true, opText, []byte("caf\xc3")), errInvalidUTF8},
		"surrogate":               {clientFrame(true, opText, []byte("\xed\xa0\x80")), errInvalidUTF8},
		"invalid UTF-8 in pieces": {append(clientFrame(false, opText, []byte("caf\xc3")), clientFrame(true, 0, []byte("!"))...), errInvalidUTF8},
	}
	for name, tc := range cases {
		fr := frameReader{limit: 100}
		if err := fr.feed(tc.data, &recorder{}); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
	// A too-big length is refused from the header alone, before the payload arrives.
	fr := frameReader{limit: 100}
	if err := fr.feed([]byte{0x81, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0}, &recorder{}); !errors.Is(err, errTooBig) {
		t.Fatal(err)
	}
	// So is a binary frame.
	fr = frameReader{limit: 100}
	if err := fr.feed([]byte{0x82, 0x80 | 100}, &recorder{}); !errors.Is(err, errBinary) {
		t.Fatal(err)
	}
	for err, want := range map[error]int{errProtocol: 1002, errTooBig: 1009, errBinary: 1003, errInvalidUTF8: 1007} {
		if got := closeCode(err); got != want {
			t.Errorf("%v: close %d, want %d", err, got, want)
		}
	}
}

// FuzzFrameReader: any byte stream, cut anywhere, never panics, and a
// stream of valid frames always yields the same messages however it is cut.
func FuzzFrameReader(f *testing.F) {
	f.Add(clientFrame(true, opText, []byte(`{"event":"pusher:ping","data":{}}`)), 3)
	f.Add(append(clientFrame(false, opText, []byte("a")), clientFrame(true, 0, []byte("b"))...), 1)
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 1}, 5)
	f.Add(clientFrame(true, opBinary, []byte(`{"event":"e"}`)), 4)
	f.Add(clientFrame(true, opText, []byte("bad \xff utf8")), 2)
	f.Add(append(clientFrame(false, opText, []byte("caf\xc3")), clientFrame(true, 0, []byte("\xa9"))...), 7)
	f.Add(append(clientFrame(false, opText, []byte("caf\xc3")), clientFrame(true, 0, []byte("!"))...), 7)
	f.Fuzz(func(t *testing.T, data []byte, step int) {
		if step <= 0 || step > len(data)+1 {
			step = len(data) + 1
		}
		fr := frameReader{limit: 4096}
		buf := append([]byte(nil), data...)
		for i := 0; i < len(buf); i += step {
			if err := fr.feed(buf[i:min(i+step, len(buf))], &recorder{}); err != nil {
				return
			}
		}
		// Re-frame what was read as valid frames: cutting must not matter.
		whole := &recorder{}
		fr = frameReader{limit: 4096}
		_ = fr.feed(append([]byte(nil), data...), whole)
		for _, m := range whole.msgs {
			if !utf8.ValidString(m) {
				t.Fatalf("delivered invalid UTF-8 %q", m)
			}
		}
		var stream []byte
		for _, m := range whole.msgs {
			stream = append(stream, clientFrame(true, opText, []byte(m))...)
		}
		cut := &recorder{}
		fr = frameReader{limit: 4096}
		for i := 0; i < len(stream); i += step {
			if err := fr.feed(stream[i:min(i+step, len(stream))], cut); err != nil {
				t.Fatalf("valid stream refused: %v", err)
			}
		}
		if len(cut.msgs) != len(whole.msgs) {
			t.Fatalf("%d messages cut, %d whole", len(cut.msgs), len(whole.msgs))
		}
	})
}
