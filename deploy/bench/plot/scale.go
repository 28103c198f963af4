package main

// The scale-out mode: deploy/bench/scale-out.sh's sweeps, one node and
// several, each node under the same CPU quota.
//
//	go run ./deploy/bench/plot -scale scale-out.svg -p99-limit 250 -table REPORT...
//
// Each REPORT is named scale-<N>nodes-n<SUBSCRIBERS>-d<DELIVERIES>-<SWEEP>.json.
// A step holds when the run completed, every event was published, nothing
// was lost or duplicated and p99 stayed at or under the limit; a sweep
// holds the highest step below its first step that did not hold.

import (
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

var scaleNameRE = regexp.MustCompile(`^scale-([0-9]+)nodes-n([0-9]+)-d([0-9]+)-([0-9]+)\.json$`)

// readScalePoint reads one step of a scale-out sweep; limit is the p99 (ms)
// a step must stay under.
func readScalePoint(path string, limit float64) (point, error) {
	m := scaleNameRE.FindStringSubmatch(filepath.Base(path))
	if m == nil {
		return point{}, fmt.Errorf("%s: not named scale-<N>nodes-n<SUBSCRIBERS>-d<DELIVERIES>-<SWEEP>.json", path)
	}
	nodes, _ := strconv.Atoi(m[1])
	subs, _ := strconv.Atoi(m[2])
	deliveries, _ := strconv.ParseFloat(m[3], 64)
	sweep, _ := strconv.Atoi(m[4])
	p := point{Server: "parley", Nodes: nodes, Sweep: sweep, Subs: subs, Deliveries: deliveries}
	r, failed := readReport(path)
	if failed != "" {
		p.Failed = failed
		return p, nil
	}
	p.EventRate, p.P99MS = r.RatePerSecond, r.Latency.P99
	if r.Server != nil {
		p.CPUUS = r.Server.CPUMicrosPerDelivery
	}
	// The scale-out steps hold by latency, not by keeping up with the
	// nominal rate: failure's keep-up check is off (nominal 0).
	switch f := failure(r, 0); {
	case f != "":
		p.Failed = f
	case r.Duplicates > 0:
		p.Failed = fmt.Sprintf("%d duplicates", r.Duplicates)
	case limit > 0 && r.Latency.P99 > limit:
		p.Failed = fmt.Sprintf("p99 %g ms > %g ms", r.Latency.P99, limit)
	}
	return p, nil
}

// sweepKey names one sweep of one node count.
type sweepKey struct{ nodes, sweep int }

// held is the highest rate each sweep held: the steps in increasing order
// up to the first that failed. A sweep whose first step failed held 0.
func held(points []point) map[sweepKey]float64 {
	bySweep := map[sweepKey][]point{}
	for _, p := range points {
		k := sweepKey{p.Nodes, p.Sweep}
		bySweep[k] = append(bySweep[k], p)
	}
	out := map[sweepKey]float64{}
	for k, ps := range bySweep {
		sort.Slice(ps, func(i, j int) bool { return ps[i].Deliveries < ps[j].Deliveries })
		out[k] = 0
		for _, p := range ps {
			if p.Failed != "" {
				break
			}
			out[k] = p.Deliveries
		}
	}
	return out
}

// heldMedians is, per node count, the median of its sweeps' held rates
// (the lower middle one of an even count), and the node counts in order.
func heldMedians(points []point) (map[int]float64, []int) {
	per := map[int][]float64{}
	for k, v := range held(points) {
		per[k.nodes] = append(per[k.nodes], v)
	}
	med := map[int]float64{}
	var nodes []int
	for n, vs := range per {
		sort.Float64s(vs)
		med[n] = vs[(len(vs)-1)/2]
		nodes = append(nodes, n)
	}
	sort.Ints(nodes)
	return med, nodes
}

// nodeColors cycle over the node counts in increasing order.
var nodeColors = []color.Color{
	color.RGBA{R: 0xe0, G: 0x70, B: 0x10, A: 0xff},
	color.RGBA{R: 0x1f, G: 0x6f, B: 0xc4, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0x94, G: 0x3b, B: 0xb0, A: 0xff},
}

func nodesName(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}

// drawScale writes the scale-out figure: on the left p99 against the
// delivery rate, one line per sweep (failed steps as crosses) and the
// limit; on the right the rate each node count held (median of its
// sweeps) against the node count, beside the line of N × one node's.
func drawScale(w io.Writer, points []point, limit float64) error {
	if len(points) == 0 {
		return errors.New("no points")
	}
	med, nodes := heldMedians(points)
	colorOf := func(n int) color.Color {
		return nodeColors[sort.SearchInts(nodes, n)%len(nodeColors)]
	}

	lat, err := scaleLatency(points, limit, colorOf)
	if err != nil {
		return err
	}
	scale, err := scaleHeld(med, nodes, colorOf)
	if err != nil {
		return err
	}

	const width, height = 11 * vg.Inch, 5 * vg.Inch
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	split := width * 0.62
	lat.Draw(draw.Crop(dc, vg.Points(4), -(width - split), vg.Points(4), -vg.Points(8)))
	scale.Draw(draw.Crop(dc, split+vg.Points(8), -vg.Points(8), vg.Points(4), -vg.Points(8)))
	_, err = c.WriteTo(w)
	return err
}

// scaleLatency is the figure's left panel: p99 against the delivery rate,
// one line per sweep (failed steps as crosses), and the limit.
func scaleLatency(points []point, limit float64, colorOf func(int) color.Color) (*plot.Plot, error) {
	ps := slices.Clone(points)
	slices.SortStableFunc(ps, func(a, b point) int {
		return cmp.Or(cmp.Compare(a.Nodes, b.Nodes), cmp.Compare(a.Sweep, b.Sweep), cmp.Compare(a.Deliveries, b.Deliveries))
	})
	xmax, ymin, ymax := 0.0, math.Inf(1), math.Inf(-1)
	for _, p := range ps {
		xmax = math.Max(xmax, p.Deliveries)
		if p.P99MS > 0 {
			ymin, ymax = math.Min(ymin, p.P99MS), math.Max(ymax, p.P99MS)
		}
	}
	if limit > 0 {
		ymin, ymax = math.Min(ymin, limit), math.Max(ymax, limit)
	}
	if math.IsInf(ymin, 1) {
		ymin, ymax = 1, 10
	}
	ymin, ymax = ymin/1.5, ymax*2
	top := ymax / 1.2

	lat := plot.New()
	lat.Title.Text = "p99 latency vs deliveries/s offered, per sweep"
	lat.X.Label.Text = "deliveries/s offered"
	lat.Y.Label.Text = "p99 latency (ms, log)"
	lat.Y.Scale, lat.Y.Tick.Marker = plot.LogScale{}, logTicks{}
	lat.X.Tick.Marker = kTicks{}
	lat.X.Min, lat.X.Max = 0, xmax*1.05
	lat.Y.Min, lat.Y.Max = ymin, ymax
	lat.Add(plotter.NewGrid())
	lat.Legend.Top, lat.Legend.Left = false, false // bottom right: low latency at high rates never happens
	lat.Legend.TextStyle.Font.Size = vg.Points(8)
	lat.Legend.ThumbnailWidth = vg.Points(24)

	for i := 0; i < len(ps); {
		j := i
		for j < len(ps) && ps[j].Nodes == ps[i].Nodes && ps[j].Sweep == ps[i].Sweep {
			j++
		}
		series := ps[i:j]
		i = j
		var line, ok, failed plotter.XYs
		for _, p := range series {
			if p.P99MS > 0 {
				line = append(line, plotter.XY{X: p.Deliveries, Y: p.P99MS})
			}
			switch {
			case p.Failed != "" && p.P99MS > 0:
				failed = append(failed, plotter.XY{X: p.Deliveries, Y: math.Min(p.P99MS, top)})
			case p.Failed != "":
				failed = append(failed, plotter.XY{X: p.Deliveries, Y: top})
			default:
				ok = append(ok, plotter.XY{X: p.Deliveries, Y: p.P99MS})
			}
		}
		k := series[0].Sweep - 1
		if k < 0 {
			k = 0
		}
		thumbs, err := addSeries(lat, colorOf(series[0].Nodes), k, line, ok, failed)
		if err != nil {
			return nil, err
		}
		lat.Legend.Add(fmt.Sprintf("%s, sweep %d", nodesName(series[0].Nodes), series[0].Sweep), thumbs...)
	}
	if limit > 0 {
		l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: limit}, {X: xmax * 1.05, Y: limit}})
		if err != nil {
			return nil, err
		}
		l.LineStyle = draw.LineStyle{Color: color.RGBA{R: 0xc0, A: 0xff}, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(4), vg.Points(4)}}
		lat.Add(l)
		lat.Legend.Add(fmt.Sprintf("limit: p99 %g ms", limit), l)
	}
	cross, err := plotter.NewScatter(plotter.XYs{{X: 0, Y: top}})
	if err != nil {
		return nil, err
	}
	cross.GlyphStyle = draw.GlyphStyle{Color: color.Black, Radius: vg.Points(5), Shape: draw.CrossGlyph{}}
	lat.Legend.Add("not held: lost, p99 over the limit, not finished", cross)

	return lat, nil
}

// scaleHeld is the figure's right panel: the rate each node count held
// (median of its sweeps) against the node count, beside N × one node's.
func scaleHeld(med map[int]float64, nodes []int, colorOf func(int) color.Color) (*plot.Plot, error) {
	scale := plot.New()
	scale.Title.Text = "deliveries/s held (median of the sweeps)"
	scale.X.Label.Text = "nodes (each under the same CPU quota)"
	scale.Y.Label.Text = "deliveries/s held"
	scale.Y.Tick.Marker = kTicks{}
	scale.X.Tick.Marker = intTicks(nodes)
	scale.Add(plotter.NewGrid())
	scale.Legend.Top, scale.Legend.Left = true, true
	scale.Legend.TextStyle.Font.Size = vg.Points(8)
	var got plotter.XYs
	hmax := 0.0
	for _, n := range nodes {
		got = append(got, plotter.XY{X: float64(n), Y: med[n]})
		hmax = math.Max(hmax, med[n])
	}
	if base := med[nodes[0]]; base > 0 && len(nodes) > 1 {
		var ideal plotter.XYs
		for _, n := range nodes {
			ideal = append(ideal, plotter.XY{X: float64(n), Y: base * float64(n) / float64(nodes[0])})
			hmax = math.Max(hmax, base*float64(n)/float64(nodes[0]))
		}
		l, err := plotter.NewLine(ideal)
		if err != nil {
			return nil, err
		}
		l.LineStyle = draw.LineStyle{Color: color.Gray{Y: 0x80}, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(4), vg.Points(4)}}
		scale.Add(l)
		scale.Legend.Add(fmt.Sprintf("linear: %s × N", tickLabel(base)), l)
	}
	gl, err := plotter.NewLine(got)
	if err != nil {
		return nil, err
	}
	gl.LineStyle = draw.LineStyle{Color: color.Black, Width: vg.Points(1.5)}
	scale.Add(gl)
	for _, n := range nodes {
		s, err := plotter.NewScatter(plotter.XYs{{X: float64(n), Y: med[n]}})
		if err != nil {
			return nil, err
		}
		s.GlyphStyle = draw.GlyphStyle{Color: colorOf(n), Radius: vg.Points(4), Shape: draw.CircleGlyph{}}
		scale.Add(s)
		label := fmt.Sprintf("%s: %s/s", nodesName(n), tickLabel(med[n]))
		if base := med[nodes[0]]; n != nodes[0] && base > 0 {
			label += fmt.Sprintf(" (%.2f×)", med[n]/base)
		}
		scale.Legend.Add(label, s)
	}
	scale.X.Min, scale.X.Max = 0, float64(nodes[len(nodes)-1])+0.5
	scale.Y.Min, scale.Y.Max = 0, math.Max(hmax*1.25, 1)

	return scale, nil
}

// kTicks marks a linear axis at 1, 2 or 5 × 10^k steps, labelled 20k.
type kTicks struct{}

func (kTicks) Ticks(lo, hi float64) []plot.Tick {
	span := hi - lo
	if span <= 0 {
		return nil
	}
	step := math.Pow(10, math.Floor(math.Log10(span/5)))
	for _, m := range []float64{1, 2, 5, 10} {
		if span/(step*m) <= 8 {
			step *= m
			break
		}
	}
	var ts []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		ts = append(ts, plot.Tick{Value: v, Label: tickLabel(v)})
	}
	return ts
}

// intTicks marks the node counts.
type intTicks []int

func (t intTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for _, n := range t {
		if float64(n) >= lo && float64(n) <= hi {
			ts = append(ts, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
		}
	}
	return ts
}

// scaleTable prints every step and what each sweep held.
func scaleTable(w io.Writer, points []point) {
	ps := slices.Clone(points)
	slices.SortStableFunc(ps, func(a, b point) int {
		return cmp.Or(cmp.Compare(a.Nodes, b.Nodes), cmp.Compare(a.Deliveries, b.Deliveries), cmp.Compare(a.Sweep, b.Sweep))
	})
	fmt.Fprintln(w, "nodes\tdeliv/s\tsweep\tp99 ms\tsrv µs/deliv (sum over nodes)\tresult")
	for _, p := range ps {
		res := "held"
		if p.Failed != "" {
			res = "not held: " + p.Failed
		}
		fmt.Fprintf(w, "%d\t%g\t%d\t%s\t%s\t%s\n", p.Nodes, p.Deliveries, p.Sweep, figure(p.P99MS), figure(p.CPUUS), res)
	}
	h := held(points)
	keys := make([]sweepKey, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].nodes != keys[j].nodes {
			return keys[i].nodes < keys[j].nodes
		}
		return keys[i].sweep < keys[j].sweep
	})
	fmt.Fprintln(w, "nodes\tsweep\tdeliveries/s held")
	for _, k := range keys {
		fmt.Fprintf(w, "%d\t%d\t%g\n", k.nodes, k.sweep, h[k])
	}
	med, nodes := heldMedians(points)
	for _, n := range nodes {
		line := fmt.Sprintf("%s: median %g deliveries/s held", nodesName(n), med[n])
		if base := med[nodes[0]]; n != nodes[0] && base > 0 {
			line += fmt.Sprintf(", %.2f× %s", med[n]/base, nodesName(nodes[0]))
		}
		fmt.Fprintln(w, line)
	}
}
