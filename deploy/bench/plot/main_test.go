package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fixtures(t *testing.T) []point {
	t.Helper()
	var ps []point
	for _, f := range []string{"testdata/curve-parley-n100-d1000-1.json", "testdata/curve-soketi-n100-d1000-1.json", "testdata/curve-floor-n100-d300000-1.json"} {
		p, err := readPoint(f)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

func TestReadPoint(t *testing.T) {
	ps := fixtures(t)
	if p := ps[0]; p.Server != "parley" || p.Subs != 100 || p.Deliveries != 1000 || p.P99MS != 2.5 || p.CPUUS != 9.5 || p.Failed != "" {
		t.Fatalf("parley point %+v", p)
	}
	if p := ps[1]; p.Failed != "lost 10 of 10000" {
		t.Fatalf("soketi point lost deliveries but %+v", p)
	}
	// No report at all (the file does not exist): a failed point, kept.
	if p := ps[2]; p.Server != "floor" || p.Deliveries != 300000 || p.Failed != "no report" {
		t.Fatalf("missing report %+v", p)
	}
	if _, err := readPoint("testdata/other.json"); err == nil {
		t.Fatal("a name that is no grid point was accepted")
	}
	slow := report{Completed: true, EventsScheduled: 10, EventsSent: 10, Expected: 100, DeliveriesPerSecond: 800}
	if f := failure(slow, 1000); f == "" {
		t.Fatal("80% of the nominal rate passed")
	}
	slow.DeliveriesPerSecond = 950
	if f := failure(slow, 1000); f != "" {
		t.Fatalf("95%% of the nominal rate failed: %s", f)
	}
}

func TestPlotHoldsSeries(t *testing.T) {
	ps := fixtures(t)
	for _, pn := range []panel{latencyPanel, cpuPanel} {
		var b bytes.Buffer
		if err := pn.draw(&b, ps); err != nil {
			t.Fatal(err)
		}
		svg := b.String()
		if !strings.HasPrefix(strings.TrimSpace(svg), "<?xml") || !strings.Contains(svg, "</svg>") {
			t.Fatalf("%s: not an SVG document: %.200s", pn.title, svg)
		}
		for _, want := range []string{"Parley, 100 subscribers", "soketi 1.6.1, 100 subscribers", "floor, 100 subscribers", "failed:", pn.ylabel} {
			if !strings.Contains(svg, want) {
				t.Errorf("%s: the SVG lacks %q", pn.title, want)
			}
		}
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	table(&b, fixtures(t))
	out := b.String()
	for _, want := range []string{"floor: p99 ms", "Parley: p99 ms", "100\t1000\t10\t-\t2.5, 9.5\tFAILED (lost 10 of 10000): 3.5, 8.1", "100\t300000\t3000\tFAILED (no report): -, -\t-\t-"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// scaleFixtures writes scale-out.sh reports into a temporary folder:
// 1 node holds 10k (20k is over the limit; the 30k that held after it does
// not count), 3 nodes hold 20k, 30k and nothing in their three sweeps.
func scaleFixtures(t *testing.T) []point {
	t.Helper()
	dir := t.TempDir()
	steps := []struct {
		name      string
		p99       float64
		lost, dup int
	}{
		{"scale-1nodes-n1000-d10000-1.json", 5, 0, 0},
		{"scale-1nodes-n1000-d20000-1.json", 300, 0, 0},
		{"scale-1nodes-n1000-d30000-1.json", 40, 0, 0},
		{"scale-3nodes-n1000-d10000-1.json", 4, 0, 0},
		{"scale-3nodes-n1000-d20000-1.json", 9, 0, 0},
		{"scale-3nodes-n1000-d30000-1.json", 12, 0, 3},
		{"scale-3nodes-n1000-d10000-2.json", 4, 0, 0},
		{"scale-3nodes-n1000-d20000-2.json", 8, 0, 0},
		{"scale-3nodes-n1000-d30000-2.json", 200, 0, 0},
		{"scale-3nodes-n1000-d10000-3.json", 3, 7, 0},
	}
	var ps []point
	for _, s := range steps {
		body := fmt.Sprintf(`{"completed":true,"subscribers":1000,"channels":10,"rate_per_second":100,"events_scheduled":1500,
			"events_sent":1500,"publish_errors":0,"expected":150000,"lost":%d,"duplicates":%d,"deliveries_per_second":10000,
			"latency":{"p99_ms":%g},"server":{"cpu_us_per_delivery":12}}`, s.lost, s.dup, s.p99)
		path := filepath.Join(dir, s.name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := readScalePoint(path, 250)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	// A step whose bench left no report still counts, as not held.
	p, err := readScalePoint(filepath.Join(dir, "scale-1nodes-n1000-d40000-1.json"), 250)
	if err != nil {
		t.Fatal(err)
	}
	return append(ps, p)
}

func TestScaleHeld(t *testing.T) {
	ps := scaleFixtures(t)
	if p := ps[1]; p.Nodes != 1 || p.Sweep != 1 || p.Deliveries != 20000 || p.Failed != "p99 300 ms > 250 ms" {
		t.Fatalf("over the limit: %+v", p)
	}
	if p := ps[5]; p.Failed != "3 duplicates" {
		t.Fatalf("duplicates: %+v", p)
	}
	if p := ps[9]; p.Failed != "lost 7 of 150000" {
		t.Fatalf("lost: %+v", p)
	}
	if p := ps[10]; p.Failed != "no report" {
		t.Fatalf("no report: %+v", p)
	}
	h := held(ps)
	want := map[sweepKey]float64{{1, 1}: 10000, {3, 1}: 20000, {3, 2}: 30000, {3, 3}: 0}
	if len(h) != len(want) {
		t.Fatalf("held %v, want %v", h, want)
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("%d nodes sweep %d held %g, want %g", k.nodes, k.sweep, h[k], v)
		}
	}
	med, nodes := heldMedians(ps)
	if len(nodes) != 2 || med[1] != 10000 || med[3] != 20000 {
		t.Errorf("medians %v over %v, want 1: 10000, 3: 20000", med, nodes)
	}
	if _, err := readScalePoint("testdata/curve-parley-n100-d1000-1.json", 250); err == nil {
		t.Error("a curve report was taken for a scale-out step")
	}
}

func TestScalePlotAndTable(t *testing.T) {
	ps := scaleFixtures(t)
	var b bytes.Buffer
	if err := drawScale(&b, ps, 250); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	if !strings.HasPrefix(strings.TrimSpace(svg), "<?xml") || !strings.Contains(svg, "</svg>") {
		t.Fatalf("not an SVG document: %.200s", svg)
	}
	for _, want := range []string{"1 node, sweep 1", "3 nodes, sweep 3", "limit: p99 250 ms", "1 node: 10k/s", "3 nodes: 20k/s (2.00×)", "linear: 10k × N"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the SVG lacks %q", want)
		}
	}
	b.Reset()
	scaleTable(&b, ps)
	out := b.String()
	for _, want := range []string{"1\t20000\t1\t300\t12\tnot held: p99 300 ms > 250 ms", "3\t3\t0", "3 nodes: median 20000 deliveries/s held, 2.00× 1 node"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
