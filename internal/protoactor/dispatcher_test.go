package protoactor

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// onWorker reports whether the running goroutine is a dispatcher's worker.
func onWorker() bool {
	b := make([]byte, 8<<10)
	return strings.Contains(string(b[:runtime.Stack(b, false)]), "(*WorkerDispatcher).run")
}

// Work scheduled while a worker is idle runs on a worker; while every
// worker is busy it runs at once on a goroutine of its own; after stop it
// still runs.
func TestWorkerDispatcher(t *testing.T) {
	d := NewWorkerDispatcher(2, 300, 0)
	ran := func(fn func()) bool {
		t.Helper()
		on := make(chan bool, 1)
		d.Schedule(func() { fn(); on <- onWorker() })
		select {
		case w := <-on:
			return w
		case <-time.After(5 * time.Second):
			t.Fatal("scheduled work did not run")
			return false
		}
	}
	// One at a time, work lands on the idle workers (now and then, on a
	// loaded machine, no worker is parked again yet when the next comes:
	// that one gets its own goroutine; without workers none lands).
	onWorkers := 0
	for range 20 {
		if ran(func() {}) {
			onWorkers++
		}
	}
	if onWorkers < 10 {
		t.Fatalf("%d of 20 pieces of work ran on the workers", onWorkers)
	}
	// Both workers blocked: more work must not wait for them.
	release := make(chan struct{})
	var blocked sync.WaitGroup
	blocked.Add(2)
	for range 2 {
		d.work <- func() { blocked.Done(); <-release } // taken by a worker
	}
	blocked.Wait()
	if ran(func() {}) {
		t.Fatal("work ran on a worker while both were busy")
	}
	close(release)
	d.Stop()
	ran(func() {})
}

// With a queue, work scheduled while every worker is busy waits for one, up
// to the queue's length; past it, work runs at once on a goroutine of its
// own; after stop, work still queued and work scheduled later still runs.
func TestWorkerDispatcherQueue(t *testing.T) {
	d := NewWorkerDispatcher(1, 300, 2)
	release := make(chan struct{})
	busy := make(chan struct{})
	d.Schedule(func() { close(busy); <-release })
	<-busy
	ran := make(chan bool, 4)
	for range 3 { // two queue, the third gets a goroutine
		d.Schedule(func() { ran <- onWorker() })
	}
	select {
	case w := <-ran:
		if w {
			t.Fatal("work past the queue ran on the busy worker")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("work past the queue waited")
	}
	close(release)
	for range 2 {
		select {
		case w := <-ran:
			if !w {
				t.Fatal("queued work did not run on the worker")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("queued work did not run")
		}
	}
	// Stopped with work queued behind a busy worker.
	release = make(chan struct{})
	busy = make(chan struct{})
	d.Schedule(func() { close(busy); <-release })
	<-busy
	d.Schedule(func() { ran <- true })
	d.Stop()
	close(release)
	d.Schedule(func() { ran <- true })
	for range 2 {
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
			t.Fatal("work queued or scheduled at the stop did not run")
		}
	}
}
