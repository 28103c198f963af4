//go:build linux

package wsconn

import (
	"syscall"
	"unsafe"
)

// System calls on non-blocking descriptors, made without the runtime's
// syscall bookkeeping (syscall.RawSyscall). A call through syscall.Syscall
// marks its P as "in a system call"; when one takes longer than a tick of
// the runtime's monitor (20 µs) — a write to a loopback socket does the
// peer's receive path inline and often does — the monitor may hand the P to
// another thread, waking it, and the caller then has to find a P again. A
// connect makes a dozen such calls. None of these can block: each socket is
// non-blocking, and the poller's epoll_wait has a zero timeout (it waits in
// Go's netpoller instead, see poll_linux.go).

func rawRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawEpollCtl(epfd, op, fd int, ev *syscall.EpollEvent) error {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// rawEpollPoll is epoll_wait with a zero timeout: the events ready now.
func rawEpollPoll(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
