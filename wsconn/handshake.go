package wsconn

import (
	"crypto/sha1"
	"encoding/base64"
	"strings"
)

// keyGUID is RFC 6455's magic string for Sec-WebSocket-Accept.
const keyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

const helloPrefix = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "

// helloSize is the length of the 101 response: the accept key is 28 bytes.
const helloSize = len(helloPrefix) + 28 + 4

// appendHello appends the 101 response for the client's key.
func appendHello(dst []byte, key string) []byte {
	var in [24 + len(keyGUID)]byte
	n := copy(in[:], key)
	n += copy(in[n:], keyGUID)
	sum := sha1.Sum(in[:n])
	dst = append(dst, helloPrefix...)
	dst = base64.StdEncoding.AppendEncode(dst, sum[:])
	return append(dst, "\r\n\r\n"...)
}

// validKey reports whether key is base64 of 16 bytes, as RFC 6455 requires.
func validKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	var b [18]byte
	n, err := base64.StdEncoding.Decode(b[:], []byte(key))
	return err == nil && n == 16
}

// hasToken reports whether one of the comma-separated tokens of the header
// values equals token, ignoring ASCII case (Connection: keep-alive, Upgrade).
// Like gorilla, it gives up on a value at its first element that is not a
// token, so it accepts nothing gorilla would refuse.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		if hasTokenIn(v, token) {
			return true
		}
	}
	return false
}

// hasTokenIn is hasToken for one header value.
func hasTokenIn(v, token string) bool {
	for {
		var t string
		var more bool
		t, v, more = strings.Cut(v, ",")
		t = strings.Trim(t, " \t")
		if !isToken(t) {
			return false
		}
		if strings.EqualFold(t, token) {
			return true
		}
		if !more {
			return false
		}
	}
}

// isToken reports whether s is a non-empty RFC 7230 token.
func isToken(s string) bool { return s != "" && only(s, "!#$%&'*+-.^_`|~") }

// only reports whether every byte of s is an ASCII letter, a digit or one
// of extra.
func only(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// Handshake is what a plain WebSocket handshake request says, read from its
// raw bytes by ParseHandshake.
type Handshake struct {
	Path         string // the request target's path, as sent (no escapes in it)
	RawQuery     string // the target after '?', as sent
	Key          string // Sec-WebSocket-Key (the first)
	Origin       string // the first Origin, "" if none
	ForwardedFor string // the first X-Forwarded-For, "" if none
}

// ParseHandshake reads head, the bytes of a request up to and including the
// blank line that ends its headers. It reports ok only for the plain form
// every WebSocket client sends: "GET <path>[?query] HTTP/1.1", the path
// without escapes, every header line "Name: value" with CRLF, one Host, no
// body, and a valid handshake (Connection: upgrade, Upgrade: websocket,
// Sec-WebSocket-Version: 13, a well-formed key). For such a request it gives
// what net/http would read from it, and the handshake Upgrade would accept.
// Anything else, an error to answer or a form that is merely unusual, is
// !ok: net/http and Upgrade have the precise answer for it.
func ParseHandshake(head []byte) (h Handshake, ok bool) {
	s := string(head) // one allocation; every field is a part of it
	line, rest, found := strings.Cut(s, "\r\n")
	if !found || !strings.HasPrefix(line, "GET /") || !strings.HasSuffix(line, " HTTP/1.1") {
		return h, false
	}
	target := line[len("GET ") : len(line)-len(" HTTP/1.1")]
	h.Path, h.RawQuery, _ = strings.Cut(target, "?")
	if !plainPath(h.Path) || !plainQuery(h.RawQuery) {
		return h, false
	}
	var hosts int
	var conn, upgrade, version, haveKey, haveOrigin, haveXFF bool
	for {
		line, rest, found = strings.Cut(rest, "\r\n")
		if !found {
			return h, false
		}
		if line == "" {
			break
		}
		name, value, found := strings.Cut(line, ":")
		if !found || !isToken(name) || !plainValue(value) {
			return h, false
		}
		value = strings.Trim(value, " \t")
		switch {
		case strings.EqualFold(name, "Host"):
			hosts++
			if !plainHost(value) {
				return h, false
			}
		case strings.EqualFold(name, "Connection"):
			conn = conn || hasTokenIn(value, "upgrade")
		case strings.EqualFold(name, "Upgrade"):
			upgrade = upgrade || hasTokenIn(value, "websocket")
		case strings.EqualFold(name, "Sec-WebSocket-Version"):
			version = version || hasTokenIn(value, "13")
		case strings.EqualFold(name, "Sec-WebSocket-Key"):
			if !haveKey {
				h.Key, haveKey = value, true
			}
		case strings.EqualFold(name, "Origin"):
			if !haveOrigin {
				h.Origin, haveOrigin = value, true
			}
		case strings.EqualFold(name, "X-Forwarded-For"):
			if !haveXFF {
				h.ForwardedFor, haveXFF = value, true
			}
		case strings.EqualFold(name, "Content-Length"), strings.EqualFold(name, "Transfer-Encoding"),
			strings.EqualFold(name, "Expect"):
			return h, false // a body, or a wish net/http answers
		}
	}
	if rest != "" || hosts != 1 || !conn || !upgrade || !version || !validKey(h.Key) {
		return h, false
	}
	return h, true
}

// plainPath reports whether p is an absolute path of RFC 3986 characters
// with no escape, so that it reads the same decoded.
func plainPath(p string) bool { return p != "" && p[0] == '/' && only(p, "/-._~!$&'()*+,;=:@") }

// plainQuery reports whether q holds only visible ASCII and no '#'.
func plainQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// plainValue reports whether v, a header value, holds no control
// character but tab (net/http refuses the others).
func plainValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// plainHost reports whether v is a non-empty host[:port] of letters,
// digits and . - : [ ] only.
func plainHost(v string) bool { return v != "" && only(v, ".-:[]") }
