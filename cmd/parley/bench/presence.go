package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/pusher"
)

var presenceScenario = scenario{
	name:    "presence",
	summary: "N sockets join one presence channel: time until every socket knows every member",
	details: `Opens --members sockets that all join --channel, each as its own user,
as fast as --dial-concurrency allows (a member_added storm). A socket is
consistent once its subscription_succeeded snapshot plus the member_added
events it got cover all N users. Reports the time from the first dial until
every socket is consistent (waiting at most --settle after the last join),
and member_added latency: from the member's subscribe to the event's arrival.

Servers usually cap a presence channel at 100 members (Pusher's limit); raise
the server's limit to test more.

Example:
  parley bench presence --members 100`,
	newCommand: func(c *commonConfig) command { return &presenceCmd{common: c} },
}

// presenceCmd is the presence scenario's configuration.
type presenceCmd struct {
	common  *commonConfig
	Members int           // sockets, one user each; default 100
	Channel string        // default "presence-bench"
	Settle  time.Duration // wait for consistency after the last join; default 30s
}

func (c *presenceCmd) register(fs *flag.FlagSet) {
	fs.IntVar(&c.Members, "members", 100, fmt.Sprintf("sockets joining the channel, one user each (at most %d)", maxPresenceMembers))
	fs.IntVar(&c.Members, "n", 100, "short for --members")
	fs.StringVar(&c.Channel, "channel", "presence-bench", "presence channel to join")
	fs.DurationVar(&c.Settle, "settle", 30*time.Second, "how long to wait for consistency after the last join")
}

func (c *presenceCmd) credentials() credentials { return credentials{key: true, secret: true} }

func (c *presenceCmd) sockets() int { return c.Members }

func (c *presenceCmd) validate() []string {
	var probs []string
	probs = checkRange(probs, "--members", c.Members, 2, maxPresenceMembers)
	if !strings.HasPrefix(c.Channel, "presence-") || !channelNameRE.MatchString(c.Channel) || len(c.Channel) > 200 {
		probs = append(probs, fmt.Sprintf("--channel %q must be a valid channel name starting with presence-", c.Channel))
	}
	probs = checkDuration(probs, "--settle", c.Settle, time.Millisecond, maxSettle)
	return probs
}

func (c *presenceCmd) budget() time.Duration {
	return connectBudget(c.Members) + c.Settle + 30*time.Second
}

// presenceReport is the presence scenario's result.
type presenceReport struct {
	runInfo
	Channel            string         `json:"channel"`
	Members            int            `json:"members"`
	Joined             int64          `json:"joined"`
	JoinErrors         int64          `json:"join_errors"`
	Disconnects        int64          `json:"disconnects"`
	JoinSeconds        float64        `json:"join_seconds"` // first dial → last subscription_succeeded
	Consistent         bool           `json:"consistent"`
	ConsistentSockets  int64          `json:"consistent_sockets"`
	ConsistencySeconds float64        `json:"consistency_seconds"`    // first dial → last socket consistent
	LagAfterJoinMS     float64        `json:"lag_after_last_join_ms"` // last join → last socket consistent
	MemberAdded        int64          `json:"member_added"`
	MemberAddedDups    int64          `json:"member_added_duplicates"`
	MemberRemoved      int64          `json:"member_removed"`
	ForeignMembers     int64          `json:"foreign_members"` // members the bench did not create
	MemberAddedLatency latencySummary `json:"member_added_latency"`
	SubscribeLatency   latencySummary `json:"subscribe_latency"`
}

func (r *presenceReport) rows() []row {
	cons := fmt.Sprintf("%d of %d sockets consistent", r.ConsistentSockets, r.Joined)
	if r.Consistent {
		cons = fmt.Sprintf("all after %.3fs (%.2fms after the last join)", r.ConsistencySeconds, r.LagAfterJoinMS)
	}
	return []row{
		{"channel", r.Channel},
		{"members", fmt.Sprintf("%d of %d joined (%d failed, %d disconnected)", r.Joined, r.Members, r.JoinErrors, r.Disconnects)},
		{"join", fmt.Sprintf("%.3fs; subscribed %s", r.JoinSeconds, r.SubscribeLatency)},
		{"consistency", cons},
		{"member_added", fmt.Sprintf("%d received, %d duplicates", r.MemberAdded, r.MemberAddedDups)},
		{"member_added latency", r.MemberAddedLatency.String()},
		{"member_removed", strconv.FormatInt(r.MemberRemoved, 10)},
		{"foreign members", strconv.FormatInt(r.ForeignMembers, 10)},
	}
}

// presenceMember is one socket's view of the channel's members.
type presenceMember struct {
	// Owned by the connect worker, then by the socket's read loop.
	seen                              []uint64 // bit j: member j known
	nseen                             int
	added, addDups, removed, foreigns int64
	// consistentAt is when nseen reached N (unix nanos; 0 before).
	consistentAt atomic.Int64
}

// presenceRun is the shared state of one presence run.
type presenceRun struct {
	n         int
	prefix    string         // user ids are prefix + index
	joinedAt  []atomic.Int64 // unix nanos at which member j sent its subscribe
	addLat    *histogram
	remaining atomic.Int64 // sockets not yet consistent
	done      chan struct{}
}

func (r *presenceRun) userID(i int) string { return r.prefix + strconv.Itoa(i) }

// index maps a user id back to its member, or -1 for a foreign id.
func (r *presenceRun) index(id []byte) int {
	rest, ok := bytes.CutPrefix(id, []byte(r.prefix))
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(string(rest))
	if err != nil || i < 0 || i >= r.n {
		return -1
	}
	return i
}

// see records that m knows member j and reports whether it was new.
func (r *presenceRun) see(m *presenceMember, j int) bool {
	w, bit := j/64, uint64(1)<<(uint(j)%64)
	if m.seen[w]&bit != 0 {
		return false
	}
	m.seen[w] |= bit
	m.nseen++
	if m.nseen == r.n {
		m.consistentAt.Store(time.Now().UnixNano())
		if r.remaining.Add(-1) == 0 {
			close(r.done)
		}
	}
	return true
}

func (r *presenceRun) handler(m *presenceMember) frameHandler {
	var keyUserID = []byte("user_id")
	return func(name, msg []byte) {
		switch string(name) {
		case evMemberAdded:
			now := time.Now().UnixNano()
			m.added++
			id, ok := stringAfter(msg, keyUserID)
			j := -1
			if ok {
				j = r.index(id)
			}
			if j < 0 {
				m.foreigns++
				return
			}
			if !r.see(m, j) {
				m.addDups++
				return
			}
			r.addLat.Record(now - r.joinedAt[j].Load())
		case evMemberRemoved:
			m.removed++
		}
	}
}

// snapshot applies a subscription_succeeded presence snapshot.
func (r *presenceRun) snapshot(m *presenceMember, data string) error {
	var snap struct {
		Presence struct {
			IDs []json.RawMessage `json:"ids"`
		} `json:"presence"`
	}
	if err := json.Unmarshal([]byte(data), &snap); err != nil {
		return fmt.Errorf("presence snapshot: %w", err)
	}
	for _, raw := range snap.Presence.IDs {
		id := raw
		var s string
		if json.Unmarshal(raw, &s) == nil {
			id = []byte(s)
		}
		if j := r.index(id); j >= 0 {
			r.see(m, j)
		} else {
			m.foreigns++
		}
	}
	return nil
}

func (c *presenceCmd) run(ctx context.Context, e *env) (report, error) {
	rep := &presenceReport{runInfo: e.newInfo(), Channel: c.Channel, Members: c.Members}
	rep.Server = e.newServerReport()
	// A run tag in the user ids keeps members left over from another run
	// (or another bench) from counting.
	r := &presenceRun{
		n:        c.Members,
		prefix:   "bench-" + strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36) + "-",
		joinedAt: make([]atomic.Int64, c.Members),
		addLat:   newHistogram(),
		done:     make(chan struct{}),
	}
	r.remaining.Store(int64(c.Members))
	members := make([]*presenceMember, c.Members)
	for i := range members {
		members[i] = &presenceMember{seen: make([]uint64, (c.Members+63)/64)}
	}
	p := newPool(e.target, c.Members, socketTimeout, e.errs)

	prog := startProgress(e.progress, "presence", func() string {
		return fmt.Sprintf("joined %d/%d  consistent %d  member_added p99 %s",
			p.connected.Load(), c.Members, int64(c.Members)-r.remaining.Load(), fmtMS(r.addLat.Quantile(0.99)))
	})
	defer prog.stop()

	meter := startCPU()
	start := time.Now()
	var lastJoin atomic.Int64
	took, err := connectSubscribers(ctx, e, rep.Server, p, func(i int, s *socket) (frameHandler, error) {
		m := members[i]
		r.see(m, i) // a socket knows itself even if the snapshot left it out
		data, _ := json.Marshal(map[string]any{"user_id": r.userID(i), "user_info": map[string]string{"name": "bench " + strconv.Itoa(i)}})
		auth := pusher.ChannelAuth(e.target.key, e.target.secret, s.socketID, c.Channel, string(data))
		h := r.handler(m)
		r.joinedAt[i].Store(time.Now().UnixNano())
		snap, err := s.subscribe(c.Channel, auth, string(data), socketTimeout, h)
		if err != nil {
			return nil, err
		}
		storeMax(&lastJoin, time.Now().UnixNano())
		if err := r.snapshot(m, snap); err != nil {
			return nil, err
		}
		return h, nil
	})
	rep.Joined, rep.JoinErrors = p.connected.Load(), p.failed.Load()
	rep.JoinSeconds = round(took.Seconds(), 3)
	rep.SubscribeLatency = summarize(p.subscribeLat)
	if err != nil {
		p.closeAll()
		rep.Bench = meter.stop()
		return rep, err
	}

	if rep.JoinErrors == 0 {
		t := time.NewTimer(c.Settle)
		select {
		case <-r.done:
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	} else {
		rep.note("%d members failed to join, so no socket can see all %d; not waiting for consistency", rep.JoinErrors, c.Members)
	}
	rep.Bench = meter.stop()
	p.closeAll()
	prog.stop()

	var last int64
	for _, m := range members {
		rep.MemberAdded += m.added
		rep.MemberAddedDups += m.addDups
		rep.MemberRemoved += m.removed
		rep.ForeignMembers += m.foreigns
		if at := m.consistentAt.Load(); at > 0 {
			rep.ConsistentSockets++
			last = max(last, at)
		}
	}
	rep.Disconnects = p.disconnects.Load()
	rep.MemberAddedLatency = summarize(r.addLat)
	rep.Consistent = rep.ConsistentSockets == int64(c.Members)
	if rep.Consistent {
		rep.ConsistencySeconds = round(time.Unix(0, last).Sub(start).Seconds(), 3)
		rep.LagAfterJoinMS = round(float64(max(last-lastJoin.Load(), 0))/1e6, 3)
	} else if rep.JoinErrors == 0 && ctx.Err() == nil {
		rep.note("not every socket saw every member within --settle %s", c.Settle)
	}
	rep.Completed = ctx.Err() == nil
	return rep, ctx.Err()
}
