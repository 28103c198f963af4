//go:build linux

package wsconn

import (
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// The poller replaces a goroutine blocked in read per socket (several KB of
// stack each) by one epoll loop: when a socket becomes readable, a reader
// goroutine reads what is there and parses it.

type poller struct {
	epfd int
	// ep is epfd in Go's netpoller: run waits there for the epoll set to
	// have events, parked like any goroutine blocked in a read, instead of
	// holding a thread and its P in a blocking epoll_wait.
	ep     syscall.RawConn
	epFile *os.File // kept: its finalizer would close epfd
	// ready hands a readable socket to an idle reader: long-lived
	// goroutines whose stacks have grown once (a new goroutine per event
	// starts small and grows through the parser and the handler).
	// Unbuffered: a send succeeds only to an idle reader; otherwise the
	// socket gets a goroutine of its own, so no socket waits for another.
	ready chan *Conn

	mu    sync.Mutex
	conns map[uint64]*Conn // guarded by mu; poll id → socket
	next  uint64           // guarded by mu
}

var (
	pollOnce sync.Once
	thePoll  *poller // nil when epoll is unavailable: sockets fall back to readBlocking
)

func getPoller() *poller {
	pollOnce.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		f, ep, err := pollable(fd)
		if err != nil {
			return
		}
		thePoll = &poller{epfd: fd, ep: ep, epFile: f, conns: map[uint64]*Conn{}, ready: make(chan *Conn)}
		for range 2 * runtime.GOMAXPROCS(0) {
			go thePoll.reader()
		}
		go thePoll.run()
	})
	return thePoll
}

// Sockets are edge-triggered: epoll reports a socket when it becomes
// readable (more data, the peer's FIN), and Conn.rd makes sure one reader
// at a time reads it until it is drained. A level-triggered one-shot
// registration would need an epoll_ctl to re-arm after every read: a
// system call per message a client sends.
const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET

const epollET = 1 << 31 // syscall.EPOLLET, which is a negative int

func pollerAdd(c *Conn) error {
	p := getPoller()
	if p == nil {
		return syscall.ENOSYS
	}
	p.mu.Lock()
	p.next++
	c.pollID = p.next
	p.conns[c.pollID] = c
	p.mu.Unlock()
	if err := p.ctl(c, syscall.EPOLL_CTL_ADD); err != nil {
		p.mu.Lock()
		delete(p.conns, c.pollID)
		p.mu.Unlock()
		return err
	}
	return nil
}

func pollerRemove(c *Conn) {
	if c.pollID == 0 || thePoll == nil {
		return
	}
	thePoll.mu.Lock()
	delete(thePoll.conns, c.pollID)
	thePoll.mu.Unlock()
	// The fd is closed right after; closing removes it from the epoll set.
}

// ctl changes the socket's registration. It runs inside RawConn.Control, so
// the fd cannot be closed (and its number reused) meanwhile.
func (p *poller) ctl(c *Conn, op int) error {
	o := ctlOps.Get().(*ctlOp)
	o.epfd, o.op = p.epfd, op
	o.ev = syscall.EpollEvent{Events: pollEvents, Fd: int32(uint32(c.pollID)), Pad: int32(uint32(c.pollID >> 32))}
	err := c.rc.Control(o.fn)
	if err == nil {
		err = o.err
	}
	*o = ctlOp{fn: o.fn}
	ctlOps.Put(o)
	return err
}

// ctlOp is one epoll_ctl, pooled with its callback bound once so that
// registering a socket allocates nothing.
type ctlOp struct {
	ev       syscall.EpollEvent
	epfd, op int
	err      error
	fn       func(fd uintptr)
}

var ctlOps = sync.Pool{New: func() any {
	o := &ctlOp{}
	o.fn = o.ctl
	return o
}}

func (o *ctlOp) ctl(fd uintptr) { o.err = rawEpollCtl(o.epfd, o.op, int(fd), &o.ev) }

// pollable registers the epoll descriptor epfd itself with Go's netpoller:
// it is readable while its set has events. On failure epfd is closed.
func pollable(epfd int) (*os.File, syscall.RawConn, error) {
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, nil, err
	}
	f := os.NewFile(uintptr(epfd), "wsconn-epoll") // f owns epfd from here on
	// Check that the netpoller took it (a file it cannot poll has no
	// deadlines): otherwise a read callback would be retried in a busy loop.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rc, nil
}

func (p *poller) run() {
	events := make([]syscall.EpollEvent, 256)
	var n int
	var werr error
	poll := func(fd uintptr) bool { // made once: a closure per wait would be an allocation
		n, werr = rawEpollPoll(int(fd), events)
		return n > 0 || werr != nil && werr != syscall.EINTR
	}
	owned := make([]*Conn, 0, len(events))
	op := &readOp{}
	op.fn = op.read
	for {
		err := p.ep.Read(poll)
		if err != nil || werr != nil {
			return
		}
		p.mu.Lock()
		for i := 0; i < n; i++ {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if c := p.conns[id]; c != nil && c.readable(events[i].Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0) {
				owned = append(owned, c)
			}
		}
		p.mu.Unlock()
		for i, c := range owned {
			owned[i] = nil
			// An idle reader takes the socket. When none is idle, which
			// in a burst is most of the time (a reader just handed one is
			// not back yet), the poller reads it once itself: a new
			// goroutine per socket would grow its stack through the
			// parser and the handler every time. A socket with more to
			// read than one read takes goes on on a goroutine of its own.
			select {
			case p.ready <- c:
			default:
				if c.readFor(op, 1) {
					go c.readReady()
				}
			}
		}
		owned = owned[:0]
	}
}

// readable records that c became readable, and reports whether the caller
// must start a reader for it: none owns it. A reader that owns it reads
// again before it lets go (rdAgain). With end, the peer closed (or the
// socket failed), perhaps right behind data reported in the same event: the
// new reader too reads again after a short read, to find the end.
func (c *Conn) readable(end bool) bool {
	for {
		s := c.rd.Load()
		switch {
		case s&rdReading == 0:
			n := s | rdReading
			if end {
				n |= rdAgain
			}
			if c.rd.CompareAndSwap(s, n) {
				return true
			}
		case s&rdAgain != 0:
			return false
		case c.rd.CompareAndSwap(s, s|rdAgain):
			return false
		}
	}
}

// drained lets go of c once a read found nothing more, and reports whether
// the reader must read again instead: the socket became readable since.
func (c *Conn) drained() (again bool) {
	for {
		s := c.rd.Load()
		if s&rdAgain != 0 {
			if c.rd.CompareAndSwap(s, s&^rdAgain) {
				return true
			}
			continue
		}
		if c.rd.CompareAndSwap(s, s&^rdReading) {
			return false
		}
	}
}

// dispatch hands c, which the caller made its reader's, to an idle reader,
// or to a goroutine of its own.
func (p *poller) dispatch(c *Conn) {
	select {
	case p.ready <- c:
	default:
		go c.readReady()
	}
}

// resume reads a socket again that its reader left over the backlog (Done
// cleared rdPaused; the socket is still the reader's).
func (c *Conn) resume() { thePoll.dispatch(c) }

// reader reads the sockets handed to it, one at a time.
func (p *poller) reader() {
	for c := range p.ready {
		c.readReady()
	}
}

// readOp is a read buffer with its read(2) callback bound once, pooled:
// reading allocates nothing.
type readOp struct {
	buf [16 << 10]byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

var readOps = sync.Pool{New: func() any {
	o := &readOp{}
	o.fn = o.read
	return o
}}

func (o *readOp) read(fd uintptr) bool {
	o.n, o.err = rawRead(int(fd), o.buf[:])
	return true // never park in Go's poller: epoll tells us when to come back
}

// readReady reads the socket until it is drained, for the reader that owns
// it (rdReading).
func (c *Conn) readReady() {
	o := readOps.Get().(*readOp)
	c.readFor(o, -1)
	readOps.Put(o)
}

// readFor reads the socket, which the caller owns (rdReading), until it is
// drained or, with max > 0, max reads are made; more reports that they were
// and the socket is still the caller's to read. While the consumer is over
// MaxInboundBacklog the reader stops and the socket stays its own, so
// nothing reads it, the kernel's receive buffer fills and TCP flow control
// stops the client; Done resumes.
func (c *Conn) readFor(o *readOp, max int) (more bool) {
	for ; max != 0; max-- {
		err := c.rc.Read(o.fn)
		n, rerr := o.n, o.err
		switch {
		case err != nil: // closed under us
			c.end()
			return false
		case rerr == syscall.EINTR:
			continue
		case rerr == syscall.EAGAIN:
			if c.drained() {
				continue
			}
			return false
		case rerr != nil || n == 0: // error or EOF
			c.end()
			return false
		}
		if !c.consume(o.buf[:n]) {
			return false // reading is over: the socket stays the reader's for good
		}
		if c.overBacklog() {
			return false // Done resumes once the consumer catches up
		}
		if n < len(o.buf) && !c.drained() { // a short read took everything there was
			return false
		}
	}
	return true
}
