package wsconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Errors that end a socket while reading. Each maps to a WebSocket close code
// (see closeCode).
var (
	errProtocol    = errors.New("websocket protocol error")
	errTooBig      = errors.New("message too big")
	errBinary      = errors.New("binary messages are not supported: send JSON text frames")
	errInvalidUTF8 = errors.New("text message is not valid UTF-8")
)

// closeCode is the close status for an error returned by feed.
func closeCode(err error) int {
	switch {
	case errors.Is(err, errTooBig):
		return StatusMessageTooBig
	case errors.Is(err, errBinary):
		return StatusUnsupportedData
	case errors.Is(err, errInvalidUTF8):
		return StatusInvalidPayload
	default:
		return StatusProtocolError
	}
}

// frameEvents receives what frameReader finds. payload slices are only valid
// during the call.
type frameEvents interface {
	message(payload []byte)
	fragment() // the first frame of a fragmented message arrived
	ping(payload []byte)
	pong()
	peerClose(code int)
}

// frameReader parses masked client frames (RFC 6455) from a byte stream fed
// in arbitrary pieces. It keeps only an unfinished frame between feeds, so an
// idle socket costs nothing here.
type frameReader struct {
	limit  int64  // largest message; set at construction
	pend   []byte // bytes of an unfinished frame
	frag   []byte // a fragmented message so far
	inFrag bool
}

// feed parses data, calling ev for each complete message and control frame.
// An error means the socket must be closed with closeCode(err).
func (r *frameReader) feed(data []byte, ev frameEvents) error {
	carried := len(r.pend) > 0
	if carried {
		r.pend = append(r.pend, data...) // amortized: a big frame in many pieces stays linear
		data = r.pend
	}
	consumed := 0
	for consumed < len(data) {
		n, err := r.frame(data[consumed:], ev)
		if err != nil {
			r.pend = nil
			return err
		}
		if n == 0 { // incomplete: keep the rest for the next feed
			break
		}
		consumed += n
	}
	rest := data[consumed:]
	switch {
	case len(rest) == 0:
		r.pend = nil // an idle socket keeps no buffer
	case carried && consumed == 0:
		// r.pend already holds exactly the unfinished frame
	case carried:
		r.pend = append(r.pend[:0], rest...)
	default:
		r.pend = append([]byte(nil), rest...) // data is the caller's reused buffer
	}
	return nil
}

// frame parses one frame at the start of b; it returns 0 if b holds only
// part of it.
func (r *frameReader) frame(b []byte, ev frameEvents) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	fin := b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return 0, fmt.Errorf("%w: reserved bits set (no extension was negotiated)", errProtocol)
	}
	op := b[0] & 0x0f
	if b[1]&0x80 == 0 {
		return 0, fmt.Errorf("%w: client frames must be masked", errProtocol)
	}
	length := uint64(b[1] & 0x7f)
	h := 2
	switch length {
	case 126:
		if len(b) < 4 {
			return 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[2:]))
		h = 4
	case 127:
		if len(b) < 10 {
			return 0, nil
		}
		length = binary.BigEndian.Uint64(b[2:])
		h = 10
		if length>>63 != 0 {
			return 0, fmt.Errorf("%w: bad length", errProtocol)
		}
	}
	if op == opBinary {
		// Refused from the header alone: its payload is never buffered.
		return 0, errBinary
	}
	if op >= 8 {
		if !fin || length > 125 {
			return 0, fmt.Errorf("%w: control frames must be whole and at most 125 bytes", errProtocol)
		}
	} else if length > uint64(r.limit) || uint64(len(r.frag))+length > uint64(r.limit) {
		return 0, errTooBig
	}
	total := uint64(h) + 4 + length
	if uint64(len(b)) < total {
		return 0, nil
	}
	var mask [4]byte
	copy(mask[:], b[h:h+4])
	payload := b[h+4 : total]
	for i := range payload {
		payload[i] ^= mask[i&3]
	}
	switch op {
	case opText:
		if r.inFrag {
			return 0, fmt.Errorf("%w: new message inside a fragmented one", errProtocol)
		}
		if fin {
			if !utf8.Valid(payload) {
				return 0, errInvalidUTF8
			}
			ev.message(payload)
		} else {
			r.inFrag = true
			r.frag = append(r.frag[:0:0], payload...)
			ev.fragment()
		}
	case 0x0: // continuation
		if !r.inFrag {
			return 0, fmt.Errorf("%w: continuation without a message", errProtocol)
		}
		r.frag = append(r.frag, payload...)
		if fin {
			// A rune may straddle fragments: only the whole message is checked.
			if !utf8.Valid(r.frag) {
				return 0, errInvalidUTF8
			}
			ev.message(r.frag)
			r.frag, r.inFrag = nil, false
		}
	case opPing:
		ev.ping(payload)
	case opPong:
		ev.pong()
	case opClose:
		code := 1005 // no status received
		if len(payload) >= 2 {
			code = int(binary.BigEndian.Uint16(payload))
		} else if len(payload) == 1 {
			return 0, fmt.Errorf("%w: one-byte close payload", errProtocol)
		}
		ev.peerClose(code)
	default:
		return 0, fmt.Errorf("%w: unknown opcode %d", errProtocol, op)
	}
	return int(total), nil
}
