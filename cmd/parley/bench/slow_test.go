package bench

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

type slowJSON struct {
	fanoutJSON
	SlowConsumers    int              `json:"slow_consumers"`
	SlowConnected    int64            `json:"slow_connected"`
	SlowOpenAtEnd    int64            `json:"slow_open_at_end"`
	SlowClosed       int64            `json:"slow_closed"`
	SlowCloseCodes   map[string]int64 `json:"slow_close_codes"`
	SlowDrainedBytes int64            `json:"slow_drained_bytes"`
	TCPMem           *struct {
		PageSize   int   `json:"page_size"`
		StartBytes int64 `json:"start_bytes"`
		PeakBytes  int64 `json:"peak_bytes"`
		EndBytes   int64 `json:"end_bytes"`
		Samples    int64 `json:"samples"`
	} `json:"tcp_memory"`
	Nodes []nodeReport `json:"nodes"`
}

func TestFanoutSlowConsumersStayOpenAndUnread(t *testing.T) {
	f := newFakePusher(t)
	var r slowJSON
	stdout := runReport(t, &r, append(fanoutArgs(f), "--slow-consumers", "3")...)
	if got := f.slowSubscribed.Load(); got != 3 {
		t.Errorf("the server saw %d slow consumers subscribe, want 3", got)
	}
	if r.SlowConsumers != 3 || r.SlowConnected != 3 || r.SlowOpenAtEnd != 3 || r.SlowClosed != 0 {
		t.Errorf("slow: %d asked, %d connected, %d open, %d closed; want 3/3/3/0", r.SlowConsumers, r.SlowConnected, r.SlowOpenAtEnd, r.SlowClosed)
	}
	// Slow consumer j is on channel j mod 2, which got 100 events of a
	// 200-byte payload each: all of it must still be waiting at the end,
	// which it is only if nothing read it during the run.
	if min := int64(3 * 100 * 200); r.SlowDrainedBytes < min {
		t.Errorf("%d bytes were waiting for the slow consumers at the end, want at least %d", r.SlowDrainedBytes, min)
	}
	// They are not measured: the healthy subscribers' counts are as without them.
	if r.Connected != 4 || r.Expected != 400 || r.Delivered != 400 || r.Lost != 0 {
		t.Errorf("healthy subscribers: connected %d expected %d delivered %d lost %d; want 4/400/400/0", r.Connected, r.Expected, r.Delivered, r.Lost)
	}
	if r.TCPMem == nil || r.TCPMem.PageSize != os.Getpagesize() || r.TCPMem.Samples < 2 ||
		r.TCPMem.PeakBytes < max(r.TCPMem.StartBytes, r.TCPMem.EndBytes) {
		t.Errorf("tcp_memory: %+v", r.TCPMem)
	}
	for _, want := range []string{"slow consumers", "3 still open", "TCP memory"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}

func TestFanoutSlowConsumersClosedBy4101(t *testing.T) {
	f := newFakePusher(t)
	f.closeSlow = true
	var r slowJSON
	stdout := runReport(t, &r, append(fanoutArgs(f), "--slow-consumers", "3")...)
	if r.SlowConnected != 3 || r.SlowOpenAtEnd != 0 || r.SlowClosed != 3 || r.SlowCloseCodes["4101"] != 3 {
		t.Errorf("slow: %d connected, %d open, %d closed, codes %v; want 3/0/3/{4101:3}", r.SlowConnected, r.SlowOpenAtEnd, r.SlowClosed, r.SlowCloseCodes)
	}
	if r.Delivered != 400 || r.Lost != 0 {
		t.Errorf("healthy subscribers: delivered %d lost %d; want 400/0", r.Delivered, r.Lost)
	}
	if !strings.Contains(stdout, "4101 ×3") {
		t.Errorf("table lacks the close codes:\n%s", stdout)
	}
}

func TestFanoutSpreadsOverNodes(t *testing.T) {
	f := newFakePusher(t)
	second := f.addNode(t)
	// 5 subscribers and 3 slow consumers on 2 channels over 2 nodes.
	args := append([]string{"fanout", "--subscribers", "5", "--channels", "2", "--slow-consumers", "3", "--rate", "200", "--duration", "1s",
		"--drain", "500ms"}, f.args()...)
	for i := range args {
		if args[i] == "--port" {
			args[i+1] += "," + second.port() // the first node stays first
		}
	}
	var r slowJSON
	stdout := runReport(t, &r, args...)
	// nodeFor(i, 2, 2) for i = 0..4 is 0, 1, 1, 0, 0; for the slow j = 0..2, 0, 1, 1.
	want := []nodeReport{
		{Target: f.nodes[0].srv.Listener.Addr().String(), Subscribers: 3, Connected: 3, SlowConsumers: 1, SlowConnected: 1},
		{Target: second.srv.Listener.Addr().String(), Subscribers: 2, Connected: 2, SlowConsumers: 2, SlowConnected: 2},
	}
	if len(r.Nodes) != 2 || r.Nodes[0] != want[0] || r.Nodes[1] != want[1] {
		t.Errorf("nodes %+v, want %+v", r.Nodes, want)
	}
	if a, b := f.nodes[0].sockets.Load(), second.sockets.Load(); a != 4 || b != 4 {
		t.Errorf("the nodes saw %d and %d sockets, want 4 and 4", a, b)
	}
	if a, b := f.nodes[0].events.Load(), second.events.Load(); a != 200 || b != 0 {
		t.Errorf("publishes went %d to the first node and %d to the second; want all 200 to the first", a, b)
	}
	// Channel 0 has subscribers 0, 2, 4 on nodes 0, 1, 0; channel 1 has 1, 3 on 1, 0.
	if r.Expected != 500 || r.Delivered != 500 || r.Lost != 0 {
		t.Errorf("expected %d delivered %d lost %d; want 500/500/0", r.Expected, r.Delivered, r.Lost)
	}
	if !strings.Contains(stdout, "node "+second.srv.Listener.Addr().String()) {
		t.Errorf("table lacks the per-node rows:\n%s", stdout)
	}
}

func TestNodeFor(t *testing.T) {
	// One channel (or channels coprime with nodes): plain round-robin.
	for i := range 10 {
		if got := nodeFor(i, 1, 3); got != i%3 {
			t.Fatalf("nodeFor(%d, 1, 3) = %d, want %d", i, got, i%3)
		}
	}
	// 100 channels on 2 nodes: channel 0's first subscriber (socket 0) and
	// second (socket 100) must not be on the same node.
	if nodeFor(0, 100, 2) == nodeFor(100, 100, 2) {
		t.Error("channel 0's first two subscribers are on the same node")
	}
	for nodes := 1; nodes <= 6; nodes++ {
		for channels := 1; channels <= 12; channels++ {
			for n := 1; n <= 3*channels*nodes; n++ {
				counts := nodeCounts(n, channels, nodes)
				lo, hi := n, 0
				for _, c := range counts {
					lo, hi = min(lo, c), max(hi, c)
				}
				if hi-lo > 1 {
					t.Fatalf("%d sockets, %d channels, %d nodes: counts %v differ by more than one", n, channels, nodes, counts)
				}
			}
			// With `nodes` subscribers each, every channel is on every node.
			on := make([]map[int]bool, channels)
			for i := range channels * nodes {
				if on[i%channels] == nil {
					on[i%channels] = map[int]bool{}
				}
				on[i%channels][nodeFor(i, channels, nodes)] = true
			}
			for c, m := range on {
				if len(m) != nodes {
					t.Fatalf("%d channels, %d nodes: channel %d is on %d nodes only", channels, nodes, c, len(m))
				}
			}
		}
	}
}

func TestParseSockstat(t *testing.T) {
	sample := "sockets: used 30\nTCP: inuse 11 orphan 3 tw 2 alloc 14 mem 17\nUDP: inuse 0 mem 5\nUDPLITE: inuse 0\n"
	st, err := parseSockstat([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if st != (tcpSockstat{InUse: 11, Orphan: 3, TimeWait: 2, Alloc: 14, MemPages: 17}) {
		t.Errorf("parsed %+v", st)
	}
	for _, bad := range []string{"sockets: used 3\nUDP: inuse 0 mem 5\n", "TCP: inuse 1 orphan 0\n", "TCP: inuse 1 mem x\n"} {
		if _, err := parseSockstat([]byte(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
	// This machine's own file parses (the bench needs it on Linux).
	if b, err := os.ReadFile(sockstatPath); err == nil {
		if _, err := parseSockstat(b); err != nil {
			t.Errorf("%s: %v\n%s", sockstatPath, err, b)
		}
	}
}

func TestClientFrameIsMasked(t *testing.T) {
	for _, n := range []int{0, 5, 125, 126, 300, 70_000} {
		payload := bytes.Repeat([]byte{'a'}, n)
		b := clientFrame(opText, payload)
		if b[0] != 0x80|opText || b[1]&0x80 == 0 {
			t.Fatalf("%d bytes: header % x is not a final masked text frame", n, b[:2])
		}
		length, p := int(b[1]&0x7f), 2
		switch length {
		case 126:
			length, p = int(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			length, p = int(binary.BigEndian.Uint64(b[2:])), 10
		}
		mask, body := b[p:p+4], b[p+4:]
		if length != n || len(body) != n {
			t.Fatalf("%d bytes: length field %d, body %d", n, length, len(body))
		}
		for i := range body {
			body[i] ^= mask[i%4]
		}
		if !bytes.Equal(body, payload) {
			t.Fatalf("%d bytes: unmasked body differs", n)
		}
	}
}
