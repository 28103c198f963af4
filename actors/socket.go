package actors

import (
	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// Pusher messages on a socket: what the actors send is the Pusher protocol
// (package pusher) carried by the WebSocket transport (package wsconn).

// sendEvent encodes and queues one event for this socket only.
func sendEvent(s *wsconn.Conn, event, channel, data string) bool {
	return s.Send(wsconn.NewPrepared(pusher.EncodeEvent(event, channel, data, "")))
}

// sendEventNow is sendEvent written at once when nothing is queued (see
// wsconn.Conn.SendNow); the first message of a socket opened with
// HelloWithFirstFrame then goes out with the 101 response in one write(2).
func sendEventNow(s *wsconn.Conn, event, channel, data string) bool {
	return s.SendNow(wsconn.NewPrepared(pusher.EncodeEvent(event, channel, data, "")))
}

// sendError queues a pusher:error; the socket stays open.
func sendError(s *wsconn.Conn, e *pusher.Error) bool {
	return sendEvent(s, "pusher:error", "", pusher.ErrorData(e.Code, e.Message()))
}

// closeWithError sends pusher:error followed by a close with the same code,
// as Pusher does.
func closeWithError(s *wsconn.Conn, e *pusher.Error) {
	f := wsconn.NewPrepared(pusher.EncodeEvent("pusher:error", "", pusher.ErrorData(e.Code, e.Message()), ""))
	s.CloseAfter(f, int(e.Code), e.Message())
}

// closeSocket closes a socket with a Pusher code.
func closeSocket(s *wsconn.Conn, code pusher.Code, reason string) { s.Close(int(code), reason) }
