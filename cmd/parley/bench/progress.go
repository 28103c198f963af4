package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress refreshes one status line in place ("\r") on stderr while a
// scenario runs, so a long run shows it is alive without scrolling. When
// stderr is not a terminal (a log file, CI), it prints a plain line now
// and then instead, which reads better there.
type progress struct {
	w      io.Writer
	tty    bool
	start  time.Time
	status func() string // called from the progress goroutine; must be safe for that
	stopCh chan struct{}
	wg     sync.WaitGroup
	last   int // length of the last line, to blank leftovers
}

const (
	progressEvery      = 500 * time.Millisecond
	progressEveryNoTTY = 10 * time.Second
)

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// startProgress begins refreshing; w == nil disables it (--quiet).
func startProgress(w io.Writer, scenario string, status func() string) *progress {
	p := &progress{w: w, tty: isTerminal(w), start: time.Now(), stopCh: make(chan struct{})}
	p.status = func() string {
		return fmt.Sprintf("[%s %5.1fs] %s", scenario, time.Since(p.start).Seconds(), status())
	}
	if w == nil {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		every := progressEvery
		if !p.tty {
			every = progressEveryNoTTY
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stopCh:
				return
			case <-t.C:
				p.print()
			}
		}
	}()
	return p
}

func (p *progress) print() {
	line := p.status()
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	pad := ""
	if n := p.last - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.last = len(line)
	fmt.Fprint(p.w, "\r"+line+pad)
}

// stop prints the final state and ends the line. Safe to call twice.
func (p *progress) stop() {
	if p.w == nil {
		return
	}
	select {
	case <-p.stopCh:
		return
	default:
	}
	close(p.stopCh)
	p.wg.Wait()
	p.print()
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

// fmtMS formats nanoseconds as milliseconds with two decimals.
func fmtMS(ns int64) string { return fmt.Sprintf("%.2fms", float64(ns)/1e6) }
