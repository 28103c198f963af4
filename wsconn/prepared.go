package wsconn

import (
	"encoding/binary"
	"strings"
)

// WebSocket opcodes (RFC 6455).
const (
	opText   = 0x1
	opBinary = 0x2 // refused on read: Pusher is JSON text
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// Prepared is a complete, unmasked WebSocket frame ready for the wire. One is
// built per publish and shared, read-only, by every socket that receives it.
type Prepared struct {
	wire    []byte // header + payload
	payload int    // offset of the payload in wire; -1: the rest of a frame partly written
	born    int64  // Stamp: when its publish was accepted (since epoch); 0 = not stamped
}

// NewPrepared frames a text message. payload is copied.
func NewPrepared(payload []byte) *Prepared { return newFrame(opText, payload) }

func newFrame(op byte, payload []byte) *Prepared {
	var hdr [maxHeader]byte
	h := putHeader(&hdr, op, len(payload))
	wire := make([]byte, h+len(payload))
	copy(wire, hdr[:h])
	copy(wire[h:], payload)
	return &Prepared{wire: wire, payload: h}
}

// NewPreparedWith frames the text message that appendPayload appends to
// the slice it is given, written in place in the frame's own buffer (size
// is a guess at its length): NewPrepared without the payload's own buffer
// and its copy.
func NewPreparedWith(size int, appendPayload func([]byte) []byte) *Prepared {
	buf := appendPayload(make([]byte, maxHeader, maxHeader+size))
	var hdr [maxHeader]byte
	h := putHeader(&hdr, opText, len(buf)-maxHeader)
	copy(buf[maxHeader-h:], hdr[:h])
	return &Prepared{wire: buf[maxHeader-h:], payload: h}
}

// maxHeader is the longest header of an unmasked frame.
const maxHeader = 10

// putHeader writes the header of a final frame of n payload bytes and
// returns its length.
func putHeader(hdr *[maxHeader]byte, op byte, n int) int {
	hdr[0] = 0x80 | op // FIN
	switch {
	case n < 126:
		hdr[1] = byte(n)
		return 2
	case n <= 0xFFFF:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
		return 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		return 10
	}
}

// maxCloseReason is the room for a reason in a close frame: a control
// frame's 125 bytes less the 2-byte status.
const maxCloseReason = 123

// closeFrame builds a close control frame with a status code and reason.
// Browsers fail the connection on a close reason that is not valid UTF-8, so
// invalid bytes are replaced and a long reason is cut at a rune boundary.
func closeFrame(code int, reason string) *Prepared {
	reason = CutUTF8(strings.ToValidUTF8(reason, "\uFFFD"), maxCloseReason)
	p := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	copy(p[2:], reason)
	return newFrame(opClose, p)
}

// Payload is the frame's message bytes (the Pusher JSON).
func (p *Prepared) Payload() []byte { return p.wire[p.payload:] }

// Size is the frame's length on the wire.
func (p *Prepared) Size() int { return len(p.wire) }

func (p *Prepared) isText() bool { return p.wire[0]&0x0f == opText }
