package persistence

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

var _ Store = (*pgStore)(nil)

// pgStore is the PostgreSQL store: sqlStore on one pool, plus the group
// commit of sends on a small pool of its own (send).
type pgStore struct {
	sqlStore
	// send is the group commit's pool: its statements are prepared
	// (prepared.go) and its sessions plan them once, generically
	// (sendSession). A nil send runs the group commit on w.
	send  *sqlx.DB
	sends statements // prepared on send
}

// SendLanes is how many groups the chat API's Sender commits at once on
// PostgreSQL (its lanes); the group commit's pool has a connection for each.
const SendLanes = 4

// sendSession is run on each new connection of the send pool. PostgreSQL
// plans a prepared statement again on every run while the plan it makes for
// the run's values looks cheaper than a generic one, and for the group's
// statements it always does: their array parameters look ten times longer
// to a generic plan than a group of one or two really is. Planning was as
// costly as running: 270 µs for the insert, 100 µs for the lock, per group.
// The statements have no value-dependent plan to lose (every array is
// unnested whole, every lookup is by key), so the pool's sessions plan them
// once. Only this pool: the other statements keep per-value plans.
const sendSession = `SET plan_cache_mode = force_generic_plan`

// postgresDialect is what the shared statements need to know of PostgreSQL.
var postgresDialect = dialect{
	name:         "postgres",
	isUnique:     func(err error) bool { return pgIs(err, pqerror.UniqueViolation) },
	isForeignKey: func(err error) bool { return pgIs(err, pqerror.ForeignKeyViolation) },
	emailIs:      `lower(email) = lower(?)`,
	snapshot:     sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	inIDs: func(col string, ids []int64) (string, []any) {
		return col + ` = ANY(?)`, []any{pq.Array(ids)}
	},
	countMessages: pgCountMessages,
	unreadState:   unreadStateSQL(`(SELECT m.id FROM messages m WHERE m.matter_id = mm.matter_id ORDER BY m.id DESC LIMIT 1)`),
	moveWatermark: pgMoveWatermark,
	// A transaction-scoped advisory lock; its key includes the schema so
	// separate schemas (e.g. test runs) do not wait on each other.
	migrationLock: `SELECT pg_advisory_xact_lock(hashtext('parley.migrate'), hashtext(coalesce(current_schema(), '')))`,
	timestamp:     `TIMESTAMPTZ`,
}

func openPostgres(ctx context.Context, databaseURL string) (*pgStore, error) {
	migs, err := loadMigrations("postgres")
	if err != nil {
		return nil, err
	}
	db, err := sqlx.Open("postgres", withBinaryParameters(databaseURL))
	if err != nil {
		return nil, fmt.Errorf("persistence: open postgres: %w", err)
	}
	// 16 here and the send pool's 4 (SendLanes): 20 per node leaves room
	// under the default max_connections (100) for a few nodes plus admin
	// sessions.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	// Fail at startup on a bad URL or a down server rather than on the
	// first request.
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("persistence: open postgres: %w", err)
	}
	st := newPGStore(db, migs)
	connector, err := pq.NewConnector(withBinaryParameters(databaseURL))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("persistence: open postgres: %w", err)
	}
	st.send = sqlx.NewDb(sql.OpenDB(sessionConnector{Connector: connector, init: sendSession}), "postgres")
	st.send.SetMaxOpenConns(SendLanes)
	st.send.SetMaxIdleConns(SendLanes)
	st.send.SetConnMaxIdleTime(5 * time.Minute)
	return st, nil
}

// newPGStore is the store on an open pool.
func newPGStore(db *sqlx.DB, migs []migration) *pgStore {
	return &pgStore{sqlStore: sqlStore{w: db, r: db, d: postgresDialect, migrations: migs}}
}

// sessionConnector runs init on each connection it opens.
type sessionConnector struct {
	driver.Connector
	init string
}

func (c sessionConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("persistence: %T cannot run %q", conn, c.init)
	}
	if _, err := ex.ExecContext(ctx, c.init, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (s *pgStore) Close() error {
	if s.send == nil {
		return s.sqlStore.Close()
	}
	return errors.Join(s.sends.close(), s.send.Close(), s.sqlStore.Close())
}

// sendPool is the group commit's pool and its statements.
func (s *pgStore) sendPool() (*sqlx.DB, *statements) {
	if s.send == nil {
		return s.w, &s.stmts
	}
	return s.send, &s.sends
}

// withBinaryParameters turns on lib/pq's binary_parameters unless the URL
// says otherwise: a query with arguments then costs one round trip instead
// of two (without it lib/pq waits for the statement's description before
// binding). Parley passes no []byte arguments, the only values it changes.
func withBinaryParameters(databaseURL string) string {
	if strings.Contains(databaseURL, "binary_parameters") {
		return databaseURL
	}
	if u, err := url.Parse(databaseURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("binary_parameters", "yes")
		u.RawQuery = q.Encode()
		return u.String()
	}
	return databaseURL + " binary_parameters=yes" // key=value form
}

func pgIs(err error, code pqerror.Code) bool { return pq.As(err, code) != nil }

// pgMoveWatermark is moveWatermark in one round trip: the new watermark, the
// range (whose foreign key to the watermark is checked at the statement's
// end) and the member's read version.
func pgMoveWatermark(ctx context.Context, tx *sqlx.Tx, mv watermarkMove) (int64, error) {
	var seq int64
	err := tx.GetContext(ctx, &seq, `WITH pos AS (
			INSERT INTO read_positions (matter_id, user_id, up_to) VALUES ($1, $2, $4)
			ON CONFLICT (matter_id, user_id) DO UPDATE SET up_to = excluded.up_to),
		rng AS (
			INSERT INTO read_ranges (matter_id, user_id, from_id, to_id, read_at) VALUES ($1, $2, $3, $4, $5))
		UPDATE members SET read_seq = read_seq + 1 WHERE matter_id = $1 AND user_id = $2 RETURNING read_seq`,
		mv.matterID, mv.userID, mv.from, mv.to, mv.at)
	return seq, err
}

// pgCountMessages is ListMessages' count. The matter's message_count
// (migration 0006) makes the total of the whole history, and of what
// precedes before_id, cost what follows rather than the matter's size;
// after_id counts what follows it.
func pgCountMessages(q MessageQuery, where string, args []any) (string, []any) {
	switch {
	case q.AfterID <= 0 && q.BeforeID <= 0:
		return `SELECT COALESCE((SELECT message_count FROM matters WHERE id = ?), 0)`, []any{q.MatterID}
	case q.AfterID <= 0:
		return `SELECT COALESCE((SELECT message_count FROM matters WHERE id = ?), 0) -
			(SELECT COUNT(*) FROM messages m WHERE m.matter_id = ? AND m.id >= ?)`, []any{q.MatterID, q.MatterID, q.BeforeID}
	}
	return countAllMessages(q, where, args)
}

func (s *pgStore) SendMessages(ctx context.Context, sends []Send) []SendResult {
	return s.sendMessages(ctx, sends, s.sendGroup)
}

// sendGroup stores a group with one statement whatever its size, in a
// transaction of its own: parley_send_group (migration 0009) locks the
// group's matters in id order, reads their members, inserts every send whose
// sender is a member, and commits when it returns. Before, the group took
// four round trips (BEGIN, the lock, the insert, COMMIT), and on a busy
// machine each one waited for PostgreSQL to be scheduled again. The repeats
// of a client message id are looked up afterwards (one more statement, only
// when there are some).
func (s *pgStore) sendGroup(ctx context.Context, sends []Send) ([]SendResult, error) {
	db, stmts := s.sendPool()
	ps, err := stmts.prepared(ctx, db, pgSendGroupSQL)
	if err != nil {
		return nil, err
	}
	matterIDs := make([]int64, 0, len(sends))
	mat, snd := make([]int64, len(sends)), make([]int64, len(sends))
	body, at := make([]string, len(sends)), make([]string, len(sends))
	cid := make([]sql.NullString, len(sends))
	for i, x := range sends {
		matterIDs = append(matterIDs, x.MatterID)
		mat[i], snd[i], body[i] = x.MatterID, x.SenderID, x.Body
		at[i] = dbTime(x.At).Format(time.RFC3339Nano)
		cid[i] = sql.NullString{String: x.ClientMessageID, Valid: x.ClientMessageID != ""}
	}
	slices.Sort(matterIDs)
	matterIDs = slices.Compact(matterIDs)
	var rows []sendGroupRow
	err = ps[0].SelectContext(ctx, &rows, pq.Array(matterIDs), pq.Array(mat), pq.Array(snd), pq.Array(body), pq.Array(cid), pq.Array(at))
	if err != nil {
		return nil, err
	}
	// The group is stored now. Whatever fails from here on is the failure
	// of the sends it concerns, not the group's: a group error makes
	// sendMessages send each of them again, storing them a second time.
	out := committedResults(sends, rows, func(repeats []int, out []SendResult) error {
		return s.findRepeats(ctx, db, sends, repeats, out)
	})
	for i := range out {
		out[i].Message.utc()
	}
	return out, nil
}

// pgSendGroupSQL is the group's one statement, prepared on the send pool.
// A matter's row has no message: its NULLs read as zero values.
const pgSendGroupSQL = `SELECT members, COALESCE(id, 0) AS id, matter_id, COALESCE(sender_id, 0) AS sender_id,
	COALESCE(body, '') AS body, COALESCE(created_at, 'epoch') AS created_at, COALESCE(updated_at, 'epoch') AS updated_at,
	edited_at, client_message_id, COALESCE(sender_name, '') AS sender_name, before_id
	FROM parley_send_group($1, $2, $3, $4, $5, $6)`

// committedResults is the results of a group parley_send_group stored, from
// its rows; findRepeats looks up the sends that repeated a client message id
// (none inserted). A failure after the commit is answered to the sends it
// concerns, each of which the client may send again: the repeats, when
// their lookup fails (sent again, they are found as repeats); every send
// not refused, when the rows do not match the sends (which the insert's
// order rules out).
func committedResults(sends []Send, rows []sendGroupRow, findRepeats func(repeats []int, out []SendResult) error) []SendResult {
	out := make([]SendResult, len(sends))
	repeats, err := sendGroupResults(sends, rows, out)
	if err != nil {
		for i := range out {
			if out[i].Err == nil {
				out[i] = SendResult{Err: err}
			}
		}
		return out
	}
	if len(repeats) > 0 {
		if err := findRepeats(repeats, out); err != nil {
			for _, i := range repeats {
				out[i] = SendResult{Err: fmt.Errorf("send group: looking up a repeated client message id: %w", err)}
			}
		}
	}
	return out
}

// sendGroupRow is a row of parley_send_group: a matter (Members set) or an
// inserted message.
type sendGroupRow struct {
	Members pq.Int64Array `db:"members"`
	Message
	Before sql.NullInt64 `db:"before_id"`
}

// sendGroupResults fills out from parley_send_group's rows: each send is
// refused (see sendRefusal, on the members the insert saw), inserted (the
// inserted rows in id order are the inserted sends in order: identity values
// are drawn in insert order), or a repeat of an earlier client message id,
// whose index it returns for findRepeats.
func sendGroupResults(sends []Send, rows []sendGroupRow, out []SendResult) (repeats []int, err error) {
	members := map[int64][]int64{}
	var msgs []sendGroupRow
	for _, r := range rows {
		if r.Members != nil {
			members[r.MatterID] = []int64(r.Members)
		} else {
			msgs = append(msgs, r)
		}
	}
	slices.SortFunc(msgs, func(a, b sendGroupRow) int { return cmp.Compare(a.ID, b.ID) })
	last := map[int64]int64{} // matter → its newest message so far
	next := 0
	for i, x := range sends {
		ms, ok := members[x.MatterID]
		if err := sendRefusal(x, ms, ok); err != nil {
			out[i].Err = err
			continue
		}
		out[i].Members = ms
		if next < len(msgs) && msgs[next].MatterID == x.MatterID && msgs[next].SenderID == x.SenderID &&
			ptrEq(msgs[next].ClientMessageID, nullable(x.ClientMessageID)) {
			m := msgs[next]
			out[i].Message = m.Message
			out[i].PreviousID = m.Before.Int64
			if p, ok := last[m.MatterID]; ok {
				out[i].PreviousID = p
			}
			last[m.MatterID] = m.ID
			next++
			continue
		}
		if x.ClientMessageID == "" {
			return nil, fmt.Errorf("send group: inserted rows do not match the sends (send %d)", i)
		}
		repeats = append(repeats, i)
	}
	if next != len(msgs) {
		return nil, fmt.Errorf("send group: %d rows inserted, %d matched", len(msgs), next)
	}
	return repeats, nil
}

// findRepeats looks up, in one statement, the messages first sent with the
// client message ids of the repeats, and fills out for them.
func (s *pgStore) findRepeats(ctx context.Context, db *sqlx.DB, sends []Send, repeats []int, out []SendResult) error {
	senders := make([]int64, len(repeats))
	keys := make([]string, len(repeats))
	for j, i := range repeats {
		senders[j], keys[j] = sends[i].SenderID, sends[i].ClientMessageID
	}
	var firsts []Message
	err := db.SelectContext(ctx, &firsts, messageSelect+`
		WHERE (m.sender_id, m.client_message_id) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))`,
		pq.Array(senders), pq.Array(keys))
	if err != nil {
		return err
	}
	for _, i := range repeats {
		x := sends[i]
		k := slices.IndexFunc(firsts, func(m Message) bool {
			return m.SenderID == x.SenderID && m.ClientMessageID != nil && *m.ClientMessageID == x.ClientMessageID
		})
		if k < 0 {
			return fmt.Errorf("send group: client message id %q of user %d conflicts but is not found", x.ClientMessageID, x.SenderID)
		}
		r, err := repeatResult(x, firsts[k], out[i].Members, func(matterID, id int64) (prev int64, err error) {
			err = db.GetContext(ctx, &prev, s.rebind(previousIDQuery), matterID, id)
			return prev, err
		})
		if err != nil {
			return err
		}
		out[i] = r
	}
	return nil
}

func ptrEq(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
