package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// apiID is an id as Parley's API or admin commands print it, number or
// string. It is kept as text (channel names and query strings need text)
// and marshalled back as a number when it is one, so request bodies carry
// the same JSON type the server sent.
type apiID string

func (a apiID) MarshalJSON() ([]byte, error) {
	if a != "" && strings.Trim(string(a), "0123456789") == "" {
		return []byte(a), nil
	}
	return json.Marshal(string(a))
}

func (a *apiID) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*a = apiID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("id is neither a string nor a number: %s", b)
	}
	*a = apiID(n.String())
	return nil
}

// chatAPI is a client for Parley's chat REST API.
type chatAPI struct {
	t      target
	client *http.Client
}

// do sends a JSON request with a bearer token and decodes a 2xx answer
// into out (when non-nil). A non-2xx answer is a *statusError.
func (c *chatAPI) do(ctx context.Context, method, path, token string, body, out any) error {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequestWithContext(ctx, method, c.t.httpURL(path), rd)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, c.t.httpURL(path), nil)
	}
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 || out == nil {
		return checkStatus(resp)
	}
	err = json.NewDecoder(resp.Body).Decode(out)
	_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
	if err != nil {
		return fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
	}
	return nil
}

// channelAuth asks the server to sign a private channel subscription, as
// pusher-js does through Laravel Echo's authEndpoint.
func (c *chatAPI) channelAuth(ctx context.Context, token, socketID, channel string) (string, error) {
	var out struct {
		Auth string `json:"auth"`
	}
	err := c.do(ctx, http.MethodPost, "/api/broadcasting/auth", token,
		map[string]string{"socket_id": socketID, "channel_name": channel}, &out)
	if err != nil {
		return "", fmt.Errorf("broadcasting auth for %s: %w", channel, err)
	}
	if out.Auth == "" {
		return "", fmt.Errorf("broadcasting auth for %s: no auth in the answer", channel)
	}
	return out.Auth, nil
}

// send posts a message and returns its id.
func (c *chatAPI) send(ctx context.Context, token string, matter apiID, text string) (apiID, error) {
	var out struct {
		Data struct {
			ID apiID `json:"id"`
		} `json:"data"`
	}
	err := c.do(ctx, http.MethodPost, "/api/messages/send", token,
		map[string]any{"message": text, "client_matter_id": matter}, &out)
	if err != nil {
		return "", err
	}
	if out.Data.ID == "" {
		return "", errors.New("send: no data.id in the answer")
	}
	return out.Data.ID, nil
}

// newest lists one page of matter's messages (20, the default page size;
// extra is more of the query, e.g. "after_id=5") and returns the highest id
// in it (0 when empty).
func (c *chatAPI) newest(ctx context.Context, token string, matter apiID, extra string) (int64, error) {
	var out struct {
		Data []struct {
			ID apiID `json:"id"`
		} `json:"data"`
	}
	q := "/api/messages?client_matter_id=" + url.QueryEscape(string(matter))
	if extra != "" {
		q += "&" + extra
	}
	if err := c.do(ctx, http.MethodGet, q, token, nil, &out); err != nil {
		return 0, fmt.Errorf("list matter %s: %w", matter, err)
	}
	var top int64
	for _, m := range out.Data {
		if n, err := strconv.ParseInt(string(m.ID), 10, 64); err == nil {
			top = max(top, n)
		}
	}
	return top, nil
}

// readUpTo marks matter read up to message id (PUT /api/matters/{id}/read).
func (c *chatAPI) readUpTo(ctx context.Context, token string, matter apiID, id int64) error {
	if err := c.do(ctx, http.MethodPut, "/api/matters/"+url.PathEscape(string(matter))+"/read", token, map[string]int64{"up_to_id": id}, nil); err != nil {
		return fmt.Errorf("read matter %s up to %d: %w", matter, id, err)
	}
	return nil
}

// unreadCount fetches GET /api/messages/unread-count.
func (c *chatAPI) unreadCount(ctx context.Context, token string) error {
	var out map[string]any
	if err := c.do(ctx, http.MethodGet, "/api/messages/unread-count", token, nil, &out); err != nil {
		return fmt.Errorf("unread count: %w", err)
	}
	return nil
}

// historyPageSize is the page size asked for; maxHistoryPages bounds the
// walk through one matter's history.
const (
	historyPageSize = 100
	maxHistoryPages = 20_000
)

// history visits every message of matter, page by page; with afterID > 0
// only the messages after it, oldest first, walking the after_id cursor
// (a matter with a large history is not paged through from its start).
func (c *chatAPI) history(ctx context.Context, token string, matter apiID, afterID int64, visit func(id apiID, text string)) error {
	if afterID > 0 {
		return c.historyAfter(ctx, token, matter, afterID, visit)
	}
	for page := 1; page <= maxHistoryPages; page++ {
		var out struct {
			Data []struct {
				ID      apiID  `json:"id"`
				Message string `json:"message"`
			} `json:"data"`
			LastPage int `json:"last_page"`
		}
		q := url.Values{}
		q.Set("client_matter_id", string(matter))
		q.Set("page", strconv.Itoa(page))
		q.Set("limit", strconv.Itoa(historyPageSize))
		if err := c.do(ctx, http.MethodGet, "/api/messages?"+q.Encode(), token, nil, &out); err != nil {
			return fmt.Errorf("history of matter %s, page %d: %w", matter, page, err)
		}
		for _, m := range out.Data {
			visit(m.ID, m.Message)
		}
		if len(out.Data) == 0 || (out.LastPage > 0 && page >= out.LastPage) {
			return nil
		}
	}
	return fmt.Errorf("history of matter %s: more than %d pages", matter, maxHistoryPages)
}

func (c *chatAPI) historyAfter(ctx context.Context, token string, matter apiID, afterID int64, visit func(id apiID, text string)) error {
	for range maxHistoryPages {
		var out struct {
			Data []struct {
				ID      apiID  `json:"id"`
				Message string `json:"message"`
			} `json:"data"`
		}
		q := url.Values{}
		q.Set("client_matter_id", string(matter))
		q.Set("after_id", strconv.FormatInt(afterID, 10))
		q.Set("limit", strconv.Itoa(historyPageSize))
		if err := c.do(ctx, http.MethodGet, "/api/messages?"+q.Encode(), token, nil, &out); err != nil {
			return fmt.Errorf("history of matter %s after %d: %w", matter, afterID, err)
		}
		if len(out.Data) == 0 {
			return nil
		}
		for _, m := range out.Data {
			visit(m.ID, m.Message)
			id, err := strconv.ParseInt(string(m.ID), 10, 64)
			if err != nil || id <= afterID {
				return fmt.Errorf("history of matter %s after %d: id %q does not advance the cursor", matter, afterID, m.ID)
			}
			afterID = id
		}
	}
	return fmt.Errorf("history of matter %s: more than %d pages", matter, maxHistoryPages)
}

// login exchanges an email and password for a token (and the user's id
// when the answer has it). Parley's login route is not fixed yet, so the
// path is a flag and the usual answer shapes are accepted.
func (c *chatAPI) login(ctx context.Context, path, email, password string) (string, apiID, error) {
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodPost, path, "", map[string]string{"email": email, "password": password}, &raw); err != nil {
		return "", "", fmt.Errorf("login %s: %w", email, err)
	}
	tok := findString(raw, "token", "access_token", "plainTextToken", "data.token", "data.access_token")
	if tok == "" {
		return "", "", fmt.Errorf("login %s: no token in the answer", email)
	}
	return tok, apiID(findString(raw, "user.id", "data.user.id", "user_id", "data.user_id")), nil
}

// findString returns the first of the dotted paths that holds a string or
// number in the JSON object raw.
func findString(raw []byte, paths ...string) string {
	var root any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&root) != nil {
		return ""
	}
	for _, p := range paths {
		v := root
		for _, k := range strings.Split(p, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[k]
		}
		switch x := v.(type) {
		case string:
			if x != "" {
				return x
			}
		case json.Number:
			return x.String()
		}
	}
	return ""
}

// admin runs the parley binary's admin commands, which talk to the
// database directly: the only way to create users without credentials.
type admin struct {
	bin         string
	dataDir     string // passed on as --data-dir when set
	databaseURL string // passed on as --database-url when set; else DATABASE_URL is inherited
}

// run executes one admin command and returns the last line of its output
// that is a JSON object, so log lines around it do no harm.
func (a admin) run(ctx context.Context, args ...string) ([]byte, error) {
	if a.dataDir != "" {
		args = append(args, "--data-dir", a.dataDir)
	}
	if a.databaseURL != "" {
		args = append(args, "--database-url", a.databaseURL)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 300 {
			msg = msg[len(msg)-300:]
		}
		return nil, fmt.Errorf("%s %s: %w: %s", a.bin, strings.Join(args, " "), err, msg)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "{") && json.Valid([]byte(l)) {
			return []byte(l), nil
		}
	}
	if out := bytes.TrimSpace(stdout.Bytes()); json.Valid(out) {
		return out, nil // pretty-printed over several lines
	}
	return nil, fmt.Errorf("%s %s: no JSON object in its output", a.bin, strings.Join(args, " "))
}

func (a admin) runID(ctx context.Context, args ...string) (apiID, error) {
	out, err := a.run(ctx, args...)
	if err != nil {
		return "", err
	}
	id := findString(out, "id", "data.id", "user.id", "matter.id")
	if id == "" {
		return "", fmt.Errorf("%s %s: no id in %s", a.bin, strings.Join(args, " "), out)
	}
	return apiID(id), nil
}

func (a admin) createUser(ctx context.Context, name, email, password string) (apiID, error) {
	return a.runID(ctx, "users", "create", "--name", name, "--email", email, "--password", password)
}

func (a admin) createToken(ctx context.Context, user apiID, ttl time.Duration) (string, error) {
	hours := int((ttl + time.Hour - 1) / time.Hour)
	out, err := a.run(ctx, "tokens", "create", "--user", string(user), "--ttl", strconv.Itoa(hours)+"h")
	if err != nil {
		return "", err
	}
	tok := findString(out, "token", "data.token", "plainTextToken")
	if tok == "" {
		return "", fmt.Errorf("tokens create: no token in %s", out)
	}
	return tok, nil
}

func (a admin) createMatter(ctx context.Context, title string) (apiID, error) {
	return a.runID(ctx, "matters", "create", "--title", title)
}

func (a admin) addMember(ctx context.Context, matter, user apiID) error {
	_, err := a.run(ctx, "matters", "add-member", "--matter", string(matter), "--user", string(user))
	if err != nil && strings.Contains(err.Error(), "no JSON object") {
		return nil // a bare success without output is fine
	}
	return err
}
