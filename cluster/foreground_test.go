//go:build !race

package cluster

import (
	"testing"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/internal/testkit"
)

// TestForegroundAcrossNodes: a chat user's foreground socket on one node
// is seen on the other (a delta), and when it goes, it goes there too.
func TestForegroundAcrossNodes(t *testing.T) {
	a, b, _, _ := startClusterPair(t, nil)
	a.Node.TrackForeground(testkit.AppID)
	b.Node.TrackForeground(testkit.AppID)
	w := a.dial()
	w.subscribe(actors.UserChannelPrefix + "5")
	waitUntil(t, "node b to see user 5 foreground", func() bool { return b.Node.UserForeground(testkit.AppID, "5") })
	w.Conn.Close()
	waitUntil(t, "node b to see user 5 gone", func() bool { return !b.Node.UserForeground(testkit.AppID, "5") })
}
