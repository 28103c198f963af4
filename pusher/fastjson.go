package pusher

// The fast path of decoding a client message. Almost every message a client
// sends has one shape: an object with "event", maybe "channel", and "data",
// a flat object of plain strings ({"channel":"private-a","auth":"k:s"}, or {}
// for pusher:ping). encoding/json decodes it by reflection after a full
// validating scan, about a dozen allocations and the bulk of a subscribe's
// decoding time. The functions here decode that shape only — keys spelled
// exactly so, each at most once, strings of printable ASCII without escapes
// — and report false for anything else, which encoding/json then decodes
// (or refuses) as before: what they accept, they decode exactly as
// encoding/json does (FuzzFastDecodeMatchesEncodingJSON).

// decodeMessageFast decodes b, trimmed and starting with '{', when it has
// the common shape. m.Data is a slice of b.
func decodeMessageFast(b []byte) (m Message, ok bool) {
	var seen [3]bool // event, channel, data
	i, ok := members(b, 0, func(key []byte, v int) (int, bool) {
		var k int
		switch string(key) {
		case "event":
			k = 0
		case "channel":
			k = 1
		case "data":
			k = 2
		default:
			return 0, false
		}
		if seen[k] {
			return 0, false
		}
		seen[k] = true
		if k == 2 {
			end, ok := members(b, v, nil)
			if ok {
				m.Data = b[v:end:end]
			}
			return end, ok
		}
		s, end, ok := plainString(b, v)
		if !ok {
			return 0, false
		}
		if k == 0 {
			m.Event = eventName(s)
		} else {
			m.Channel = string(s)
		}
		return end, true
	})
	if !ok || i != len(b) || m.Event == "" {
		return Message{}, false
	}
	return m, true
}

// eventName is string(s) without an allocation for the events clients send
// most.
func eventName(s []byte) string {
	switch string(s) {
	case "pusher:subscribe":
		return "pusher:subscribe"
	case "pusher:unsubscribe":
		return "pusher:unsubscribe"
	case "pusher:ping":
		return "pusher:ping"
	case "pusher:pong":
		return "pusher:pong"
	case "pusher:signin":
		return "pusher:signin"
	}
	return string(s)
}

// decodeSubscribeFast decodes raw, trimmed, into d when it is a flat object
// of plain strings with no keys but channel, auth and channel_data. As
// encoding/json does, it sets only the fields raw has; when it reports
// false, d is untouched.
func decodeSubscribeFast(raw []byte, into *SubscribeData) bool {
	var d SubscribeData
	var seen [3]bool
	end, ok := members(raw, 0, func(key []byte, v int) (int, bool) {
		var k int
		switch string(key) {
		case "channel":
			k = 0
		case "auth":
			k = 1
		case "channel_data":
			k = 2
		default:
			return 0, false
		}
		s, end, ok := plainString(raw, v)
		if !ok || seen[k] {
			return 0, false
		}
		seen[k] = true
		switch k {
		case 0:
			d.Channel = string(s)
		case 1:
			d.Auth = string(s)
		default:
			d.ChannelData = string(s)
		}
		return end, true
	})
	if !ok || end != len(raw) {
		return false
	}
	if seen[0] {
		into.Channel = d.Channel
	}
	if seen[1] {
		into.Auth = d.Auth
	}
	if seen[2] {
		into.ChannelData = d.ChannelData
	}
	return true
}

// members scans the object at b[i] ('{' expected): each member's key is a
// plain string, and value(key, j) reads the value starting at b[j] and
// returns where it ends. With value nil, every value must be a plain
// string. It returns the index after the closing '}'.
func members(b []byte, i int, value func(key []byte, j int) (int, bool)) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = space(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		key, j, ok := plainString(b, i)
		if !ok {
			return 0, false
		}
		j = space(b, j)
		if j >= len(b) || b[j] != ':' {
			return 0, false
		}
		j = space(b, j+1)
		if value != nil {
			j, ok = value(key, j)
		} else {
			_, j, ok = plainString(b, j)
		}
		if !ok {
			return 0, false
		}
		i = space(b, j)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case '}':
			return i + 1, true
		case ',':
			i = space(b, i+1)
		default:
			return 0, false
		}
	}
}

// plainString reads the string at b[i] when it holds only printable ASCII
// and no escapes: its content and the index after its closing quote.
func plainString(b []byte, i int) (s []byte, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// space skips JSON whitespace.
func space(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
