package testkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/parley-chat/parley/pusher"
)

// Frame is a Pusher protocol message as a client receives it.
type Frame struct {
	Event   string `json:"event"`
	Channel string `json:"channel"`
	Data    string `json:"data"`
	UserID  string `json:"user_id"`
}

// DataMap decodes the frame's data, a JSON object in a string.
func (f Frame) DataMap(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(f.Data), &m); err != nil {
		t.Fatalf("data of %s is not a JSON object string: %q", f.Event, f.Data)
	}
	return m
}

// Read is what a client's reader got: a frame and when, or an error: the
// one that ended the socket (the last Read: the channel closes after it), or
// that a frame is not a Pusher message with string data.
type Read struct {
	Frame Frame
	At    time.Time
	Err   error
}

// ErrTimeout is TryNext's error when nothing came in time.
var ErrTimeout = errors.New("timeout")

// Client is a test's WebSocket client. One goroutine reads its frames into
// Reads from the moment it connects.
type Client struct {
	T        testing.TB
	Conn     *websocket.Conn
	SocketID string // set by Established
	Name     string // names the socket in failures; "" names it by SocketID
	Reads    chan Read
	// Skip says which frames the reads pass over: markers meant for other
	// sockets' checks. Nil passes over none.
	Skip func(Frame) bool
	// Timeout bounds Next, Expect and ExpectNext; 5 s when 0.
	Timeout time.Duration
}

// DialOptions are how Dial connects.
type DialOptions struct {
	Dialer *websocket.Dialer // nil: websocket.DefaultDialer
	Header http.Header
	Buffer int // reads that may wait unread; 4096 when 0
	// Unowned leaves closing the socket to the test. Otherwise it closes
	// when the test ends, and the test keeps the client until then.
	Unowned bool
}

// Dial connects to url (ws:// or wss://) and starts reading.
func Dial(t testing.TB, url string, o DialOptions) *Client {
	t.Helper()
	d := o.Dialer
	if d == nil {
		d = websocket.DefaultDialer
	}
	conn, _, err := d.Dial(url, o.Header)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if !o.Unowned {
		t.Cleanup(func() { conn.Close() })
	}
	if o.Buffer == 0 {
		o.Buffer = 4096
	}
	c := &Client{T: t, Conn: conn, Reads: make(chan Read, o.Buffer)}
	go c.read()
	return c
}

func (c *Client) read() {
	for {
		_, b, err := c.Conn.ReadMessage()
		if err != nil {
			c.Reads <- Read{At: time.Now(), Err: err}
			close(c.Reads)
			return
		}
		var f Frame
		if jerr := json.Unmarshal(b, &f); jerr != nil {
			err = fmt.Errorf("server sent non-JSON or non-string data %q: %v", b, jerr)
		}
		c.Reads <- Read{Frame: f, At: time.Now(), Err: err}
	}
}

func (c *Client) who() string {
	if c.Name != "" {
		return c.Name
	}
	return "socket " + c.SocketID
}

func (c *Client) timeout() time.Duration {
	if c.Timeout == 0 {
		return 5 * time.Second
	}
	return c.Timeout
}

// Established reads pusher:connection_established and keeps the socket id.
func (c *Client) Established() {
	c.T.Helper()
	f := c.Expect("pusher:connection_established")
	c.SocketID, _ = f.DataMap(c.T)["socket_id"].(string)
	if c.SocketID == "" {
		c.T.Fatalf("%s: no socket_id in %q", c.who(), f.Data)
	}
}

// TryNext returns the next read that Skip does not pass over, within d:
// its frame, or its error; io.EOF once the socket's end was read, and
// ErrTimeout when d passed.
func (c *Client) TryNext(d time.Duration) (Read, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case r, ok := <-c.Reads:
			if !ok {
				return Read{}, io.EOF
			}
			if r.Err == nil && c.Skip != nil && c.Skip(r.Frame) {
				continue
			}
			return r, r.Err
		case <-timer.C:
			return Read{}, ErrTimeout
		}
	}
}

// Next returns the next frame (see TryNext) within Timeout; anything else
// fails the test.
func (c *Client) Next() Frame {
	c.T.Helper()
	r, err := c.TryNext(c.timeout())
	if err != nil {
		c.T.Fatalf("%s: read: %v", c.who(), err)
	}
	return r.Frame
}

// Expect is Next that checks the frame's event.
func (c *Client) Expect(event string) Frame {
	c.T.Helper()
	f := c.Next()
	if f.Event != event {
		c.T.Fatalf("%s: want %s, got %+v", c.who(), event, f)
	}
	return f
}

// ExpectOn is Expect that checks the frame's channel too.
func (c *Client) ExpectOn(event, channel string) Frame {
	c.T.Helper()
	f := c.Next()
	if f.Event != event || f.Channel != channel {
		c.T.Fatalf("%s: want %s on %s, got %+v", c.who(), event, channel, f)
	}
	return f
}

// ExpectClose passes over frames until the socket ends, each within d, and
// returns the close code; an end without a close frame fails the test.
func (c *Client) ExpectClose(d time.Duration) int {
	c.T.Helper()
	for {
		_, err := c.TryNext(d)
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		c.T.Fatalf("%s: want a close frame, got %v", c.who(), err)
	}
}

// ExpectNext asserts that the frame match accepts comes next, within
// Timeout: nothing may come before it but what Skip passes over. It is how
// a test shows that nothing came: a marker sent after the deed that must
// deliver nothing, by a path ordered after anything the deed could have
// caused, must be next. what names the marker in failures.
func (c *Client) ExpectNext(what string, match func(Frame) bool) {
	c.T.Helper()
	c.scan(what, c.timeout(), match, func(f Frame) {
		c.T.Fatalf("%s: want nothing before marker %s, got %+v", c.who(), what, f)
	})
}

// Before returns the frames that came before the one stop accepts, within
// d, less what Skip passes over.
func (c *Client) Before(what string, stop func(Frame) bool, d time.Duration) []Frame {
	c.T.Helper()
	var out []Frame
	c.scan(what, d, stop, func(f Frame) { out = append(out, f) })
	return out
}

// scan reads until stop accepts a frame, within d, handing what comes
// before it to other (less what Skip passes over).
func (c *Client) scan(what string, d time.Duration, stop func(Frame) bool, other func(Frame)) {
	c.T.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case r, ok := <-c.Reads:
			switch {
			case !ok:
				c.T.Fatalf("%s ended before marker %s", c.who(), what)
			case r.Err != nil:
				c.T.Fatalf("%s: %v before marker %s", c.who(), r.Err, what)
			case stop(r.Frame):
				return
			case c.Skip == nil || !c.Skip(r.Frame):
				other(r.Frame)
			}
		case <-timer.C:
			c.T.Fatalf("%s: marker %s did not arrive", c.who(), what)
		}
	}
}

// Send writes v: a string as it is, anything else as JSON.
func (c *Client) Send(v any) {
	c.T.Helper()
	b, ok := v.(string)
	if !ok {
		j, _ := json.Marshal(v)
		b = string(j)
	}
	if err := c.Conn.WriteMessage(websocket.TextMessage, []byte(b)); err != nil {
		c.T.Fatalf("%s: write: %v", c.who(), err)
	}
}

// Subscribe sends pusher:subscribe for channel with auth and channel_data
// ("" leaves either out).
func (c *Client) Subscribe(channel, auth, channelData string) {
	c.T.Helper()
	d := map[string]string{"channel": channel}
	if auth != "" {
		d["auth"] = auth
	}
	if channelData != "" {
		d["channel_data"] = channelData
	}
	c.Send(map[string]any{"event": "pusher:subscribe", "data": d})
}

// Unsubscribe sends pusher:unsubscribe for channel.
func (c *Client) Unsubscribe(channel string) {
	c.T.Helper()
	c.Send(map[string]any{"event": "pusher:unsubscribe", "data": map[string]string{"channel": channel}})
}

// SubscribeSigned subscribes with the auth an app with key and secret gives:
// a private channel's, or a presence channel's with member as its
// channel_data; a public channel needs none.
func (c *Client) SubscribeSigned(key, secret, channel, member string) {
	c.T.Helper()
	switch {
	case strings.HasPrefix(channel, "presence-"):
		c.Subscribe(channel, pusher.ChannelAuth(key, secret, c.SocketID, channel, member), member)
	case strings.HasPrefix(channel, "private-"):
		c.Subscribe(channel, pusher.ChannelAuth(key, secret, c.SocketID, channel, ""), "")
	default:
		c.Subscribe(channel, "", "")
	}
}

// ExpectSubscribed reads channel's pusher_internal:subscription_succeeded.
func (c *Client) ExpectSubscribed(channel string) Frame {
	c.T.Helper()
	f := c.Expect("pusher_internal:subscription_succeeded")
	if f.Channel != channel {
		c.T.Fatalf("%s: succeeded for %q, want %q", c.who(), f.Channel, channel)
	}
	return f
}
