package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runMain runs the bench with args and returns its exit code and output.
func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// runReport runs the bench with args and --json, requires it to succeed,
// decodes the report into r and returns stdout.
func runReport(t *testing.T, r any, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "r.json")
	code, stdout, stderr := runMain(t, append(args, "--json", out)...)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	readJSON(t, out, r)
	return stdout
}

// readJSON decodes the --json report into v.
func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
}

type fanoutJSON struct {
	Completed        bool    `json:"completed"`
	Subscribers      int     `json:"subscribers"`
	Connected        int64   `json:"subscribers_connected"`
	EventsSent       int64   `json:"events_sent"`
	EventsPublished  int64   `json:"events_published"`
	PublishErrors    int64   `json:"publish_errors"`
	Expected         int64   `json:"expected"`
	Delivered        int64   `json:"delivered"`
	Lost             int64   `json:"lost"`
	Duplicates       int64   `json:"duplicates"`
	Unexpected       int64   `json:"unexpected"`
	DeliveredUnacked int64   `json:"delivered_unacked"`
	DeliveriesPerSec float64 `json:"deliveries_per_second"`
	Latency          struct {
		Count int64   `json:"count"`
		P50   float64 `json:"p50_ms"`
		P999  float64 `json:"p99_9_ms"`
		Max   float64 `json:"max_ms"`
	} `json:"latency"`
	Bench struct {
		Cores int `json:"cores"`
	} `json:"bench"`
}

// fanoutArgs: 4 subscribers on 2 channels, 200 events in 1 s, so each
// channel gets 100 events and each subscriber expects 100.
func fanoutArgs(f *fakePusher) []string {
	return append([]string{"fanout", "--subscribers", "4", "--channels", "2", "--rate", "200", "--duration", "1s",
		"--drain", "500ms", "--publishers", "8"}, f.args()...)
}

func TestFanoutCleanRun(t *testing.T) {
	f := newFakePusher(t)
	var r fanoutJSON
	stdout := runReport(t, &r, fanoutArgs(f)...)
	if !r.Completed || r.Connected != 4 || r.EventsSent != 200 || r.EventsPublished != 200 || r.PublishErrors != 0 {
		t.Fatalf("run: %+v", r)
	}
	if r.Expected != 400 || r.Delivered != 400 || r.Lost != 0 || r.Duplicates != 0 || r.Unexpected != 0 {
		t.Errorf("counts: expected %d delivered %d lost %d dup %d unexpected %d; want 400/400/0/0/0",
			r.Expected, r.Delivered, r.Lost, r.Duplicates, r.Unexpected)
	}
	if r.Latency.Count != 400 || r.Latency.Max <= 0 || r.Latency.P50 > r.Latency.Max {
		t.Errorf("latency: %+v", r.Latency)
	}
	if f.badSignatures.Load() != 0 {
		t.Errorf("%d requests failed the signature check", f.badSignatures.Load())
	}
	for _, want := range []string{"expected", "delivered", "lost", "duplicates", "latency", "p99.9", "bench CPU"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}

func TestFanoutCountsLossAndDuplicates(t *testing.T) {
	f := newFakePusher(t)
	f.victimChannel = "bench-0" // one subscriber of bench-0 misses every 10th of its 100 events
	f.dropEvery = 10
	f.dupSeq = 5 // event 5 (on bench-1, two subscribers) arrives twice at each
	var r fanoutJSON
	runReport(t, &r, fanoutArgs(f)...)
	if r.Expected != 400 || r.Lost != 10 || r.Delivered != 390 || r.Duplicates != 2 {
		t.Errorf("expected %d delivered %d lost %d dup %d; want 400/390/10/2", r.Expected, r.Delivered, r.Lost, r.Duplicates)
	}
}

func TestFanoutWrongSecretCountsPublishErrors(t *testing.T) {
	f := newFakePusher(t)
	args := append([]string{"fanout", "-n", "2", "--channels", "1", "--rate", "50", "--duration", "200ms", "--drain", "0s"}, f.args()...)
	args = append(args, "--secret", "wrong")
	var r fanoutJSON
	stdout := runReport(t, &r, args...)
	if r.EventsSent != 10 || r.PublishErrors != 10 || r.Expected != 0 || r.Lost != 0 {
		t.Errorf("sent %d errors %d expected %d lost %d; want 10/10/0/0", r.EventsSent, r.PublishErrors, r.Expected, r.Lost)
	}
	if f.badSignatures.Load() != 10 {
		t.Errorf("server saw %d bad signatures, want 10", f.badSignatures.Load())
	}
	if !strings.Contains(stdout, "HTTP 401") {
		t.Errorf("the table should show the 401:\n%s", stdout)
	}
}

func TestFanoutServerDownFails(t *testing.T) {
	f := newFakePusher(t)
	args := f.args()
	f.srv.Close()
	code, _, stderr := runMain(t, append([]string{"fanout", "-n", "3", "--channels", "1", "--duration", "100ms"}, args...)...)
	if code != exitFailure || !strings.Contains(stderr, "no socket could connect") {
		t.Fatalf("exit %d, stderr %q; want 1 and a connect error", code, stderr)
	}
}

func TestFanoutPublishAllNodes(t *testing.T) {
	f := newFakePusher(t)
	second, third := f.addNode(t), f.addNode(t)
	// 6 subscribers on 2 channels over 3 nodes, 300 events in 1 s: event k
	// goes through node k mod 3, so each node's HTTP API takes 100.
	args := append([]string{"fanout", "--subscribers", "6", "--channels", "2", "--rate", "300", "--duration", "1s",
		"--drain", "500ms", "--publishers", "8", "--publish-all-nodes"}, f.args()...)
	for i := range args {
		if args[i] == "--port" {
			args[i+1] += "," + second.port() + "," + third.port()
		}
	}
	var r struct {
		fanoutJSON
		PublishedThrough []string `json:"published_through"`
	}
	stdout := runReport(t, &r, args...)
	for k, n := range f.nodes {
		if got := n.events.Load(); got != 100 {
			t.Errorf("node %d took %d publishes, want 100 (every node 100 of 300)", k, got)
		}
	}
	want := []string{f.nodes[0].srv.Listener.Addr().String(), second.srv.Listener.Addr().String(), third.srv.Listener.Addr().String()}
	if strings.Join(r.PublishedThrough, " ") != strings.Join(want, " ") {
		t.Errorf("published_through %v, want %v", r.PublishedThrough, want)
	}
	if r.EventsPublished != 300 || r.Expected != 900 || r.Delivered != 900 || r.Lost != 0 || r.Duplicates != 0 {
		t.Errorf("published %d expected %d delivered %d lost %d dup %d; want 300/900/900/0/0",
			r.EventsPublished, r.Expected, r.Delivered, r.Lost, r.Duplicates)
	}
	if !strings.Contains(stdout, "published through") || !strings.Contains(stdout, want[2]) {
		t.Errorf("the table does not say where the publishes went:\n%s", stdout)
	}
}
