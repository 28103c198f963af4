//go:build linux

package wsconn

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout sets TCP_USER_TIMEOUT: the kernel drops the connection when
// sent data stays unacknowledged, or the peer's window stays shut, for d. A
// peer that vanished otherwise keeps its queued data alive for the ~15 minutes
// of TCP retransmissions.
func setUserTimeout(rc syscall.RawConn, d time.Duration) {
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}

// unsent is how many bytes the kernel holds that the peer has not
// acknowledged (SIOCOUTQ), or -1 when it cannot tell.
func unsent(rc syscall.RawConn) int {
	n := -1
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			n = v
		}
	})
	return n
}
