//go:build !linux

package wsconn

import "errors"

// Without epoll every socket is read by its own goroutine (readBlocking).
func pollerAdd(*Conn) error { return errors.ErrUnsupported }

func pollerRemove(*Conn) {}

// resume is never reached: without the poller, Done restarts readBlocking.
func (c *Conn) resume() {}
