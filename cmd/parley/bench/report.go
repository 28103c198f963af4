package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// report is what every scenario returns: a JSON-encodable struct that can
// also render itself as table rows.
type report interface {
	common() *runInfo
	rows() []row
}

type row struct{ label, value string }

// runInfo is the part of every report that does not depend on the
// scenario. JSON keys are part of the interface for machines: keep them.
type runInfo struct {
	Scenario    string        `json:"scenario"`
	Target      string        `json:"target"`
	StartedAt   time.Time     `json:"started_at"`
	WallSeconds float64       `json:"wall_seconds"`
	Completed   bool          `json:"completed"`
	Bench       benchCPU      `json:"bench"`
	Server      *serverReport `json:"server"` // null without --server-pid
	Errors      []string      `json:"errors"`
	Notes       []string      `json:"notes"`
}

func (r *runInfo) common() *runInfo { return r }

func (r *runInfo) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// benchCPU is the load generator's own CPU use over the measured phase. A
// percentage near cores×100 means the bench, not the server, was the limit.
type benchCPU struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPercent float64 `json:"cpu_percent_of_one_core"`
	Cores      int     `json:"cores"`
}

// cpuMeter measures the bench's CPU over an interval.
type cpuMeter struct {
	wall0 time.Time
	cpu0  time.Duration
}

func startCPU() cpuMeter { return cpuMeter{time.Now(), selfCPU()} }

func (m cpuMeter) stop() benchCPU {
	cpu := selfCPU() - m.cpu0
	wall := time.Since(m.wall0)
	b := benchCPU{CPUSeconds: round(cpu.Seconds(), 3), Cores: runtime.NumCPU()}
	if wall > 0 {
		b.CPUPercent = round(100*cpu.Seconds()/wall.Seconds(), 1)
	}
	return b
}

// serverReport holds the server's figures from /proc (--server-pid).
type serverReport struct {
	PID                   int     `json:"pid"`                      // the first --server-pid
	PIDs                  []int   `json:"pids"`                     // all of them; the figures are their sums
	RSSBeforeBytes        int64   `json:"rss_before_bytes"`         // before the bench connected
	RSSHeldBytes          int64   `json:"rss_held_bytes"`           // with every socket connected
	RSSPerConnectionBytes float64 `json:"rss_per_connection_bytes"` // (held − before) ÷ sockets
	CPUSecondsConnect     float64 `json:"cpu_seconds_connect"`      // during the connect ramp
	CPUMicrosPerConn      float64 `json:"cpu_us_per_connection"`
	CPUSecondsPublish     float64 `json:"cpu_seconds_publish"` // publish phase and drain
	CPUMicrosPerDelivery  float64 `json:"cpu_us_per_delivery"`
}

func (s *serverReport) setRSS(before, held int64, sockets int64) {
	s.RSSBeforeBytes, s.RSSHeldBytes = before, held
	if sockets > 0 {
		s.RSSPerConnectionBytes = round(float64(held-before)/float64(sockets), 1)
	}
}

func (s *serverReport) setConnectCPU(cpu time.Duration, sockets int64) {
	s.CPUSecondsConnect = round(cpu.Seconds(), 3)
	if sockets > 0 {
		s.CPUMicrosPerConn = round(float64(cpu.Microseconds())/float64(sockets), 3)
	}
}

func (s *serverReport) setPublishCPU(cpu time.Duration, deliveries int64) {
	s.CPUSecondsPublish = round(cpu.Seconds(), 3)
	if deliveries > 0 {
		s.CPUMicrosPerDelivery = round(float64(cpu.Microseconds())/float64(deliveries), 3)
	}
}

// latencySummary is a histogram's percentiles in milliseconds.
type latencySummary struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

func summarize(h *histogram) latencySummary {
	ms := func(ns int64) float64 { return round(float64(ns)/1e6, 3) }
	return latencySummary{
		Count: h.Count(),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
		Mean:  round(h.Mean()/1e6, 3),
	}
}

func (l latencySummary) String() string {
	if l.Count == 0 {
		return "n/a"
	}
	return fmt.Sprintf("p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms", l.P50, l.P90, l.P99, l.P999, l.Max)
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

// headRows and tailRows frame every scenario's own rows.
func headRows(r *runInfo) []row {
	return []row{
		{"scenario", r.Scenario},
		{"target", r.Target},
		{"started", r.StartedAt.Format(time.RFC3339)},
	}
}

func tailRows(r *runInfo) []row {
	rows := []row{
		{"wall time", fmt.Sprintf("%.2fs", r.WallSeconds)},
		{"completed", fmt.Sprint(r.Completed)},
		{"bench CPU", fmt.Sprintf("%.1f%% of one core (%.2fs CPU, %d cores)", r.Bench.CPUPercent, r.Bench.CPUSeconds, r.Bench.Cores)},
	}
	if s := r.Server; s != nil {
		rows = append(rows,
			row{"server pid", pidList(s.PIDs)},
			row{"server RSS", fmt.Sprintf("%s before, %s held, %.0f B/connection", fmtBytes(s.RSSBeforeBytes), fmtBytes(s.RSSHeldBytes), s.RSSPerConnectionBytes)},
			row{"server CPU connect", fmt.Sprintf("%.3fs, %.1f µs/connection", s.CPUSecondsConnect, s.CPUMicrosPerConn)},
		)
		if s.CPUSecondsPublish > 0 || s.CPUMicrosPerDelivery > 0 {
			rows = append(rows, row{"server CPU publish", fmt.Sprintf("%.3fs, %.2f µs/delivery", s.CPUSecondsPublish, s.CPUMicrosPerDelivery)})
		}
	}
	for _, n := range r.Notes {
		rows = append(rows, row{"note", n})
	}
	for _, e := range r.Errors {
		rows = append(rows, row{"error", e})
	}
	return rows
}

func pidList(pids []int) string {
	f := intsFlag{v: pids}
	if len(pids) > 1 {
		return f.String() + " (figures are their sums)"
	}
	return f.String()
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// writeReport prints the table to w and, with path set, the JSON to path.
func writeReport(w io.Writer, path string, r report) error {
	info := r.common()
	if info.Errors == nil {
		info.Errors = []string{}
	}
	if info.Notes == nil {
		info.Notes = []string{}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	all := append(append(headRows(info), r.rows()...), tailRows(info)...)
	for _, rw := range all {
		fmt.Fprintf(tw, "%s\t%s\n", rw.label, strings.ReplaceAll(rw.value, "\t", " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
