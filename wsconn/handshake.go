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
		for {
			var t string
			var more bool
			t, v, more = strings.Cut(v, ",")
			t = strings.Trim(t, " \t")
			if !isToken(t) {
				break
			}
			if strings.EqualFold(t, token) {
				return true
			}
			if !more {
				break
			}
		}
	}
	return false
}

// isToken reports whether s is a non-empty RFC 7230 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
