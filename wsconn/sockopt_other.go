//go:build !linux

package wsconn

import (
	"syscall"
	"time"
)

// Elsewhere the write deadline alone bounds a peer that stops acknowledging.
func setUserTimeout(syscall.RawConn, time.Duration) {}

// unsent cannot tell here how much the peer has not acknowledged.
func unsent(syscall.RawConn) int { return -1 }
