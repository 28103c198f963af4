package wsconn

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTruncateKeepsUTF8: a shortened message never cuts a character in two
// (it ends up in pusher:error frames and close reasons).
func TestTruncateKeepsUTF8(t *testing.T) {
	for _, s := range []string{"ééééé", "日本語のチャンネル", "a😀😀😀"} {
		for n := 0; n <= len(s); n++ {
			got := Truncate(s, n)
			if !utf8.ValidString(got) {
				t.Fatalf("Truncate(%q, %d) = %q is not UTF-8", s, n, got)
			}
			if n < len(s) && len(strings.TrimSuffix(got, "…")) > n {
				t.Fatalf("Truncate(%q, %d) = %q is longer than %d bytes", s, n, got, n)
			}
		}
	}
}
