package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/storetest"
	"github.com/parley-chat/parley/push"
	"github.com/parley-chat/parley/push/pushtest"
)

// nodeCall is a chat REST request to a node with a bearer token.
func nodeCall(t *testing.T, n *procNode, token, method, path string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, n.url+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := n.httpClient(20 * time.Second).Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, n.name, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		t.Fatalf("%s %s on %s: %d %s", method, path, n.name, res.StatusCode, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// pushTarget is a recipient's device as the test services see it.
type pushTarget struct {
	user  string
	token string
}

// TestPushClusterExactlyOnce: three nodes with the chat on one PostgreSQL
// database push to the test services; seven members with no socket have
// eight devices on the three platforms. Messages are sent one at a time
// through nodes 1 and 2, and node 3 is killed (-9) midway: every device
// gets exactly one push per message, with the member's exact count as the
// badge, before and after the kill — each member's unread counter (a grain,
// the one place that pushes for them) moves to a survivor if it was on
// node 3. The last message is the marker: pushes of one node leave one at
// a time, so a duplicate decided before it would have arrived first.
func TestPushClusterExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three parley processes")
	}
	rec := pushtest.NewRecorder()
	fcm, apns, web := pushtest.NewFCM(t, rec), pushtest.NewAPNs(t, rec), pushtest.NewWebPush(t, rec)
	keys, _, err := push.LoadOrCreateVAPID(filepath.Join(t.TempDir(), "vapid.json"))
	if err != nil {
		t.Fatal(err)
	}
	web.VAPIDPublic = keys.Public
	credFile := filepath.Join(t.TempDir(), "fcm.json")
	if err := os.WriteFile(credFile, fcm.CredentialsJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	dbURL := storetest.PostgresURL(t)
	nodes := startStaticWith(t, 3, "push-"+fmt.Sprint(time.Now().UnixNano()), func(n *procNode) {
		n.args = append(n.args, "--chat=true", "--database-url="+dbURL)
		n.env = append(n.env, "PARLEY_FCM_CREDENTIALS="+credFile, "PARLEY_FCM_ENDPOINT="+fcm.URL,
			"PARLEY_APNS_KEY_FILE="+apns.KeyFile, "PARLEY_APNS_KEY_ID="+apns.KeyID, "PARLEY_APNS_TEAM_ID="+apns.TeamID,
			"PARLEY_APNS_TOPIC="+apns.Topic, "PARLEY_APNS_ENDPOINT="+apns.URL,
			// Both test services use httptest's certificate: the nodes trust it alone.
			"SSL_CERT_FILE="+apns.CAFile,
			"PARLEY_VAPID_PUBLIC_KEY="+keys.Public, "PARLEY_VAPID_PRIVATE_KEY="+keys.Private,
			"PARLEY_PUSH_WINDOW=1ms", "PARLEY_PUSH_CONCURRENCY=1", "PARLEY_API_RATE_LIMIT=0")
	})
	st, err := persistence.Open(context.Background(), dbURL, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	targets, annToken, matterID := pushClusterMembers(t, st, nodes[0], web)

	const messages, killAfter = 16, 6
	for i := 1; i <= messages; i++ {
		if i == killAfter+1 {
			nodes[2].kill()
		}
		via, start := nodes[i%2], time.Now()
		msg := nodeCall(t, via, annToken, "POST", "/api/messages/send", map[string]any{"message": fmt.Sprint("m", i), "client_matter_id": matterID})
		id := int64(msg["data"].(map[string]any)["id"].(float64))
		for _, tg := range targets {
			p := rec.Wait(t, 45*time.Second, fmt.Sprintf("of message %d (#%d) to %s", id, i, tg.user), func(p pushtest.Push) bool {
				return p.Token == tg.token && p.MessageID == id
			})
			if p.Badge != i || p.Body != fmt.Sprint("Ann: m", i) || p.Title != "Cluster" {
				t.Fatalf("message %d to %s: %+v, want badge %d", i, tg.user, p, i)
			}
		}
		t.Logf("message %d: every device had its push %s after the send", i, time.Since(start).Round(time.Millisecond))
	}
	seen := map[string]int{}
	for _, p := range rec.All() {
		seen[fmt.Sprint(p.Token, "/", p.MessageID)]++
	}
	for key, n := range seen {
		if n != 1 {
			t.Errorf("%d pushes of %s", n, key)
		}
	}
	if len(seen) != messages*len(targets) {
		t.Errorf("%d distinct pushes, want %d", len(seen), messages*len(targets))
	}
	if p := rec.Problems(); len(p) > 0 {
		t.Errorf("protocol problems: %v", p)
	}
}

// pushClusterMembers makes Ann (the sender) and seven members with
// devices in one matter: six with an FCM token, one with a device on each
// platform, registered through the API.
func pushClusterMembers(t *testing.T, st persistence.Store, n *procNode, web *pushtest.WebPush) (targets []pushTarget, annToken string, matterID int64) {
	t.Helper()
	ctx := context.Background()
	var ids []int64
	var tokens []string
	for _, name := range []string{"Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal"} {
		u, err := st.CreateUserWith(ctx, persistence.NewUser{Name: name, Email: strings.ToLower(name) + "@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := chat.IssueToken(ctx, st, u.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ids, tokens = append(ids, u.ID), append(tokens, tok)
	}
	m, err := st.CreateMatterWith(ctx, "Cluster", ids)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal"}
	for i, tok := range tokens[1:] {
		fcmTok := "fcm-" + names[i]
		nodeCall(t, n, tok, "POST", "/api/devices", map[string]any{"platform": "fcm", "token": fcmTok})
		targets = append(targets, pushTarget{names[i], fcmTok})
	}
	hal := tokens[len(tokens)-1]
	apnsTok := strings.Repeat("cd", 32)
	nodeCall(t, n, hal, "POST", "/api/devices", map[string]any{"platform": "apns", "token": apnsTok})
	id, sub := web.Subscribe(t)
	nodeCall(t, n, hal, "POST", "/api/devices", map[string]any{"platform": "webpush", "subscription": sub})
	targets = append(targets, pushTarget{"Hal (APNs)", apnsTok}, pushTarget{"Hal (Web Push)", id})
	return targets, tokens[0], m.ID
}
