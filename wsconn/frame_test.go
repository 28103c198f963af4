package wsconn

import (
	"strings"
	"testing"
	"unicode/utf8"
)

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
		c := closeFrame(4101, reason)
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
