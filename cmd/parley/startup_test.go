package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
)

// A port another process holds stops start-up with one line that says
// which setting picks another port.
func TestPortInUseSuggestsAnotherPort(t *testing.T) {
	setServeEnv(t, nil)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)
	var stdout, stderr syncBuffer
	code := serve(context.Background(), []string{"--host", "127.0.0.1", "--port", port, "--chat=false", "--data-dir", t.TempDir()}, &stdout, &stderr)
	// The log's lines come first; the error is one line of its own.
	_, msg, _ := strings.Cut(stderr.String(), "parley: ")
	if code != 1 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "already in use") ||
		!strings.Contains(msg, "--port") || !strings.Contains(msg, "PARLEY_PORT") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
}
