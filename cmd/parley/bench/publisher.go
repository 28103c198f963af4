package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/pusher"
)

// benchEvent is the name of every event the bench publishes.
const benchEvent = "bench"

// Markers carried in each event's data. '~' cannot occur in a channel or
// bench event name, so the tiny frame parser cannot mistake either for a
// marker.
var (
	keySeq = []byte("~seq")
	keyTS  = []byte("~ts")
)

// newHTTPClient returns a keep-alive client sized for workers concurrent
// requests, so that connections are reused instead of exhausting
// ephemeral ports at high rates.
func newHTTPClient(workers int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         dialContext,
			MaxIdleConns:        workers * 2,
			MaxIdleConnsPerHost: workers * 2,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// statusError is a non-2xx HTTP answer.
type statusError struct {
	Status int
	Body   string
}

func (e *statusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body)
}

// checkStatus turns a non-2xx response into a *statusError holding the
// start of its body, and drains the body so the connection is reused.
func checkStatus(resp *http.Response) error {
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, resp.Body)
	return &statusError{Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
}

// publisher triggers events through the signed Pusher HTTP API.
type publisher struct {
	t      target
	client *http.Client
	path   string // /apps/{id}/events
}

// requestTimeout bounds every HTTP request the bench makes.
const requestTimeout = 10 * time.Second

func newPublisher(t target, workers int) *publisher {
	return &publisher{t: t, client: newHTTPClient(workers, requestTimeout), path: "/apps/" + t.appID + "/events"}
}

// trigger publishes one event to channel; nil means the server answered 2xx.
func (p *publisher) trigger(ctx context.Context, channel, data string) error {
	body, err := json.Marshal(struct {
		Name     string   `json:"name"`
		Channels []string `json:"channels"`
		Data     string   `json:"data"`
	}{benchEvent, []string{channel}, data})
	if err != nil {
		return err
	}
	u := p.t.httpURL(p.path) + "?" + pusher.SignRequest(p.t.key, p.t.secret, http.MethodPost, p.path, nil, body, time.Now()).Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return checkStatus(resp)
}

// eventPayload is the data of event seq due at dueNanos, padded with 'x'
// to size bytes (or left unpadded when the markers alone are longer).
// It is JSON so that clients that parse data (pusher-js does) accept it.
func eventPayload(seq, dueNanos int64, size int) string {
	var b strings.Builder
	b.Grow(max(size, 64))
	b.WriteString(`{"~seq":`)
	b.WriteString(strconv.FormatInt(seq, 10))
	b.WriteString(`,"~ts":`)
	b.WriteString(strconv.FormatInt(dueNanos, 10))
	b.WriteString(`,"pad":"`)
	if pad := size - b.Len() - 2; pad > 0 {
		b.WriteString(strings.Repeat("x", pad))
	}
	b.WriteString(`"}`)
	return b.String()
}
