package testkit

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parley-chat/parley/wsconn"
)

// Acceptor is a node as its WebSocket endpoint sees it (an actors.Node).
type Acceptor interface {
	ConnOptions() wsconn.Options
	Accept(conn *wsconn.Conn, appKey, protocol, origin, clientIP string)
}

// Served is a node behind a WebSocket endpoint on 127.0.0.1 (see Serve).
type Served[N Acceptor] struct {
	T    testing.TB
	Node N
	URL  string // ws://127.0.0.1:port
}

// Start serves n until the test ends, and then stops it with stop.
func Start[N Acceptor](t testing.TB, n N, stop func()) *Served[N] {
	t.Cleanup(stop)
	return &Served[N]{T: t, Node: n, URL: Serve(t, n)}
}

// Dial connects a client to the app and reads connection_established.
func (n *Served[N]) Dial(o DialOptions) *Client {
	n.T.Helper()
	c := Dial(n.T, n.URL+"/app/"+Key+"?protocol=7", o)
	c.Established()
	return c
}

// Serve runs n behind a WebSocket endpoint on 127.0.0.1 (/app/KEY) until
// the test ends and returns its ws:// URL. A cleanup that stops the node
// belongs before Serve, so that it runs after the endpoint closed.
func Serve(t testing.TB, n Acceptor) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := wsconn.Upgrade(w, r, n.ConnOptions())
		if err != nil {
			return
		}
		n.Accept(conn, strings.TrimPrefix(r.URL.Path, "/app/"), r.URL.Query().Get("protocol"), "", "127.0.0.1")
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}
