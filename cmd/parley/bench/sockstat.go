package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// sockstatPath is the kernel's socket summary; its TCP "mem" field is the
// memory held by every TCP socket of the host (network namespace), in
// pages: queued data that peers have not read yet shows up there.
const sockstatPath = "/proc/net/sockstat"

// tcpSockstat is the TCP line of /proc/net/sockstat.
type tcpSockstat struct {
	InUse, Orphan, TimeWait, Alloc int64
	MemPages                       int64
}

// parseSockstat reads the "TCP:" line, e.g.
// "TCP: inuse 11 orphan 0 tw 2 alloc 14 mem 17".
func parseSockstat(b []byte) (tcpSockstat, error) {
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte("TCP:"))
		if !ok {
			continue
		}
		var st tcpSockstat
		haveMem := false
		f := bytes.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseInt(string(f[i+1]), 10, 64)
			if err != nil {
				return tcpSockstat{}, fmt.Errorf("%s: TCP %s: %q is not a number", sockstatPath, f[i], f[i+1])
			}
			switch string(f[i]) {
			case "inuse":
				st.InUse = v
			case "orphan":
				st.Orphan = v
			case "tw":
				st.TimeWait = v
			case "alloc":
				st.Alloc = v
			case "mem":
				st.MemPages, haveMem = v, true
			}
		}
		if !haveMem {
			return tcpSockstat{}, fmt.Errorf("%s: the TCP line has no mem field", sockstatPath)
		}
		return st, nil
	}
	return tcpSockstat{}, fmt.Errorf("%s: no TCP line", sockstatPath)
}

func readSockstat() (tcpSockstat, error) {
	b, err := os.ReadFile(sockstatPath)
	if err != nil {
		return tcpSockstat{}, err
	}
	return parseSockstat(b)
}

// tcpMemReport is the host's TCP memory over a run. It is host-wide:
// other processes' sockets count too, so only differences between runs on
// a quiet machine mean much.
type tcpMemReport struct {
	PageSize    int   `json:"page_size"`
	StartBytes  int64 `json:"start_bytes"` // before the bench connected
	PeakBytes   int64 `json:"peak_bytes"`  // highest sample (every 100 ms)
	EndBytes    int64 `json:"end_bytes"`   // after the drain, slow consumers still open
	PeakOrphans int64 `json:"peak_orphans"`
	Samples     int64 `json:"samples"`
}

func (m *tcpMemReport) String() string {
	return fmt.Sprintf("%s at start, %s peak, %s at end (host-wide; %d orphans at peak)",
		fmtBytes(m.StartBytes), fmtBytes(m.PeakBytes), fmtBytes(m.EndBytes), m.PeakOrphans)
}

// sockstatInterval is how often the sampler reads /proc/net/sockstat; a
// read costs a few microseconds.
const sockstatInterval = 100 * time.Millisecond

// tcpMemSampler records the start, peak and end of the host's TCP memory.
type tcpMemSampler struct {
	page     int64
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu  sync.Mutex
	rep tcpMemReport // guarded by mu
}

// startTCPMem takes the first sample and keeps sampling until end. It
// returns nil (and the reason) when sockstat cannot be read.
func startTCPMem() (*tcpMemSampler, error) {
	st, err := readSockstat()
	if err != nil {
		return nil, err
	}
	s := &tcpMemSampler{page: int64(os.Getpagesize()), stop: make(chan struct{}), done: make(chan struct{})}
	s.rep.PageSize = int(s.page)
	s.rep.StartBytes = st.MemPages * s.page
	s.record(st)
	go func() {
		defer close(s.done)
		t := time.NewTicker(sockstatInterval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				if st, err := readSockstat(); err == nil {
					s.record(st)
				}
			}
		}
	}()
	return s, nil
}

func (s *tcpMemSampler) record(st tcpSockstat) tcpMemReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.PeakBytes = max(s.rep.PeakBytes, st.MemPages*s.page)
	s.rep.PeakOrphans = max(s.rep.PeakOrphans, st.Orphan)
	s.rep.Samples++
	return s.rep
}

// end takes the last sample, stops the sampler and returns the figures.
// It is safe on a nil sampler, which returns nil.
func (s *tcpMemSampler) end() *tcpMemReport {
	if s == nil {
		return nil
	}
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	st, err := readSockstat()
	s.mu.Lock()
	rep := s.rep
	s.mu.Unlock()
	if err == nil {
		rep = s.record(st)
		rep.EndBytes = st.MemPages * s.page
	}
	return &rep
}
