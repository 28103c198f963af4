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
