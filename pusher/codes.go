package pusher

import "fmt"

// Code is a Pusher protocol error or close code. Its range tells pusher-js
// what to do after a close: 4000-4099 do not reconnect, 4100-4199 reconnect
// with back-off, 4200-4299 reconnect at once, 4300+ the request was refused.
// A close code below 4000 is a WebSocket status (RFC 6455) the transport
// sent (wsconn).
type Code int

// Every code Parley sends. pusher:error messages carry the code and
// Message(); closing codes are also used as the WebSocket close status.
const (
	CodeTLSRequired          Code = 4000 // closing: use wss
	CodeAppNotFound          Code = 4001 // closing: no app with that key
	CodeAppDisabled          Code = 4003 // closing
	CodePathNotFound         Code = 4005 // closing: not /app/{key}
	CodeInvalidVersion       Code = 4006 // closing: protocol version is not a number
	CodeUnsupportedProtocol  Code = 4007 // closing: protocol version below 7
	CodeNoProtocol           Code = 4008 // closing
	CodeUnauthorized         Code = 4009 // closing: origin not allowed, connections terminated by the app
	CodeOverCapacity         Code = 4100 // closing: the app's max connections reached
	CodeSlowConsumer         Code = 4101 // closing: the socket's outbound queue overflowed
	CodeNoQuorum             Code = 4110 // closing: a new socket on a node cut off from its cluster (retry later)
	CodeServerRestart        Code = 4200 // closing: server shutting down, reconnect now
	CodePongTimeout          Code = 4201 // closing: no pong to our ping
	CodeEventsLost           Code = 4210 // closing: events for this socket were lost on the way; reconnect and catch up
	CodeClusterLost          Code = 4211 // closing: this node lost its cluster's quorum; reconnect (elsewhere)
	CodeInvalidMessage       Code = 4300 // error only: message is not valid JSON or has wrong types
	CodeClientEventRateLimit Code = 4301 // error only: more than 10 client events a second
	CodeEventTooLarge        Code = 4302 // error only: event data above the app's max event size
	CodeClientEventRefused   Code = 4303 // error only: client events off, public channel or not subscribed
	CodeSubscriptionRefused  Code = 4304 // error only: bad channel name, bad channel_data, presence full
	CodeSigninRefused        Code = 4305 // error only: signin disabled or malformed
)

var codeText = map[Code]string{
	CodeTLSRequired:          "Application only accepts encrypted connections",
	CodeAppNotFound:          "Application does not exist",
	CodeAppDisabled:          "Application disabled",
	CodePathNotFound:         "Path not found: connect to /app/{key}",
	CodeInvalidVersion:       "Invalid protocol version",
	CodeUnsupportedProtocol:  "Unsupported protocol version: use protocol=7",
	CodeNoProtocol:           "No protocol version supplied",
	CodeUnauthorized:         "Connection is unauthorized",
	CodeOverCapacity:         "Over capacity",
	CodeSlowConsumer:         "Slow consumer: too many unsent messages",
	CodeNoQuorum:             "This node cannot reach a majority of its cluster: retry later",
	CodeServerRestart:        "Server is restarting, reconnect",
	CodePongTimeout:          "Pong reply not received in time",
	CodeEventsLost:           "Events for this connection were lost: reconnect and catch up",
	CodeClusterLost:          "This node lost its cluster: reconnect",
	CodeInvalidMessage:       "Invalid message",
	CodeClientEventRateLimit: "Client event rejected due to rate limit",
	CodeEventTooLarge:        "Event data too large",
	CodeClientEventRefused:   "Client event rejected",
	CodeSubscriptionRefused:  "Subscription refused",
	CodeSigninRefused:        "Sign-in refused",
}

// Message is the code's default human text.
func (c Code) Message() string {
	if s, ok := codeText[c]; ok {
		return s
	}
	return fmt.Sprintf("error %d", int(c))
}

// Known reports whether c is one of the codes above.
func (c Code) Known() bool { _, ok := codeText[c]; return ok }

// Closes reports whether the server closes the socket after sending this code.
func (c Code) Closes() bool { return c < 4300 }

// Reconnect says what a Pusher client does after a close with this code.
// pusher-js backs off after the WebSocket statuses 1002-1004 and retries
// other WebSocket statuses after a second.
func (c Code) Reconnect() string {
	switch {
	case c >= 1002 && c <= 1004:
		return "with back-off"
	case c < 4000:
		return "after 1 s"
	case c < 4100:
		return "never"
	case c < 4200:
		return "with back-off"
	case c < 4300:
		return "immediately"
	default:
		return "refused"
	}
}

// Error is a protocol error: a code plus a specific message.
type Error struct {
	Code Code
	Msg  string
}

// Errorf makes an *Error with a formatted message.
func Errorf(code Code, format string, a ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, a...)}
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("%d: %s", int(e.Code), e.Code.Message())
	}
	return fmt.Sprintf("%d: %s", int(e.Code), e.Msg)
}

// Message is the text sent to the client.
func (e *Error) Message() string {
	if e.Msg == "" {
		return e.Code.Message()
	}
	return e.Msg
}
