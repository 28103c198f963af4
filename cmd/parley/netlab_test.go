package main

// A network of the test's own for partition tests: each node in a network
// namespace of its own, joined to a router namespace by a veth pair (node i
// is 10.77.i.2, the router 10.77.i.1). The test's sockets are made inside the
// router namespace, so they reach every node whatever is cut. A cut is a
// policy-routing rule in the router that drops (blackhole: silently, as a
// real partition does) what is forwarded between node i and the others;
// healing deletes it. Needs root and iproute2; nothing outside the
// namespaces it creates is touched.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

type netLab struct {
	t      *testing.T
	prefix string
	rt     string   // the router namespace
	hosts  []string // node i's namespace, hosts[i-1]
	extra  []string // addresses on the router's loopback (etcd, the webhook sink)

	mu   sync.Mutex
	cuts map[int][]string // node → the rules its cut added
}

var labSeq atomic.Int64

// needNetns skips the test where network namespaces cannot be made (not
// root, no iproute2), and fails it under CI, where they must.
func needNetns(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "not root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "no ip command (Debian: iproute2)"
	} else if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		why = "ip netns: " + strings.TrimSpace(string(out))
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("partition tests need network namespaces: %s", why)
	}
	t.Skipf("partition tests need network namespaces (%s)", why)
}

func (l *netLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNetLab makes the router namespace and count node namespaces.
func newNetLab(t *testing.T, count int) *netLab {
	t.Helper()
	needNetns(t)
	l := &netLab{t: t, prefix: fmt.Sprintf("pl%d-%d", os.Getpid()%100000, labSeq.Add(1)), cuts: map[int][]string{}}
	l.rt = l.prefix + "-rt"
	t.Cleanup(func() {
		for _, ns := range append([]string{l.rt}, l.hosts...) {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	l.ip("netns", "add", l.rt)
	l.ip("-n", l.rt, "link", "set", "lo", "up")
	if out, err := exec.Command("ip", "netns", "exec", l.rt, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward in %s: %v: %s", l.rt, err, out)
	}
	for i := 1; i <= count; i++ {
		ns := l.prefix + "-n" + strconv.Itoa(i)
		l.hosts = append(l.hosts, ns)
		l.ip("netns", "add", ns)
		l.ip("-n", ns, "link", "set", "lo", "up")
		rtEnd, nodeEnd := "r"+strconv.Itoa(i), "eth0"
		l.ip("-n", l.rt, "link", "add", rtEnd, "type", "veth", "peer", "name", nodeEnd, "netns", ns)
		l.ip("-n", l.rt, "addr", "add", l.router(i)+"/24", "dev", rtEnd)
		l.ip("-n", l.rt, "link", "set", rtEnd, "up")
		l.ip("-n", ns, "addr", "add", l.addr(i)+"/24", "dev", nodeEnd)
		l.ip("-n", ns, "link", "set", nodeEnd, "up")
		l.ip("-n", ns, "route", "add", "default", "via", l.router(i))
	}
	return l
}

// addr is node i's address (from 1).
func (l *netLab) addr(i int) string { return "10.77." + strconv.Itoa(i) + ".2" }

// router is the router's address on node i's link.
func (l *netLab) router(i int) string { return "10.77." + strconv.Itoa(i) + ".1" }

// service adds an address on the router's loopback, for a service every
// node reaches (etcd, a webhook receiver), and returns it.
func (l *netLab) service() string {
	a := "10.77.0." + strconv.Itoa(len(l.extra)+1)
	l.ip("-n", l.rt, "addr", "add", a+"/32", "dev", "lo")
	l.extra = append(l.extra, a)
	return a
}

// cut drops, in the router, everything between node i and the other nodes,
// and between node i and the services given.
func (l *netLab) cut(i int, services ...string) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.cuts[i]; ok {
		return
	}
	var others []string
	for j := range l.hosts {
		if j+1 != i {
			others = append(others, "10.77."+strconv.Itoa(j+1)+".0/24")
		}
	}
	for _, s := range services {
		others = append(others, s+"/32")
	}
	mine := "10.77." + strconv.Itoa(i) + ".0/24"
	var rules []string
	for _, o := range others {
		rules = append(rules, "from "+mine+" to "+o, "from "+o+" to "+mine)
	}
	for _, r := range rules {
		l.ip(append([]string{"-n", l.rt, "rule", "add"}, append(strings.Fields(r), "blackhole", "pref", "100")...)...)
	}
	l.cuts[i] = rules
}

// heal undoes node i's cut.
func (l *netLab) heal(i int) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.cuts[i] {
		l.ip(append([]string{"-n", l.rt, "rule", "del"}, append(strings.Fields(r), "blackhole", "pref", "100")...)...)
	}
	delete(l.cuts, i)
}

// inRouter runs fn on an OS thread that entered the router namespace: the
// sockets fn makes live there. The thread is never given back (it exits
// with the goroutine), so no other goroutine runs in the namespace.
func (l *netLab) inRouter(fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread ends with the goroutine
		f, err := os.Open("/run/netns/" + l.rt)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", l.rt, err)
			return
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

// dial connects from the router namespace.
func (l *netLab) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	var derr error
	if err := l.inRouter(func() { c, derr = (&net.Dialer{}).DialContext(ctx, network, addr) }); err != nil {
		return nil, err
	}
	return c, derr
}

// listen listens in the router namespace.
func (l *netLab) listen(addr string) net.Listener {
	l.t.Helper()
	var ln net.Listener
	var lerr error
	if err := l.inRouter(func() { ln, lerr = net.Listen("tcp", addr) }); err != nil {
		l.t.Fatal(err)
	}
	if lerr != nil {
		l.t.Fatal(lerr)
	}
	l.t.Cleanup(func() { ln.Close() })
	return ln
}
