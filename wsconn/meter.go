package wsconn

import "time"

// Meter counts what one socket does, for metrics. Its methods run on the
// delivery path: they must be cheap, never block and never allocate.
type Meter interface {
	// Received is called for each complete message read, with its size.
	Received(bytes int)
	// Sent is called after each write to the network: frames written, bytes.
	Sent(frames, bytes int)
	// Delivered is called for each written frame that was stamped (Stamp)
	// when its publish was accepted, with the time since.
	Delivered(latency time.Duration)
	// Closed is called once when the socket ends, with the close status
	// that ended it: the one Parley sent, else the client's, else 1006
	// (the connection dropped without a close handshake).
	Closed(code int)
}

// SetMeter sets the socket's meter; call it before Serve, at most once.
func (c *Conn) SetMeter(m Meter) { c.meter = m }

// epoch is the reference of Prepared stamps (monotonic).
var epoch = time.Now()

// Stamp records now as the time the frame's publish was accepted, so the
// sockets that write it report the delivery latency to their Meter. Call it
// before the frame is shared.
func (p *Prepared) Stamp() { p.born = int64(time.Since(epoch)) }

// Unstamped is the same frame without its stamp, for sending again later
// (a cache channel's replay) without counting the wait as delivery latency.
func (p *Prepared) Unstamped() *Prepared {
	if p.born == 0 {
		return p
	}
	q := *p
	q.born = 0
	return &q
}
