package main

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestChatOff: with --chat=false Parley is only a Pusher server: no database
// is opened (nothing in the data dir), /api answers 404, sockets work.
func TestChatOff(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and starts a parley process")
	}
	n := newProcNode(t, "solo")
	dataDir := t.TempDir()
	if err := n.startErr(parleyBinary(t), dataDir); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(n.url + "/api/messages/unread-count")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("/api with the chat off: %d, want 404", res.StatusCode)
	}
	if dbs, _ := filepath.Glob(filepath.Join(dataDir, "*.db*")); len(dbs) > 0 {
		t.Fatalf("a database was opened with the chat off: %v", dbs)
	}
	if _, err := os.Stat(dataDir); err != nil {
		t.Fatal(err)
	}
	w := dial(t, n, "solo-client")
	w.mustSubscribe("news", "")
}
