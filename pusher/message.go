// Package pusher is the Pusher Channels protocol and nothing else: the
// messages a client and a server exchange (their JSON), the error and close
// codes, channel names and kinds, and the HMAC-SHA256 signatures of channel
// authorization, user sign-in, the HTTP API and webhooks. It knows nothing of
// sockets: wsconn carries its messages, the actors act on them.
package pusher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Message is one Pusher protocol message from a client.
type Message struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// ErrMessage wraps every decoding failure.
var ErrMessage = errors.New("invalid message")

// DecodeMessage parses a client message. It fails on anything that is not a
// JSON object with a string "event" and, if present, a string "channel".
// The message's Data may share b's memory.
func DecodeMessage(b []byte) (Message, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return Message{}, fmt.Errorf("%w: expected a JSON object", ErrMessage)
	}
	if m, ok := decodeMessageFast(b); ok {
		return m, nil
	}
	return decodeMessage(b)
}

// decodeMessage is DecodeMessage by encoding/json.
func decodeMessage(b []byte) (Message, error) {
	var f Message
	if err := json.Unmarshal(b, &f); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return f, fmt.Errorf("%w: field %q must be a %s", ErrMessage, te.Field, expectedType(te.Field))
		}
		return f, fmt.Errorf("%w: %v", ErrMessage, err)
	}
	if f.Event == "" {
		return f, fmt.Errorf("%w: missing \"event\"", ErrMessage)
	}
	return f, nil
}

func expectedType(field string) string {
	if field == "data" {
		return "JSON value"
	}
	return "string"
}

// SubscribeData is the data of pusher:subscribe.
type SubscribeData struct {
	Channel     string `json:"channel"`
	Auth        string `json:"auth"`
	ChannelData string `json:"channel_data"`
}

// SigninData is the data of pusher:signin.
type SigninData struct {
	Auth     string `json:"auth"`
	UserData string `json:"user_data"`
}

// DecodeData parses a message's data into v. pusher-js sends objects, some SDKs
// send the object as a JSON string; both are accepted.
func DecodeData(raw json.RawMessage, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return fmt.Errorf("%w: missing \"data\"", ErrMessage)
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%w: data: %v", ErrMessage, err)
		}
		raw = []byte(s)
	}
	if len(raw) == 0 || raw[0] != '{' {
		return fmt.Errorf("%w: \"data\" must be an object", ErrMessage)
	}
	if d, ok := v.(*SubscribeData); ok && decodeSubscribeFast(raw, d) {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%w: data.%s must be a string", ErrMessage, te.Field)
		}
		return fmt.Errorf("%w: data: %v", ErrMessage, err)
	}
	return nil
}

// DataString turns a client's data (any JSON value) into the string that
// goes out in "data": strings are passed through, anything else as its JSON.
func DataString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

// AppendEvent appends the JSON of a server-to-client message. data goes out as a
// JSON string, as pusher-js expects; channel and userID are omitted when empty.
func AppendEvent(dst []byte, event, channel, data, userID string) []byte {
	dst = append(dst, `{"event":`...)
	dst = AppendString(dst, event)
	if channel != "" {
		dst = append(dst, `,"channel":`...)
		dst = AppendString(dst, channel)
	}
	dst = append(dst, `,"data":`...)
	dst = AppendString(dst, data)
	if userID != "" {
		dst = append(dst, `,"user_id":`...)
		dst = AppendString(dst, userID)
	}
	return append(dst, '}')
}

// EncodeEvent is AppendEvent into a new slice.
func EncodeEvent(event, channel, data, userID string) []byte {
	return AppendEvent(make([]byte, 0, 48+len(event)+len(channel)+len(data)*11/10), event, channel, data, userID)
}

// ErrorData is the data of a pusher:error message.
func ErrorData(code Code, message string) string {
	b := append([]byte(`{"code":`), strconv.Itoa(int(code))...)
	b = append(b, `,"message":`...)
	b = AppendString(b, message)
	return string(append(b, '}'))
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string literal. Invalid UTF-8 becomes U+FFFD.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
