//go:build !linux

package wsconn

import "syscall"

func rawWrite(fd int, p []byte) (int, error) { return syscall.Write(fd, p) }
