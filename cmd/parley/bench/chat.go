package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

var chatScenario = scenario{
	name:    "chat",
	summary: "Parley only: messages sent through the chat REST API, delivered to the other members' sockets",
	details: `Sets up --matters matters of --members users each by running the parley
binary's admin commands (--parley-bin, default this executable; pass the
server's --data-dir, DATABASE_URL is inherited), or uses the pre-created users
of --users-file, all members of every matter in --matter-ids (or each of
the matters it lists, as in a file from 'parley bench seed-data
--bench-users'). Every user
connects a socket and subscribes to private-user.{id}, authorised through
POST /api/broadcasting/auth. Messages go through POST /api/messages/send
open-loop at --rate for --duration, rotating over matters and senders; each
message's text carries its sequence number and due time, and latency runs
from that time to the MessageSent frame at every other member. Afterwards
every acknowledged message is looked up in GET /api/messages.

Meanwhile, open-loop at --read-rate, members do what a client does when it
opens a conversation: list its newest page (GET /api/messages), the
messages after and before an id in it (after_id, before_id), mark the
matter read up to the newest (PUT /api/matters/{id}/read) and fetch their
unread count (GET /api/messages/unread-count); each endpoint's request
latency is reported on its own line beside the sends'.

The admin commands reach the server's database through --data-dir or
--database-url (or DATABASE_URL, which they inherit).

Parley limits each token to 60 API requests a minute by default: start the
server with PARLEY_API_RATE_LIMIT=0 (unlimited) for this scenario, or keep
--rate at most (users / 2) per second.

--users-file is a JSON array of {"email","password"} (optionally "id",
"token" and "matters", a list of matter ids; without a token the bench logs
in at --login-path).

Example:
  parley bench chat --matters 10 --members 5 --rate 50 --duration 30s --data-dir /var/lib/parley`,
	newCommand: func(c *commonConfig) command { return &chatCmd{common: c} },
}

// chatEvent is the event Parley broadcasts for a new message.
const chatEvent = `App\Events\MessageSent`

// chatCmd is the chat scenario's configuration.
type chatCmd struct {
	common    *commonConfig
	Matters   int           // matters to create; default 1
	Members   int           // users per matter; default 5
	Rate      float64       // messages per second; default 10
	Duration  time.Duration // default 10s
	Payload   int           // message text size in bytes; default 200
	Drain     time.Duration // default 2s
	Senders   int           // concurrent send requests; default 16
	UsersFile string        // pre-created users instead of admin commands
	MatterIDs string        // with --users-file: comma-separated matter ids
	LoginPath string        // with --users-file, for users without a token
	ParleyBin string        // default os.Executable()
	DBURL     string        // passed to the admin commands as --database-url
	ReadRate  float64       // read cycles per second (list ×3, read, unread); 0 = none
	Readers   int           // concurrent read cycles; default 8

	usersFromFile []chatUser // parsed by validate
}

func (k *chatCmd) register(fs *flag.FlagSet) {
	fs.IntVar(&k.Matters, "matters", 1, "matters to create")
	fs.IntVar(&k.Members, "members", 5, "users per matter (each gets a socket)")
	fs.Float64Var(&k.Rate, "rate", 10, fmt.Sprintf("messages sent per second (at most %d)", maxChatRate))
	fs.DurationVar(&k.Duration, "duration", 10*time.Second, fmt.Sprintf("how long to send (at most %s)", maxDuration))
	fs.IntVar(&k.Payload, "payload", 200, "message text size in bytes")
	fs.DurationVar(&k.Drain, "drain", 2*time.Second, "grace period after the last send before counting losses")
	fs.IntVar(&k.Senders, "senders", 16, "concurrent send requests")
	fs.StringVar(&k.UsersFile, "users-file", "", "JSON array of pre-created users {email,password[,id,token]} instead of creating them")
	fs.StringVar(&k.MatterIDs, "matter-ids", "", "with --users-file: comma-separated ids of matters all those users belong to")
	fs.StringVar(&k.LoginPath, "login-path", "/api/auth/login", "with --users-file: login route for users without a token")
	fs.StringVar(&k.ParleyBin, "parley-bin", "", "parley binary for the admin commands (default: this executable)")
	fs.StringVar(&k.DBURL, "database-url", "", "the server's PostgreSQL URL, passed to the admin commands (default $DATABASE_URL, which they inherit)")
	fs.Float64Var(&k.ReadRate, "read-rate", 5, "read cycles per second, each 5 requests: list page 1, after_id, before_id, mark the matter read, unread count (0 = none)")
	fs.IntVar(&k.Readers, "readers", 8, "concurrent read cycles")
}

func (k *chatCmd) credentials() credentials { return credentials{key: true} }

func (k *chatCmd) users() int {
	if k.UsersFile != "" {
		return len(k.usersFromFile)
	}
	return k.Matters * k.Members
}

func (k *chatCmd) sockets() int { return k.users() + k.Senders + k.Readers }

func (k *chatCmd) validate() []string {
	var probs []string
	if !(k.Rate > 0 && k.Rate <= maxChatRate) {
		probs = append(probs, fmt.Sprintf("--rate must be > 0 and at most %d messages/s (got %v)", maxChatRate, k.Rate))
	}
	probs = checkDuration(probs, "--duration", k.Duration, time.Nanosecond, maxDuration)
	probs = checkRange(probs, "--payload", k.Payload, 0, maxPayload)
	probs = checkDuration(probs, "--drain", k.Drain, 0, maxDrain)
	probs = checkRange(probs, "--senders", k.Senders, 1, maxWorkers)
	probs = checkRange(probs, "--readers", k.Readers, 1, maxWorkers)
	if !(k.ReadRate >= 0 && k.ReadRate <= maxChatRate) {
		probs = append(probs, fmt.Sprintf("--read-rate must be between 0 and %d cycles/s (got %v)", maxChatRate, k.ReadRate))
	}
	if k.UsersFile == "" {
		probs = checkRange(probs, "--matters", k.Matters, 1, maxChatUsers)
		probs = checkRange(probs, "--members", k.Members, 2, maxChatUsers)
		if k.Matters*k.Members > maxChatUsers {
			probs = append(probs, fmt.Sprintf("--matters × --members must be at most %d users (got %d)", maxChatUsers, k.Matters*k.Members))
		}
		if k.MatterIDs != "" {
			probs = append(probs, "--matter-ids needs --users-file")
		}
	} else {
		users, err := readUsersFile(k.UsersFile)
		switch {
		case err != nil:
			probs = append(probs, err.Error())
		case len(users) < 2 || len(users) > maxChatUsers:
			probs = append(probs, fmt.Sprintf("--users-file must list between 2 and %d users (got %d)", maxChatUsers, len(users)))
		}
		k.usersFromFile = users
		if len(k.matterIDs()) == 0 && !usersListMatters(users) {
			probs = append(probs, "--users-file needs --matter-ids (the matters its users share) unless its users list their \"matters\"")
		}
	}
	return probs
}

func (k *chatCmd) matterIDs() []apiID {
	var ids []apiID
	for _, s := range strings.Split(k.MatterIDs, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ids = append(ids, apiID(s))
		}
	}
	return ids
}

func (k *chatCmd) budget() time.Duration {
	// Setup runs three admin commands per user.
	return time.Minute + time.Duration(k.users())*3*time.Second + connectBudget(k.users()) + publishBudget(k.Duration, k.Drain) + 2*time.Minute
}

// chatUser is one member: who it is and how it authenticates.
type chatUser struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	ID       apiID  `json:"id,omitempty"`
	Token    string `json:"token,omitempty"`
	// Matters lists the matters this user belongs to, when users belong to
	// different ones (as in a seed-data file); without it every user is in
	// every --matter-ids matter.
	Matters []apiID `json:"matters,omitempty"`
}

func readUsersFile(path string) ([]chatUser, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--users-file: %w", err)
	}
	var users []chatUser
	if err := json.Unmarshal(b, &users); err != nil {
		return nil, fmt.Errorf("--users-file %s: %w", path, err)
	}
	return users, nil
}

// chatMatter is a matter and the users (indexes) in it.
type chatMatter struct {
	id      apiID
	members []int
}

// chatWorld is the users and matters a run uses. Message seq goes to
// matter seq mod M, sent by the matter's members in turn, so sends spread
// over every token (the API's rate limit is per token).
type chatWorld struct {
	users    []chatUser
	matters  []chatMatter
	isMember [][]bool // [matter][user]
}

func (w *chatWorld) route(seq int64) (matter, sender int) {
	m := int(seq % int64(len(w.matters)))
	mem := w.matters[m].members
	return m, mem[int(seq/int64(len(w.matters)))%len(mem)]
}

func newWorld(users []chatUser, matters []chatMatter) *chatWorld {
	w := &chatWorld{users: users, matters: matters, isMember: make([][]bool, len(matters))}
	for m, mt := range matters {
		w.isMember[m] = make([]bool, len(users))
		for _, u := range mt.members {
			w.isMember[m][u] = true
		}
	}
	return w
}

// setup builds the world, from --users-file or through admin commands.
func (k *chatCmd) setup(ctx context.Context, api *chatAPI, tag string) (*chatWorld, error) {
	if k.UsersFile != "" {
		users := append([]chatUser(nil), k.usersFromFile...)
		for i := range users {
			u := &users[i]
			if u.Token == "" {
				tok, id, err := api.login(ctx, k.LoginPath, u.Email, u.Password)
				if err != nil {
					return nil, err
				}
				u.Token = tok
				if u.ID == "" {
					u.ID = id
				}
			}
			if u.ID == "" {
				return nil, fmt.Errorf("--users-file: user %s has no id and the login answer did not name one; add \"id\"", u.Email)
			}
		}
		matters, err := fileMatters(users, k.matterIDs())
		if err != nil {
			return nil, err
		}
		return newWorld(users, matters), nil
	}

	bin := k.ParleyBin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the parley binary (pass --parley-bin): %w", err)
		}
		bin = exe
	}
	a := admin{bin: bin, dataDir: k.common.DataDir, databaseURL: k.DBURL}
	ttl := max(time.Hour, k.budget())
	var users []chatUser
	var matters []chatMatter
	for m := range k.Matters {
		mid, err := a.createMatter(ctx, fmt.Sprintf("parley-bench %s matter %d", tag, m))
		if err != nil {
			return nil, err
		}
		mt := chatMatter{id: mid}
		for j := range k.Members {
			n := len(users)
			u := chatUser{Email: fmt.Sprintf("bench-%s-%d@bench.invalid", tag, n), Password: randomHex(12)}
			if u.ID, err = a.createUser(ctx, fmt.Sprintf("bench %s %d.%d", tag, m, j), u.Email, u.Password); err != nil {
				return nil, err
			}
			if u.Token, err = a.createToken(ctx, u.ID, ttl); err != nil {
				return nil, err
			}
			if err := a.addMember(ctx, mid, u.ID); err != nil {
				return nil, err
			}
			users = append(users, u)
			mt.members = append(mt.members, n)
		}
		matters = append(matters, mt)
	}
	return newWorld(users, matters), nil
}

// usersListMatters reports whether a users file says who is in which matter.
func usersListMatters(users []chatUser) bool {
	for _, u := range users {
		if len(u.Matters) > 0 {
			return true
		}
	}
	return false
}

// fileMatters builds the matters of a users file: with "matters" listed,
// each matter (of ids, when given) has the users that list it; otherwise
// every user is in every one of ids.
func fileMatters(users []chatUser, ids []apiID) ([]chatMatter, error) {
	if !usersListMatters(users) {
		all := make([]int, len(users))
		for i := range all {
			all[i] = i
		}
		var matters []chatMatter
		for _, id := range ids {
			matters = append(matters, chatMatter{id: id, members: all})
		}
		return matters, nil
	}
	var order []apiID
	members := map[apiID][]int{}
	for i, u := range users {
		for _, id := range u.Matters {
			if _, ok := members[id]; !ok {
				order = append(order, id)
			}
			members[id] = append(members[id], i)
		}
	}
	if len(ids) > 0 {
		order = ids
	}
	var matters []chatMatter
	for _, id := range order {
		if len(members[id]) < 2 {
			return nil, fmt.Errorf("--users-file: matter %s has %d of the file's users; it needs at least 2", id, len(members[id]))
		}
		matters = append(matters, chatMatter{id: id, members: members[id]})
	}
	return matters, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// chatInbox is one user's socket's view of the deliveries.
type chatInbox struct {
	user int
	// Owned by the socket's read loop until the pool is closed.
	seen                 []uint64 // bit seq: message seq arrived
	unique, dups, strays int64
}

// chatReport is the chat scenario's result.
type chatReport struct {
	runInfo
	Setup               string         `json:"setup"` // "admin-commands" or "users-file"
	SetupSeconds        float64        `json:"setup_seconds"`
	Matters             int            `json:"matters"`
	Users               int            `json:"users"`
	Connected           int64          `json:"sockets_connected"`
	ConnectErrors       int64          `json:"connect_errors"`
	Disconnects         int64          `json:"disconnects"`
	RatePerSecond       float64        `json:"rate_per_second"`
	DurationSeconds     float64        `json:"duration_seconds"`
	PayloadBytes        int            `json:"payload_bytes"`
	Senders             int            `json:"senders"`
	MessagesScheduled   int64          `json:"messages_scheduled"` // rate × duration
	MessagesSent        int64          `json:"messages_sent"`      // send requests started
	MessagesAcked       int64          `json:"messages_acked"`     // answered 2xx with an id
	SendErrors          int64          `json:"send_errors"`        // everything else
	SendRateLimited     int64          `json:"send_rate_limited"`  // HTTP 429 among them
	Expected            int64          `json:"expected"`           // Σ other subscribed members of each acked message
	Delivered           int64          `json:"delivered"`
	Lost                int64          `json:"lost"`
	Duplicates          int64          `json:"duplicates"`
	Unexpected          int64          `json:"unexpected"` // e.g. a sender getting its own message
	DeliveriesPerSecond float64        `json:"deliveries_per_second"`
	MaxSendLagMS        float64        `json:"max_send_lag_ms"`
	Latency             latencySummary `json:"latency"` // send due → MessageSent frame
	SendLatency         latencySummary `json:"send_request_latency"`
	ReadRatePerSecond   float64        `json:"read_rate_per_second"`
	ReadCycles          int64          `json:"read_cycles"`
	ReadErrors          int64          `json:"read_errors"`
	// Endpoints is each endpoint's request latency: send, list (page 1),
	// list_after_id, list_before_id, read (PUT /api/matters/{id}/read),
	// unread (GET /api/messages/unread-count).
	Endpoints         map[string]latencySummary `json:"endpoint_latency"`
	HistoryChecked    int64                     `json:"history_checked"`
	HistoryMissing    int64                     `json:"history_missing"`
	HistoryDuplicates int64                     `json:"history_duplicates"`
}

func (r *chatReport) rows() []row {
	return []row{
		{"setup", fmt.Sprintf("%s, %.2fs", r.Setup, r.SetupSeconds)},
		{"matters", strconv.Itoa(r.Matters)},
		{"users", fmt.Sprintf("%d (%d sockets connected, %d failed, %d disconnected)", r.Users, r.Connected, r.ConnectErrors, r.Disconnects)},
		{"rate", fmt.Sprintf("%g messages/s", r.RatePerSecond)},
		{"duration", fmt.Sprintf("%gs", r.DurationSeconds)},
		{"payload", fmt.Sprintf("%d B", r.PayloadBytes)},
		{"messages", fmt.Sprintf("%d scheduled, %d sent, %d acknowledged", r.MessagesScheduled, r.MessagesSent, r.MessagesAcked)},
		{"send errors", fmt.Sprintf("%d (%d rate-limited)", r.SendErrors, r.SendRateLimited)},
		{"expected", fmt.Sprint(r.Expected)},
		{"delivered", fmt.Sprint(r.Delivered)},
		{"lost", fmt.Sprint(r.Lost)},
		{"duplicates", fmt.Sprint(r.Duplicates)},
		{"unexpected", fmt.Sprint(r.Unexpected)},
		{"deliveries/s", fmt.Sprintf("%.0f", r.DeliveriesPerSecond)},
		{"latency", r.Latency.String()},
		{"send request", r.SendLatency.String()},
		{"reads", r.readsRow()},
		{"list page 1", r.endpoint("list")},
		{"list after_id", r.endpoint("list_after_id")},
		{"list before_id", r.endpoint("list_before_id")},
		{"read (matter)", r.endpoint("read")},
		{"unread count", r.endpoint("unread")},
		{"max send lag", fmt.Sprintf("%.2fms", r.MaxSendLagMS)},
		{"history", fmt.Sprintf("%d checked, %d missing, %d duplicated", r.HistoryChecked, r.HistoryMissing, r.HistoryDuplicates)},
	}
}

func (r *chatReport) readsRow() string {
	if r.ReadRatePerSecond == 0 {
		return "none (--read-rate 0)"
	}
	return fmt.Sprintf("%g cycles/s, %d cycles, %d errors", r.ReadRatePerSecond, r.ReadCycles, r.ReadErrors)
}

func (r *chatReport) endpoint(name string) string {
	if r.ReadRatePerSecond == 0 {
		return "not measured"
	}
	return r.Endpoints[name].String()
}

// readEndpoints are the endpoints a read cycle measures, in order.
var readEndpoints = []string{"list", "list_after_id", "list_before_id", "read", "unread"}

func (k *chatCmd) run(ctx context.Context, e *env) (report, error) {
	rep := &chatReport{runInfo: e.newInfo(), RatePerSecond: k.Rate, DurationSeconds: k.Duration.Seconds(), PayloadBytes: k.Payload, Senders: k.Senders, ReadRatePerSecond: k.ReadRate}
	rep.Server = e.newServerReport()
	api := &chatAPI{t: e.target, client: newHTTPClient(k.Senders+k.Readers, requestTimeout)}
	defer api.client.CloseIdleConnections()
	// The run tag marks this run's messages in histories that may hold others.
	tag := strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36)

	rep.Setup = "admin-commands"
	if k.UsersFile != "" {
		rep.Setup = "users-file"
	}
	setupStart := time.Now()
	w, err := k.setup(ctx, api, tag)
	rep.SetupSeconds = round(time.Since(setupStart).Seconds(), 3)
	if err != nil {
		return rep, fmt.Errorf("setup: %w", err)
	}
	rep.Matters, rep.Users = len(w.matters), len(w.users)

	total := itemsFor(k.Rate, k.Duration)
	r := &chatRun{w: w, total: total, tag: tag, latency: newHistogram(), inboxes: make([]*chatInbox, len(w.users)), ids: make([]apiID, total)}
	p := newPool(e.target, len(w.users), socketTimeout, e.errs)
	prog := startProgress(e.progress, "chat", func() string {
		return fmt.Sprintf("sockets %d/%d  sent %d  received %d  p99 %s", p.connected.Load(), len(w.users), r.acked.Load(), r.frames.Load(), fmtMS(r.latency.Quantile(0.99)))
	})
	defer prog.stop()

	_, err = connectSubscribers(ctx, e, rep.Server, p, func(i int, s *socket) (frameHandler, error) {
		u := w.users[i]
		ch := "private-user." + string(u.ID)
		auth, err := api.channelAuth(ctx, u.Token, s.socketID, ch)
		if err != nil {
			return nil, err
		}
		if _, err := s.subscribe(ch, auth, "", socketTimeout, nil); err != nil {
			return nil, err
		}
		in := &chatInbox{user: i, seen: make([]uint64, (total+63)/64)}
		r.inboxes[i] = in
		return r.handler(in), nil
	})
	rep.Connected, rep.ConnectErrors = p.connected.Load(), p.failed.Load()
	if err != nil {
		p.closeAll()
		return rep, err
	}

	meter := startCPU()
	serverCPU0 := e.server.cpu()
	start := time.Now()
	readsDone := make(chan map[string]*histogram, 1)
	go func() { readsDone <- r.readAll(ctx, api, k, e.errs) }()
	ls, sendLat := r.sendAll(ctx, api, k, e.errs)
	readLat := <-readsDone
	rep.Bench = meter.stop()
	sleepCtx(ctx, k.Drain) // deliveries still in flight get this long
	if rep.Server != nil {
		rep.Server.setPublishCPU(e.server.cpu()-serverCPU0, r.frames.Load())
	}
	p.closeAll()
	prog.stop()

	rep.MessagesScheduled = total
	rep.MessagesSent, rep.MessagesAcked, rep.SendErrors, rep.SendRateLimited = ls.issued, r.acked.Load(), r.failed.Load(), r.limited.Load()
	rep.MaxSendLagMS = round(float64(ls.maxLag)/1e6, 3)
	rep.Latency, rep.SendLatency = summarize(r.latency), summarize(sendLat)
	rep.Endpoints = map[string]latencySummary{"send": rep.SendLatency}
	for name, h := range readLat {
		rep.Endpoints[name] = summarize(h)
	}
	rep.ReadCycles, rep.ReadErrors = r.readCycles.Load(), r.readFailed.Load()
	rep.Disconnects = p.disconnects.Load()
	r.count(rep)
	if span := max(ls.elapsed, time.Since(start)-k.Drain); span > 0 {
		rep.DeliveriesPerSecond = round(float64(rep.Delivered)/span.Seconds(), 1)
	}
	if ctx.Err() == nil && ls.issued < total {
		rep.note("the server took sends too slowly: %d of %d messages were never sent (sending stops %s after the start)", total-ls.issued, total, giveUpAfter(k.Duration))
	}
	if rep.SendRateLimited > 0 {
		rep.note("%d sends were rate-limited (HTTP 429): start the server with PARLEY_API_RATE_LIMIT=0 or lower --rate", rep.SendRateLimited)
	}

	if ctx.Err() == nil {
		if err := r.checkHistory(ctx, api, rep); err != nil {
			e.errs.add("history", err)
			rep.note("the history check did not finish")
		}
	}
	rep.Completed = ctx.Err() == nil
	return rep, ctx.Err()
}

// chatRun is the state that a chat run's phases share.
type chatRun struct {
	// Set at construction.
	w       *chatWorld
	total   int64 // messages scheduled
	tag     string
	latency *histogram // send due → MessageSent frame

	// inboxes[u] is written by u's connect worker, then owned by u's read
	// loop; read by count after the pool is closed.
	inboxes []*chatInbox
	// ids[seq] is written once by the worker that sent seq; read after
	// sending ends. Empty means not acknowledged.
	ids []apiID

	frames, acked, failed, limited atomic.Int64
	readCycles, readFailed         atomic.Int64
}

// handler is the read-loop callback for one user's socket.
func (r *chatRun) handler(in *chatInbox) frameHandler {
	return func(name, msg []byte) {
		if string(name) != chatEvent {
			return // unread counts and the like
		}
		now := time.Now().UnixNano()
		r.frames.Add(1)
		seq, ok1 := intAfter(msg, keySeq)
		due, ok2 := intAfter(msg, keyTS)
		if !ok1 || !ok2 || seq >= r.total {
			in.strays++
			return
		}
		m, sender := r.w.route(seq)
		if !r.w.isMember[m][in.user] || in.user == sender {
			in.strays++ // e.g. a sender getting its own message
			return
		}
		bit := uint64(1) << (uint(seq) % 64)
		if in.seen[seq/64]&bit != 0 {
			in.dups++
			return
		}
		in.seen[seq/64] |= bit
		in.unique++
		r.latency.Record(now - due)
	}
}

// sendAll sends the scheduled messages open-loop and returns how the
// schedule went and the send requests' latency.
func (r *chatRun) sendAll(ctx context.Context, api *chatAPI, k *chatCmd, errs *errorLog) (loopStats, *histogram) {
	lat := newHistogram()
	loop := openLoop{rate: k.Rate, count: r.total, workers: k.Senders, giveUp: giveUpAfter(k.Duration)}
	ls := loop.run(ctx, func(ctx context.Context, seq int64, due time.Time) {
		m, sender := r.w.route(seq)
		text := chatText(r.tag, seq, due.UnixNano(), k.Payload)
		t0 := time.Now()
		id, err := api.send(ctx, r.w.users[sender].Token, r.w.matters[m].id, text)
		lat.RecordDuration(time.Since(t0))
		if err != nil {
			if ctx.Err() != nil {
				return // interrupted, not a server error
			}
			r.failed.Add(1)
			var se *statusError
			if errors.As(err, &se) && se.Status == http.StatusTooManyRequests {
				r.limited.Add(1)
			}
			errs.add("send", err)
			return
		}
		r.ids[seq] = id
		r.acked.Add(1)
	})
	return ls, lat
}

// readAll runs read cycles open-loop at --read-rate for --duration, beside
// the sends: cycle i is member i/M of matter i mod M opening the
// conversation. It returns each endpoint's request latency.
func (r *chatRun) readAll(ctx context.Context, api *chatAPI, k *chatCmd, errs *errorLog) map[string]*histogram {
	lat := map[string]*histogram{}
	for _, name := range readEndpoints {
		lat[name] = newHistogram()
	}
	if k.ReadRate <= 0 {
		return lat
	}
	timed := func(name string, fn func() error) error {
		t0 := time.Now()
		err := fn()
		lat[name].RecordDuration(time.Since(t0))
		return err
	}
	loop := openLoop{rate: k.ReadRate, count: itemsFor(k.ReadRate, k.Duration), workers: k.Readers, giveUp: giveUpAfter(k.Duration)}
	loop.run(ctx, func(ctx context.Context, i int64, _ time.Time) {
		m := r.w.matters[int(i%int64(len(r.w.matters)))]
		tok := r.w.users[m.members[int(i/int64(len(r.w.matters)))%len(m.members)]].Token
		err := func() error {
			var newest int64
			if err := timed("list", func() (err error) { newest, err = api.newest(ctx, tok, m.id, ""); return err }); err != nil {
				return err
			}
			if newest > 0 {
				after := strconv.FormatInt(max(newest-50, 1), 10)
				if err := timed("list_after_id", func() error { _, err := api.newest(ctx, tok, m.id, "after_id="+after); return err }); err != nil {
					return err
				}
				before := strconv.FormatInt(newest, 10)
				if err := timed("list_before_id", func() error { _, err := api.newest(ctx, tok, m.id, "before_id="+before); return err }); err != nil {
					return err
				}
				if err := timed("read", func() error { return api.readUpTo(ctx, tok, m.id, newest) }); err != nil {
					return err
				}
			}
			return timed("unread", func() error { return api.unreadCount(ctx, tok) })
		}()
		r.readCycles.Add(1)
		if err != nil && ctx.Err() == nil {
			r.readFailed.Add(1)
			errs.add("read", err)
		}
	})
	return lat
}

// count fills in expected, delivered, lost, duplicates and unexpected.
// Each acknowledged message is expected at every other member of its
// matter whose socket subscribed.
func (r *chatRun) count(rep *chatReport) {
	for seq := range r.total {
		if r.ids[seq] == "" {
			continue
		}
		m, sender := r.w.route(seq)
		for _, u := range r.w.matters[m].members {
			if u == sender || r.inboxes[u] == nil {
				continue
			}
			rep.Expected++
			if r.inboxes[u].seen[seq/64]&(1<<(uint(seq)%64)) != 0 {
				rep.Delivered++
			}
		}
	}
	for _, in := range r.inboxes {
		if in != nil {
			rep.Duplicates += in.dups
			rep.Unexpected += in.strays
		}
	}
	rep.Lost = rep.Expected - rep.Delivered
}

// chatText is message seq's text: the run tag, the markers and padding up
// to size bytes.
func chatText(tag string, seq, dueNanos int64, size int) string {
	s := fmt.Sprintf("parley-bench %s ~seq=%d ~ts=%d ", tag, seq, dueNanos)
	if pad := size - len(s); pad > 0 {
		s += strings.Repeat("x", pad)
	}
	return s
}

// historyStart is where matter m's history check starts: just before this
// run's first acknowledged message in it when every id is numeric (a seeded
// matter may hold a large history from before the run), else 0 (from the
// start).
func (r *chatRun) historyStart(m int) int64 {
	var first int64
	for seq, id := range r.ids {
		if id == "" || seq%len(r.w.matters) != m {
			continue
		}
		n, err := strconv.ParseInt(string(id), 10, 64)
		if err != nil || n <= 0 {
			return 0
		}
		if first == 0 || n < first {
			first = n
		}
	}
	return max(first-1, 0)
}

// checkHistory looks every acknowledged message up in its matter's
// history, by id, and counts this run's messages that appear twice.
func (r *chatRun) checkHistory(ctx context.Context, api *chatAPI, rep *chatReport) error {
	w, ids := r.w, r.ids
	marker := "parley-bench " + r.tag + " "
	for m, mt := range w.matters {
		found := map[apiID]bool{}
		bySeq := map[int64]int{}
		token := w.users[mt.members[0]].Token
		err := api.history(ctx, token, mt.id, r.historyStart(m), func(id apiID, text string) {
			found[id] = true
			if strings.HasPrefix(text, marker) {
				if seq, ok := intAfter([]byte(text), keySeq); ok {
					bySeq[seq]++
				}
			}
		})
		if err != nil {
			return err
		}
		for seq, id := range ids {
			if id == "" || int64(seq)%int64(len(w.matters)) != int64(m) {
				continue
			}
			rep.HistoryChecked++
			if !found[id] {
				rep.HistoryMissing++
			}
		}
		for _, n := range bySeq {
			if n > 1 {
				rep.HistoryDuplicates += int64(n - 1)
			}
		}
	}
	return nil
}
