//go:build !linux

package wsconn

import (
	"syscall"
	"time"
)

// Elsewhere the write deadline alone bounds a peer that stops acknowledging.
func setUserTimeout(syscall.RawConn, time.Duration) {}
