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
	n := len(payload)
	var hdr [10]byte
	hdr[0] = 0x80 | op // FIN
	h := 2
	switch {
	case n < 126:
		hdr[1] = byte(n)
	case n <= 0xFFFF:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
		h = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		h = 10
	}
	wire := make([]byte, h+n)
	copy(wire, hdr[:h])
	copy(wire[h:], payload)
	return &Prepared{wire: wire, payload: h}
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
