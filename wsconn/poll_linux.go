//go:build linux

package wsconn

import (
	"runtime"
	"sync"
	"syscall"
)

// The poller replaces a goroutine blocked in read per socket (several KB of
// stack each) by one epoll loop: when a socket becomes readable, a short-lived
// goroutine reads what is there, parses it and re-arms the socket.

type poller struct {
	epfd int
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
		thePoll = &poller{epfd: fd, conns: map[uint64]*Conn{}, ready: make(chan *Conn)}
		for range 2 * runtime.GOMAXPROCS(0) {
			go thePoll.reader()
		}
		go thePoll.run()
	})
	return thePoll
}

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

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
	var opErr error
	err := c.rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(uint32(c.pollID)), Pad: int32(uint32(c.pollID >> 32))}
		opErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return opErr
}

func (p *poller) run() {
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		p.mu.Lock()
		for i := 0; i < n; i++ {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if c := p.conns[id]; c != nil {
				select {
				case p.ready <- c:
				default:
					go c.readReady()
				}
			}
		}
		p.mu.Unlock()
	}
}

// reader reads the sockets handed to it, one at a time.
func (p *poller) reader() {
	for c := range p.ready {
		c.readReady()
	}
}

var readBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// readReady reads everything the socket has, then re-arms it. Only one runs
// per socket at a time (EPOLLONESHOT). While the consumer is over
// MaxInboundBacklog the socket stays unarmed, so the kernel's receive buffer
// fills and TCP flow control stops the client.
func (c *Conn) readReady() {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	for {
		var n int
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), buf)
			return true // never park in Go's poller: epoll tells us when to come back
		})
		switch {
		case err != nil: // closed under us
			c.end()
			return
		case rerr == syscall.EINTR:
			continue
		case rerr == syscall.EAGAIN:
			c.rearm()
			return
		case rerr != nil || n == 0: // error or EOF
			c.end()
			return
		}
		if !c.consume(buf[:n]) {
			return
		}
		if c.overBacklog() {
			return // left unarmed: Done re-arms once the consumer catches up
		}
		if n < len(buf) {
			c.rearm()
			return
		}
	}
}

func (c *Conn) rearm() {
	if err := thePoll.ctl(c, syscall.EPOLL_CTL_MOD); err != nil {
		c.end()
	}
}
