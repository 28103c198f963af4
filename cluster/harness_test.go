package cluster

// The in-process tests' harness: a node (actors.Node behind a real
// WebSocket endpoint on 127.0.0.1), its clients, and a webhook receiver.

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/config"
	"github.com/parley-chat/parley/internal/testkit"
)

// testNode runs an actors.Node behind a real WebSocket endpoint.
type testNode struct{ *testkit.Served[*actors.Node] }

func startNode(t *testing.T, mutate func(*config.Config)) *testNode {
	t.Helper()
	n := actors.NewNode(testkit.Config(t, "", mutate), slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &testNode{testkit.Start(t, n, n.Stop)}
}

type tFrame = testkit.Frame

// tClient is a test's socket, connected.
type tClient struct{ *testkit.Client }

func (tn *testNode) dial() *tClient {
	tn.T.Helper()
	return &tClient{tn.Dial(testkit.DialOptions{Buffer: 1 << 14})}
}

// subscribe joins a public or private channel.
func (w *tClient) subscribe(channel string) {
	w.T.Helper()
	w.SubscribeSigned(testkit.Key, testkit.Secret, channel, "")
	w.ExpectSubscribed(channel)
}

func waitUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hookReceiver takes the webhooks of the test app.
type hookReceiver = testkit.Hooks

func newHookReceiver(t *testing.T) *hookReceiver {
	return testkit.NewHooks(t, testkit.Key, testkit.Secret)
}
