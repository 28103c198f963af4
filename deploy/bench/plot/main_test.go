package main

import (
	"bytes"
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
