package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type nullSource struct{}

func (nullSource) AppStats() map[string]AppStats            { return nil }
func (nullSource) PublishBacklog() int64                    { return 0 }
func (nullSource) ClusterForwards() (resent, lost int64)    { return 0, 0 }
func (nullSource) PublishesRefused() (busy, noQuorum int64) { return 0, 0 }
func (nullSource) ClusterState() (bool, bool, int, int)     { return true, true, 1, 1 }

// TestDashboardQueriesExistingMetrics: every parley_* series the Grafana
// dashboard queries is one this package defines (a histogram's _bucket,
// _sum and _count included), so a renamed or mistyped metric shows here
// rather than as an empty panel.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile("../deploy/grafana/parley-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	m := New("test")
	known := map[string]bool{}
	descs := make(chan *prometheus.Desc, 100)
	for _, c := range []prometheus.Collector{m.opened, m.closed, m.slowDrops, m.recvMsgs, m.recvBytes, m.sentMsgs,
		m.sentBytes, m.latency, m.httpReqs, m.httpDur, m.chatSends, m.dbDuration, m.dbErrors, &sourceCollector{src: nullSource{}}} {
		c.Describe(descs)
	}
	close(descs)
	families, err := m.reg.Gather() // the ones with a value already: build_info
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		known[f.GetName()] = true
	}
	name := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range descs {
		if s := name.FindStringSubmatch(d.String()); s != nil {
			known[s[1]] = true
		}
	}
	if !known["parley_connections_opened_total"] || !known["parley_cluster_forwards_lost_total"] {
		t.Fatalf("the descriptors read are incomplete: %v", known)
	}
	used := regexp.MustCompile(`parley_[a-z_]+`).FindAllString(string(raw), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard queries no parley_ series")
	}
	for _, u := range used {
		base := u
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(u, suffix); ok && known[b] {
				base = b
			}
		}
		if !known[base] {
			t.Errorf("the dashboard queries %s, which Parley does not export", u)
		}
	}
}
