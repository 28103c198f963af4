package actors

import (
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// Socket is a client's connection as the actors use it: what they send is
// the Pusher protocol (package pusher) in WebSocket frames (package wsconn).
// *wsconn.Conn is the real one; an actor test may use another.
type Socket interface {
	// Send queues a frame; false when the socket no longer takes frames
	// (closing, or dropped as a slow consumer).
	Send(*wsconn.Prepared) bool
	// SendNow is Send, written at once on the caller's goroutine when
	// nothing is queued.
	SendNow(*wsconn.Prepared) bool
	// Close sends a close frame with code and takes no more frames.
	Close(code int, reason string)
	// CloseAfter queues f, then the close frame.
	CloseAfter(f *wsconn.Prepared, code int, reason string)
	// Done says that n bytes of received messages were handled: the
	// transport stops reading while too much is not.
	Done(n int)
}

var _ Socket = (*wsconn.Conn)(nil)

// sendEvent encodes and queues one event for this socket only.
func sendEvent(s Socket, event, channel, data string) bool {
	return s.Send(wsconn.NewPrepared(pusher.EncodeEvent(event, channel, data, "")))
}

// sendError queues a pusher:error; the socket stays open.
func sendError(s Socket, e *pusher.Error) bool {
	return sendEvent(s, "pusher:error", "", pusher.ErrorData(e.Code, e.Message()))
}

// closeWithError sends pusher:error followed by a close with the same code,
// as Pusher does.
func closeWithError(s Socket, e *pusher.Error) {
	f := wsconn.NewPrepared(pusher.EncodeEvent("pusher:error", "", pusher.ErrorData(e.Code, e.Message()), ""))
	s.CloseAfter(f, int(e.Code), e.Message())
}

// closeSocket closes a socket with a Pusher code.
func closeSocket(s Socket, code pusher.Code, reason string) { s.Close(int(code), reason) }
