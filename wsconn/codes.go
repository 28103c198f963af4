// Package wsconn is the WebSocket transport (RFC 6455) of Parley's sockets:
// the handshake and upgrade, the frame reader, prepared frames, a bounded
// write queue with coalesced writes, pings, size limits and close statuses.
// It knows nothing of the Pusher protocol it carries (package pusher).
package wsconn

// WebSocket close statuses (RFC 6455 section 7.4.1) that the transport
// sends when a client breaks the wire protocol. A caller closes a socket
// with any status (the Pusher codes are 4000 and up).
const (
	StatusNormalClosure   = 1000 // answer to a client's close
	StatusProtocolError   = 1002 // malformed frame, bad sequence of frames
	StatusUnsupportedData = 1003 // binary message: the protocol carried is JSON text only
	StatusInvalidPayload  = 1007 // text message that is not valid UTF-8
	StatusPolicyViolation = 1008 // fragmented message not finished in time
	StatusMessageTooBig   = 1009 // message over the read limit

	// Statuses a client may report but that must never be sent on the wire.
	statusNoStatus     = 1005
	statusAbnormal     = 1006
	statusTLSHandshake = 1015
)
