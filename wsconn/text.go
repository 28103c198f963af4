package wsconn

import "unicode/utf8"

// CutUTF8 is the longest prefix of s of at most n bytes that does not split
// a UTF-8 sequence.
func CutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Truncate shortens s for an error message or close reason: at most n bytes
// of it, never a character cut in two, and "…" when something was cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return CutUTF8(s, n) + "…"
}
