// Command plot draws the scale curve that `run-comparison.sh curve`
// measures: p99 latency and server CPU per delivery against deliveries per
// second, one line per server and subscriber count, and prints the grid as
// a table.
//
//	go run ./deploy/bench/plot -latency curve-latency.svg -cpu curve-cpu.svg -table REPORT...
//
// Each REPORT is a `parley bench fanout --json` report named
// curve-SERVER-nSUBSCRIBERS-dDELIVERIES-RUN.json (the grid point is read
// from the name, so a run that left no report still shows). A point failed
// when its report is missing, the run did not complete, an event was not
// published, a delivery was lost, or deliveries/s fell below 90 % of the
// nominal rate. Failed points are drawn as crosses: where each server stops.
//
// With -scale it draws deploy/bench/scale-out.sh's sweeps instead (see
// scale.go).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// keepUp is the share of the nominal deliveries/s a run must reach.
const keepUp = 0.9

// point is one grid point: the median run of one server, subscriber count
// and delivery rate.
type point struct {
	Server     string
	Subs       int
	Deliveries float64 // nominal deliveries/s: events/s × subscribers
	EventRate  float64 // events/s (from the report; else Deliveries/Subs)
	P99MS      float64 // 0: none
	CPUUS      float64 // server CPU µs per delivery; 0: none
	Failed     string  // why the point failed; "" when it passed
	Nodes      int     // scale-out steps only: the node count
	Sweep      int     // scale-out steps only: the sweep
}

// report is what plot reads of a fanout report.
type report struct {
	Completed           bool    `json:"completed"`
	Subscribers         int     `json:"subscribers"`
	Channels            int     `json:"channels"`
	RatePerSecond       float64 `json:"rate_per_second"`
	EventsScheduled     int64   `json:"events_scheduled"`
	EventsSent          int64   `json:"events_sent"`
	PublishErrors       int64   `json:"publish_errors"`
	Expected            int64   `json:"expected"`
	Lost                int64   `json:"lost"`
	Duplicates          int64   `json:"duplicates"`
	DeliveriesPerSecond float64 `json:"deliveries_per_second"`
	Latency             struct {
		P99 float64 `json:"p99_ms"`
	} `json:"latency"`
	Server *struct {
		CPUMicrosPerDelivery float64 `json:"cpu_us_per_delivery"`
	} `json:"server"`
}

var nameRE = regexp.MustCompile(`^curve-([a-z0-9_]+)-n([0-9]+)-d([0-9]+)-[0-9]+\.json$`)

// readPoint reads one report. Only a name that names no grid point is an
// error; a missing or broken report is a failed point.
func readPoint(path string) (point, error) {
	m := nameRE.FindStringSubmatch(filepath.Base(path))
	if m == nil {
		return point{}, fmt.Errorf("%s: not named curve-SERVER-nSUBSCRIBERS-dDELIVERIES-RUN.json", path)
	}
	subs, _ := strconv.Atoi(m[2])
	deliveries, _ := strconv.ParseFloat(m[3], 64)
	p := point{Server: m[1], Subs: subs, Deliveries: deliveries, EventRate: deliveries / float64(max(subs, 1))}
	r, failed := readReport(path)
	if failed != "" {
		p.Failed = failed
		return p, nil
	}
	if r.RatePerSecond > 0 {
		p.EventRate = r.RatePerSecond
	}
	p.P99MS = r.Latency.P99
	if r.Server != nil {
		p.CPUUS = r.Server.CPUMicrosPerDelivery
	}
	p.Failed = failure(r, p.Deliveries)
	return p, nil
}

// readReport reads a report; failed says why there is none.
func readReport(path string) (r report, failed string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return r, "no report"
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, "unreadable report"
	}
	return r, ""
}

// failure says why a run failed, or "" when it delivered everything at
// the rate.
func failure(r report, nominal float64) string {
	switch {
	case !r.Completed:
		return "did not complete"
	case r.EventsSent < r.EventsScheduled:
		return fmt.Sprintf("published %d of %d events", r.EventsSent, r.EventsScheduled)
	case r.PublishErrors > 0:
		return fmt.Sprintf("%d publish errors", r.PublishErrors)
	case r.Expected == 0:
		return "nothing expected"
	case r.Lost > 0:
		return fmt.Sprintf("lost %d of %d", r.Lost, r.Expected)
	case r.DeliveriesPerSecond < keepUp*nominal:
		return fmt.Sprintf("delivered only %.0f/s", r.DeliveriesPerSecond)
	}
	return ""
}

// serverOrder puts the floor first, then Parley, then soketi, then others.
func serverOrder(s string) string {
	switch s {
	case "floor":
		return "0"
	case "parley":
		return "1"
	case "soketi":
		return "2"
	}
	return "3" + s
}

func sortPoints(ps []point) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Server != b.Server {
			return serverOrder(a.Server) < serverOrder(b.Server)
		}
		if a.Subs != b.Subs {
			return a.Subs < b.Subs
		}
		return a.Deliveries < b.Deliveries
	})
}

// serverName is how the plot and the table name a server.
func serverName(s string) string {
	switch s {
	case "parley":
		return "Parley"
	case "soketi":
		return "soketi 1.6.1"
	}
	return s
}

var serverColors = map[string]color.Color{
	"floor":  color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff},
	"parley": color.RGBA{R: 0x1f, G: 0x6f, B: 0xc4, A: 0xff},
	"soketi": color.RGBA{R: 0xe0, G: 0x70, B: 0x10, A: 0xff},
}

func colorOf(server string) color.Color {
	if c, ok := serverColors[server]; ok {
		return c
	}
	return color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
}

// The subscriber counts, in increasing order, cycle through these.
var (
	dashes = [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)}, {vg.Points(8), vg.Points(3), vg.Points(2), vg.Points(3)}}
	glyphs = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.RingGlyph{}}
)

// panel is one of the two figures.
type panel struct {
	title, ylabel string
	value         func(point) float64 // ≤ 0: no value
}

var (
	latencyPanel = panel{"p99 latency (event due → frame read) vs deliveries/s", "p99 latency (ms)", func(p point) float64 { return p.P99MS }}
	cpuPanel     = panel{"server CPU per delivery vs deliveries/s", "server CPU per delivery (µs)", func(p point) float64 { return p.CPUUS }}
)

// draw writes the panel as an SVG: the plot, and the legend beside it.
func (pn panel) draw(w io.Writer, points []point) error {
	if len(points) == 0 {
		return errors.New("no points")
	}
	ps := append([]point(nil), points...)
	sortPoints(ps)

	subsIndex := map[int]int{}
	var subsList []int
	for _, p := range ps {
		if _, ok := subsIndex[p.Subs]; !ok {
			subsIndex[p.Subs] = 0
			subsList = append(subsList, p.Subs)
		}
	}
	sort.Ints(subsList)
	for i, s := range subsList {
		subsIndex[s] = i
	}

	// The axes' ranges, so that failed points with no value can sit on the
	// top edge.
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, p := range ps {
		xmin, xmax = math.Min(xmin, p.Deliveries), math.Max(xmax, p.Deliveries)
		if v := pn.value(p); v > 0 {
			ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
		}
	}
	if math.IsInf(ymin, 1) {
		ymin, ymax = 1, 10
	}
	ymin, ymax = ymin/1.5, ymax*2 // room for the crosses at the top
	top := ymax / 1.2

	pl := plot.New()
	pl.Title.Text = pn.title
	pl.X.Label.Text = "deliveries/s (events/s × subscribers; log)"
	pl.Y.Label.Text = pn.ylabel + " (log)"
	pl.X.Scale, pl.Y.Scale = plot.LogScale{}, plot.LogScale{}
	pl.X.Tick.Marker, pl.Y.Tick.Marker = logTicks{}, logTicks{}
	pl.X.Min, pl.X.Max = xmin/1.3, xmax*1.3
	pl.Y.Min, pl.Y.Max = ymin, ymax
	pl.Add(plotter.NewGrid())
	legend := plot.NewLegend() // drawn beside the plot, not over it

	for i := 0; i < len(ps); {
		j := i
		for j < len(ps) && ps[j].Server == ps[i].Server && ps[j].Subs == ps[i].Subs {
			j++
		}
		series := ps[i:j]
		i = j
		k := subsIndex[series[0].Subs]
		clr := colorOf(series[0].Server)
		var line, ok, failed plotter.XYs
		for _, p := range series {
			v := pn.value(p)
			if v > 0 {
				line = append(line, plotter.XY{X: p.Deliveries, Y: v})
			}
			switch {
			case p.Failed != "" && v > 0:
				failed = append(failed, plotter.XY{X: p.Deliveries, Y: v})
			case p.Failed != "":
				failed = append(failed, plotter.XY{X: p.Deliveries, Y: top})
			default:
				ok = append(ok, plotter.XY{X: p.Deliveries, Y: v})
			}
		}
		name := fmt.Sprintf("%s, %d subscribers", serverName(series[0].Server), series[0].Subs)
		thumbs, err := addSeries(pl, clr, k, line, ok, failed)
		if err != nil {
			return err
		}
		legend.Add(name, thumbs...)
	}
	cross, err := plotter.NewScatter(plotter.XYs{{X: xmin, Y: top}})
	if err != nil {
		return err
	}
	cross.GlyphStyle = draw.GlyphStyle{Color: color.Black, Radius: vg.Points(5), Shape: draw.CrossGlyph{}}
	legend.Add("failed: lost, fell behind or did not finish", cross)
	legend.Add("(a cross on the top edge has no figure)")

	const width, height, legendWidth = 11 * vg.Inch, 5.5 * vg.Inch, 3.3 * vg.Inch
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	pl.Draw(draw.Crop(dc, vg.Points(4), -legendWidth, vg.Points(4), -vg.Points(8)))
	legend.Top, legend.Left = true, true
	legend.TextStyle.Font.Size = vg.Points(9)
	legend.ThumbnailWidth = vg.Points(28)
	legend.Padding = vg.Points(3)
	legend.Draw(draw.Crop(dc, width-legendWidth+vg.Points(8), 0, 0, -vg.Points(30)))
	_, err = c.WriteTo(w)
	return err
}

// addSeries adds one series to the plot: its line, its points and its
// failed points (crosses); k picks the dash and glyph. It returns what the
// legend shows for it.
func addSeries(pl *plot.Plot, clr color.Color, k int, line, ok, failed plotter.XYs) ([]plot.Thumbnailer, error) {
	style := draw.LineStyle{Color: clr, Width: vg.Points(1.5), Dashes: dashes[k%len(dashes)]}
	glyph := draw.GlyphStyle{Color: clr, Radius: vg.Points(3), Shape: glyphs[k%len(glyphs)]}
	var thumbs []plot.Thumbnailer
	if len(line) > 1 {
		l, err := plotter.NewLine(line)
		if err != nil {
			return nil, err
		}
		l.LineStyle = style
		pl.Add(l)
		thumbs = append(thumbs, l)
	}
	if len(ok) > 0 {
		s, err := plotter.NewScatter(ok)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle = glyph
		pl.Add(s)
		thumbs = append(thumbs, s)
	}
	if len(failed) > 0 {
		s, err := plotter.NewScatter(failed)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle = draw.GlyphStyle{Color: clr, Radius: vg.Points(5), Shape: draw.CrossGlyph{}}
		pl.Add(s)
		if len(thumbs) == 0 {
			thumbs = append(thumbs, s)
		}
	}
	return thumbs, nil
}

// logTicks marks 1–9 × 10^k and labels 1, 2 and 5 × 10^k, so that a
// range within one decade still has labels.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for i := 1; i < 10; i++ {
			v := float64(i) * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if i == 1 || i == 2 || i == 5 {
				t.Label = tickLabel(v)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// tickLabel writes 300000 as 300k, 0.2 as 0.2.
func tickLabel(v float64) string {
	v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 3, 64), 64)
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// table prints the grid: one row per subscriber count and delivery rate,
// one column per server.
func table(w io.Writer, points []point) {
	var servers []string
	seen := map[string]bool{}
	type key struct {
		subs       int
		deliveries float64
	}
	cells := map[key]map[string]point{}
	var keys []key
	for _, p := range points {
		if !seen[p.Server] {
			seen[p.Server] = true
			servers = append(servers, p.Server)
		}
		k := key{p.Subs, p.Deliveries}
		if cells[k] == nil {
			cells[k] = map[string]point{}
			keys = append(keys, k)
		}
		cells[k][p.Server] = p
	}
	sort.SliceStable(servers, func(i, j int) bool { return serverOrder(servers[i]) < serverOrder(servers[j]) })
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].subs != keys[j].subs {
			return keys[i].subs < keys[j].subs
		}
		return keys[i].deliveries < keys[j].deliveries
	})
	head := []string{"subs", "deliv/s", "ev/s"}
	for _, s := range servers {
		head = append(head, serverName(s)+": p99 ms, srv µs/deliv")
	}
	fmt.Fprintln(w, strings.Join(head, "\t"))
	for _, k := range keys {
		row := []string{strconv.Itoa(k.subs), strconv.FormatFloat(k.deliveries, 'f', -1, 64),
			strconv.FormatFloat(k.deliveries/float64(max(k.subs, 1)), 'g', 4, 64)}
		for _, s := range servers {
			p, ok := cells[k][s]
			if !ok {
				row = append(row, "-")
				continue
			}
			cell := fmt.Sprintf("%s, %s", figure(p.P99MS), figure(p.CPUUS))
			if p.Failed != "" {
				cell = fmt.Sprintf("FAILED (%s): %s", p.Failed, cell)
			}
			row = append(row, cell)
		}
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
}

func figure(v float64) string {
	if v <= 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func main() {
	latency := flag.String("latency", "", "write the p99 latency figure to this SVG `file`")
	cpu := flag.String("cpu", "", "write the server CPU per delivery figure to this SVG `file`")
	tbl := flag.Bool("table", false, "print the grid as a table on stdout")
	scale := flag.String("scale", "", "scale-out mode: write the scale-out figure of scale-out.sh's reports to this SVG `file`")
	limit := flag.Float64("p99-limit", 250, "scale-out mode: the p99 (ms) a step must stay at or under to hold")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: plot [-latency FILE.svg] [-cpu FILE.svg] [-table] curve-SERVER-nSUBS-dDELIVERIES-RUN.json...\n"+
			"       plot -scale FILE.svg [-p99-limit MS] [-table] scale-Nnodes-nSUBS-dDELIVERIES-SWEEP.json...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *scale != "" {
		scaleMain(*scale, *limit, *tbl, flag.Args())
		return
	}
	var points []point
	for _, f := range flag.Args() {
		p, err := readPoint(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "plot:", err)
			os.Exit(2)
		}
		points = append(points, p)
	}
	for _, out := range []struct {
		path string
		pn   panel
	}{{*latency, latencyPanel}, {*cpu, cpuPanel}} {
		if out.path == "" {
			continue
		}
		if err := writeFile(out.path, out.pn, points); err != nil {
			fmt.Fprintln(os.Stderr, "plot:", err)
			os.Exit(1)
		}
	}
	if *tbl {
		table(os.Stdout, points)
	}
}

func writeFile(path string, pn panel, points []point) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pn.draw(f, points); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scaleMain is main in the scale-out mode.
func scaleMain(path string, limit float64, tbl bool, files []string) {
	var points []point
	for _, f := range files {
		p, err := readScalePoint(f, limit)
		if err != nil {
			fmt.Fprintln(os.Stderr, "plot:", err)
			os.Exit(2)
		}
		points = append(points, p)
	}
	out, err := os.Create(path)
	if err == nil {
		err = drawScale(out, points, limit)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
	if tbl {
		scaleTable(os.Stdout, points)
	}
}
