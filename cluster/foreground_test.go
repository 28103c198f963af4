//go:build !race

package cluster

import (
	"testing"

	"github.com/parley-chat/parley/actors"
)

// TestForegroundAcrossNodes: a chat user's foreground socket on one node
// is seen on the other (a delta), and when it goes, it goes there too.
func TestForegroundAcrossNodes(t *testing.T) {
	a, b, _, _ := startClusterPair(t, nil)
	a.node.TrackForeground(tApp)
	b.node.TrackForeground(tApp)
	w := a.dial()
	w.subscribe(actors.UserChannelPrefix + "5")
	waitUntil(t, "node b to see user 5 foreground", func() bool { return b.node.UserForeground(tApp, "5") })
	w.c.Close()
	waitUntil(t, "node b to see user 5 gone", func() bool { return !b.node.UserForeground(tApp, "5") })
}
