package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestPresenceBecomesConsistent(t *testing.T) {
	f := newFakePusher(t)
	var r struct {
		Completed         bool  `json:"completed"`
		Joined            int64 `json:"joined"`
		Consistent        bool  `json:"consistent"`
		ConsistentSockets int64 `json:"consistent_sockets"`
		MemberAdded       int64 `json:"member_added"`
		MemberAddedDups   int64 `json:"member_added_duplicates"`
		ForeignMembers    int64 `json:"foreign_members"`
		Latency           struct {
			Count int64 `json:"count"`
		} `json:"member_added_latency"`
	}
	runReport(t, &r, append([]string{"presence", "--members", "30", "--settle", "3s"}, f.args()...)...)
	// The fake server serialises joins, so socket i hears about the
	// 29 − i members after it: 29+28+…+0 = 435 member_added events.
	if !r.Completed || !r.Consistent || r.Joined != 30 || r.ConsistentSockets != 30 {
		t.Errorf("report %+v", r)
	}
	if r.MemberAdded != 435 || r.MemberAddedDups != 0 || r.ForeignMembers != 0 || r.Latency.Count != 435 {
		t.Errorf("member_added %d dups %d foreign %d latency count %d; want 435/0/0/435", r.MemberAdded, r.MemberAddedDups, r.ForeignMembers, r.Latency.Count)
	}
}

func TestPresenceWrongSecretFailsToJoin(t *testing.T) {
	f := newFakePusher(t)
	args := append([]string{"presence", "--members", "3"}, f.args()...)
	code, _, stderr := runMain(t, append(args, "--secret", "wrong")...)
	if code != exitFailure || !strings.Contains(stderr, "subscription_error") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestConnectionsHoldAndPublish(t *testing.T) {
	f := newFakePusher(t)
	args := append([]string{"connections", "--connections", "40", "--channels", "4", "--hold", "200ms", "--ramp-rate", "400",
		"--publish-rate", "100", "--publish-duration", "300ms", "--drain", "200ms",
		"--server-pid", strconv.Itoa(os.Getpid())}, f.args()...)
	var r struct {
		Completed      bool    `json:"completed"`
		Connected      int64   `json:"connected"`
		StillConnected int64   `json:"still_connected"`
		RampSeconds    float64 `json:"ramp_seconds"`
		ConnectRate    float64 `json:"connect_rate_per_second"`
		Subscribe      struct {
			Count int64 `json:"count"`
		} `json:"subscribe_latency"`
		Server *struct {
			RSSHeld int64 `json:"rss_held_bytes"`
		} `json:"server"`
		Publish *struct {
			Expected  int64 `json:"expected"`
			Delivered int64 `json:"delivered"`
			Lost      int64 `json:"lost"`
		} `json:"publish"`
	}
	stdout := runReport(t, &r, args...)
	if !r.Completed || r.Connected != 40 || r.StillConnected != 40 || r.Subscribe.Count != 40 {
		t.Errorf("report %+v", r)
	}
	// 40 sockets at 400/s: the ramp is paced to about 0.1 s.
	if r.RampSeconds < 0.09 || r.ConnectRate > 450 {
		t.Errorf("ramp %.3fs at %.0f/s ignores --ramp-rate 400", r.RampSeconds, r.ConnectRate)
	}
	if r.Server == nil || r.Server.RSSHeld <= 0 {
		t.Errorf("server stats missing: %+v", r.Server)
	}
	// 30 events, each to one of 4 channels with 10 sockets: 300 deliveries.
	if r.Publish == nil || r.Publish.Expected != 300 || r.Publish.Delivered != 300 || r.Publish.Lost != 0 {
		t.Errorf("publish %+v", r.Publish)
	}
	if !strings.Contains(stdout, "B/connection") {
		t.Errorf("no RSS per connection in the table:\n%s", stdout)
	}
}

func TestConnectionsPrivate(t *testing.T) {
	f := newFakePusher(t)
	out := filepath.Join(t.TempDir(), "r.json")
	args := append([]string{"connections", "-n", "6", "--channels", "2", "--private", "--hold", "0s", "--json", out}, f.args()...)
	code, stdout, stderr := runMain(t, args...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var r struct {
		Connected int64 `json:"connected"`
		Private   bool  `json:"private"`
	}
	readJSON(t, out, &r)
	if r.Connected != 6 || !r.Private {
		t.Errorf("report %+v", r)
	}
	// A wrong secret: the private subscribes are refused.
	args = append([]string{"connections", "-n", "2", "--private", "--hold", "0s"}, f.args()...)
	if code, _, stderr := runMain(t, append(args, "--secret", "wrong")...); code != exitFailure || !strings.Contains(stderr, "subscription_error") {
		t.Errorf("wrong secret: exit %d, stderr %q", code, stderr)
	}
}

func TestConnectionsWithoutPublishNeedsOnlyKey(t *testing.T) {
	f := newFakePusher(t)
	args := append([]string{"connections", "-n", "5", "--hold", "0s"}, f.args()...)
	args = append(args, "--app-id", "", "--secret", "")
	if code, stdout, stderr := runMain(t, args...); code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// chatFixture gives the fake server 2 matters of 3 users, all with tokens,
// and writes them as a --users-file... with every user in every matter, as
// the users-file mode assumes.
func chatFixture(t *testing.T, f *fakePusher) string {
	f.chat = &fakeChat{users: map[string]string{}, matters: map[string][]string{}}
	var users []chatUser
	for i := 1; i <= 4; i++ {
		id, tok := strconv.Itoa(i), "tok-"+strconv.Itoa(i)
		f.chat.users[tok] = id
		users = append(users, chatUser{Email: "u" + id + "@x", Password: "pw", ID: apiID(id), Token: tok})
		for _, m := range []string{"7", "8"} {
			f.chat.matters[m] = append(f.chat.matters[m], id)
		}
	}
	b, _ := json.Marshal(users)
	path := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestChatWithUsersFile(t *testing.T) {
	f := newFakePusher(t)
	users := chatFixture(t, f)
	args := append([]string{"chat", "--users-file", users, "--matter-ids", "7,8", "--rate", "40", "--duration", "500ms",
		"--drain", "200ms", "--payload", "120", "--read-rate", "20"}, f.args()...)
	var r struct {
		Completed      bool  `json:"completed"`
		Connected      int64 `json:"sockets_connected"`
		Sent           int64 `json:"messages_sent"`
		Acked          int64 `json:"messages_acked"`
		Expected       int64 `json:"expected"`
		Delivered      int64 `json:"delivered"`
		Lost           int64 `json:"lost"`
		Duplicates     int64 `json:"duplicates"`
		Unexpected     int64 `json:"unexpected"`
		HistoryChecked int64 `json:"history_checked"`
		HistoryMissing int64 `json:"history_missing"`
		Latency        struct {
			Count int64 `json:"count"`
		} `json:"latency"`
		ReadCycles int64                     `json:"read_cycles"`
		ReadErrors int64                     `json:"read_errors"`
		Endpoints  map[string]map[string]any `json:"endpoint_latency"`
	}
	runReport(t, &r, args...)
	// --read-rate 20 for 500 ms: 10 cycles, each timing five endpoints.
	// A cycle on an empty matter lists and counts only.
	count := func(name string) int64 { n, _ := r.Endpoints[name]["count"].(float64); return int64(n) }
	if r.ReadCycles != 10 || r.ReadErrors != 0 || count("send") != 20 || count("list") != 10 || count("unread") != 10 ||
		count("read") == 0 || count("list_after_id") != count("read") || count("list_before_id") != count("read") ||
		f.readQueries.Load() != 10+10+2*count("read") { // after_id requests count as afterQueries
		t.Errorf("%d read cycles, %d errors, %d read requests, endpoints %v", r.ReadCycles, r.ReadErrors, f.readQueries.Load(), r.Endpoints)
	}
	// 20 messages, each to the 3 other members of its matter.
	if !r.Completed || r.Connected != 4 || r.Sent != 20 || r.Acked != 20 {
		t.Errorf("report %+v", r)
	}
	if r.Expected != 60 || r.Delivered != 60 || r.Lost != 0 || r.Duplicates != 0 || r.Unexpected != 0 || r.Latency.Count != 60 {
		t.Errorf("deliveries %+v", r)
	}
	if r.HistoryChecked != 20 || r.HistoryMissing != 0 {
		t.Errorf("history checked %d missing %d", r.HistoryChecked, r.HistoryMissing)
	}
}

func TestChatHistoryMissing(t *testing.T) {
	f := newFakePusher(t)
	users := chatFixture(t, f)
	f.hideEvery = 5 // the history leaves out message ids 5, 10, …
	args := append([]string{"chat", "--users-file", users, "--matter-ids", "7", "--rate", "40", "--duration", "250ms",
		"--drain", "100ms"}, f.args()...)
	var r struct {
		HistoryChecked int64 `json:"history_checked"`
		HistoryMissing int64 `json:"history_missing"`
	}
	runReport(t, &r, args...)
	if r.HistoryChecked != 10 || r.HistoryMissing != 2 {
		t.Errorf("checked %d missing %d; want 10/2", r.HistoryChecked, r.HistoryMissing)
	}
}

func TestAdminCommandsParseOutput(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "parley")
	script := `#!/bin/sh
echo "$@" >> "` + filepath.Join(dir, "calls") + `"
case "$1 $2" in
"users create") echo 'log line'; echo '{"id":17,"name":"x"}' ;;
"tokens create") echo '{"token":"17|abc"}' ;;
"matters create") echo '{"data":{"id":"m-3"}}' ;;
"matters add-member") ;;
*) echo "unknown" >&2; exit 3 ;;
esac
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	a := admin{bin: bin, dataDir: "/var/lib/parley"}
	ctx := t.Context()
	if id, err := a.createUser(ctx, "N", "e@x", "pw"); err != nil || id != "17" {
		t.Errorf("createUser: %q %v", id, err)
	}
	if tok, err := a.createToken(ctx, "17", 90*60e9); err != nil || tok != "17|abc" {
		t.Errorf("createToken: %q %v", tok, err)
	}
	if id, err := a.createMatter(ctx, "T"); err != nil || id != "m-3" {
		t.Errorf("createMatter: %q %v", id, err)
	}
	if err := a.addMember(ctx, "m-3", "17"); err != nil {
		t.Errorf("addMember: %v", err)
	}
	if _, err := a.run(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("a failing command should report its stderr: %v", err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	for _, want := range []string{"users create --name N --email e@x --password pw --data-dir /var/lib/parley", "tokens create --user 17 --ttl 2h", "matters add-member --matter m-3 --user 17"} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("calls lack %q:\n%s", want, calls)
		}
	}
	// Ids keep their JSON type on the way back.
	if b, _ := json.Marshal(map[string]apiID{"n": "17", "s": "m-3"}); string(b) != `{"n":17,"s":"m-3"}` {
		t.Errorf("apiID marshals as %s", b)
	}
}
