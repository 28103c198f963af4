package bench

import (
	"bytes"
	"encoding/json"
	"math"
)

// The read loops see every delivered frame, so at 100k+ deliveries/s the
// bench must not run encoding/json on each one. These helpers pull the
// few fields it needs straight out of the bytes; control frames (rare)
// still go through encoding/json.

var (
	needleEvent   = []byte(`"event"`)
	needleChannel = []byte(`"channel"`)
)

// stringField returns the raw (still escaped) value of the first string
// field named by needle (the key with its quotes) that is followed by a
// colon. A quote inside a JSON string is always escaped, so `"event"`
// cannot match text inside the escaped data string, whose quotes appear as
// `\"`. escaped reports whether the value holds backslash escapes.
func stringField(msg, needle []byte) (val []byte, escaped, ok bool) {
	from := 0
	for {
		i := bytes.Index(msg[from:], needle)
		if i < 0 {
			return nil, false, false
		}
		p := skipSpace(msg, from+i+len(needle))
		from += i + len(needle)
		if p >= len(msg) || msg[p] != ':' {
			continue // the needle was a value, not a key
		}
		p = skipSpace(msg, p+1)
		if p >= len(msg) || msg[p] != '"' {
			return nil, false, false // not a string (e.g. a data object)
		}
		start := p + 1
		for j := start; j < len(msg); j++ {
			switch msg[j] {
			case '\\':
				escaped = true
				j++ // skip the escaped byte
			case '"':
				return msg[start:j], escaped, true
			}
		}
		return nil, false, false
	}
}

func skipSpace(b []byte, p int) int {
	for p < len(b) && (b[p] == ' ' || b[p] == '\t' || b[p] == '\n' || b[p] == '\r') {
		p++
	}
	return p
}

// eventName returns the frame's event name. For names with escapes (for
// example `App\Events\MessageSent`) it unescapes, which allocates; bench
// events have plain names and do not.
func eventName(msg []byte) []byte {
	v, esc, ok := stringField(msg, needleEvent)
	if !ok {
		return nil
	}
	if esc {
		return unescape(v)
	}
	return v
}

// unescape decodes the body of a JSON string (without its quotes).
func unescape(raw []byte) []byte {
	q := make([]byte, 0, len(raw)+2)
	q = append(q, '"')
	q = append(q, raw...)
	q = append(q, '"')
	var s string
	if json.Unmarshal(q, &s) != nil {
		return raw
	}
	return []byte(s)
}

// dataString returns the frame's data field decoded to a string: servers
// send data as a JSON string, but a few send an object, which is returned
// as raw JSON.
func dataString(msg []byte) string {
	var f struct {
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(msg, &f) != nil || len(f.Data) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(f.Data, &s) == nil {
		return s
	}
	return string(f.Data)
}

// intAfter finds the first occurrence of key in msg and parses the
// non-negative integer that follows it, skipping the separators that the
// key may be wrapped in at any nesting depth: quotes, backslashes (from
// escaping inside data strings), colons, '=' and spaces. It serves both
// `{"bseq":12}` nested in a data string and `bseq=12` inside chat text.
func intAfter(msg []byte, key []byte) (int64, bool) {
	i := bytes.Index(msg, key)
	if i < 0 {
		return 0, false
	}
	p := i + len(key)
	for p < len(msg) {
		switch msg[p] {
		case '"', '\\', ':', '=', ' ':
			p++
			continue
		}
		break
	}
	// Parsed by hand: strconv would need a string, which allocates.
	var n int64
	start := p
	for p < len(msg) && msg[p] >= '0' && msg[p] <= '9' {
		d := int64(msg[p] - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
		p++
	}
	return n, p > start
}

// stringAfter is intAfter for a string value: it skips the same
// separators after key and returns the bytes up to the next quote or
// backslash. Used for the presence user_id inside an escaped data string.
func stringAfter(msg []byte, key []byte) ([]byte, bool) {
	i := bytes.Index(msg, key)
	if i < 0 {
		return nil, false
	}
	p := i + len(key)
	for p < len(msg) && (msg[p] == '"' || msg[p] == '\\' || msg[p] == ':' || msg[p] == ' ') {
		p++
	}
	start := p
	for p < len(msg) && msg[p] != '"' && msg[p] != '\\' {
		p++
	}
	if p == start || p >= len(msg) {
		return nil, false
	}
	return msg[start:p], true
}
