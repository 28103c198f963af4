package testkit

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/pusher"
)

// FreePort returns a port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Buffer collects what several goroutines write: a process's output, a
// server's log.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Signed is the query of a request to the Pusher HTTP API signed as the
// server SDKs sign it: params, auth_key, auth_timestamp, auth_version,
// body_md5 for a body, and auth_signature.
func Signed(key, secret, method, path string, params url.Values, body []byte) url.Values {
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("auth_key", key)
	q.Set("auth_timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	q.Set("auth_version", "1.0")
	if len(body) > 0 {
		sum := md5.Sum(body)
		q.Set("body_md5", hex.EncodeToString(sum[:]))
	}
	q.Set("auth_signature", pusher.RequestSignature(secret, method, path, q))
	return q
}
