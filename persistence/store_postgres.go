package persistence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

var _ Store = (*pgStore)(nil)

// pgStore is the PostgreSQL store. Writes that must return joined data use
// one statement with a data-modifying CTE, so each is atomic in a single
// round trip without an explicit transaction.
type pgStore struct {
	db         *sqlx.DB
	migrations []migration
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
	// 20 per node leaves room under the default max_connections (100) for a
	// few nodes plus admin sessions.
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20)
	db.SetConnMaxIdleTime(5 * time.Minute)
	// Fail at startup on a bad URL or a down server rather than on the
	// first request.
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("persistence: open postgres: %w", err)
	}
	return &pgStore{db: db, migrations: migs}, nil
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

func (s *pgStore) Dialect() string { return "postgres" }

func (s *pgStore) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("persistence: ping: %w", err)
	}
	return nil
}

func (s *pgStore) Close() error { return s.db.Close() }

func pgIs(err error, code pqerror.Code) bool { return pq.As(err, code) != nil }

// Migrate applies each pending file in its own transaction that first takes
// a transaction-scoped advisory lock, so nodes migrating at once serialise
// and the loser sees the winner's version row. The lock key includes the
// schema so separate schemas (e.g. test runs) do not wait on each other.
func (s *pgStore) Migrate(ctx context.Context) error {
	for _, m := range s.migrations {
		if err := s.migrateOne(ctx, m); err != nil {
			return fmt.Errorf("persistence: migrate %s: %w", m.name, err)
		}
	}
	return nil
}

func (s *pgStore) migrateOne(ctx context.Context, m migration) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx,
		`SELECT pg_advisory_xact_lock(hashtext('parley.migrate'), hashtext(coalesce(current_schema(), '')))`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at TIMESTAMPTZ NOT NULL
	)`); err != nil {
		return err
	}
	var applied bool
	if err := tx.GetContext(ctx, &applied,
		`SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version); err != nil {
		return err
	}
	if applied {
		return tx.Commit()
	}
	// Without arguments lib/pq uses the simple query protocol, which runs a
	// multi-statement file.
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, m.version, dbTime(time.Now())); err != nil {
		return err
	}
	return tx.Commit()
}

const pgUserCols = `id, name, email, password_hash, created_at, external_id, deleted_at`

func (s *pgStore) CreateUser(ctx context.Context, name, email, passwordHash string) (User, error) {
	var u User
	email = normalizeEmail(email)
	err := s.db.GetContext(ctx, &u, `INSERT INTO users (name, email, password_hash, created_at)
		VALUES ($1, $2, $3, $4) RETURNING `+pgUserCols, name, email, passwordHash, dbTime(time.Now()))
	if pgIs(err, pqerror.UniqueViolation) {
		return User{}, fmt.Errorf("persistence: user %q: %w", email, ErrConflict)
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: create user: %w", err)
	}
	u.utc()
	return u, nil
}

func (s *pgStore) UserByID(ctx context.Context, id int64) (User, error) {
	var u User
	err := s.db.GetContext(ctx, &u, `SELECT `+pgUserCols+` FROM users WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("persistence: user %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: user by id: %w", err)
	}
	u.utc()
	return u, nil
}

func (s *pgStore) UserByEmail(ctx context.Context, email string) (User, error) {
	var u User
	email = normalizeEmail(email)
	// lower() on both sides matches the unique index users_email_lower_key.
	err := s.db.GetContext(ctx, &u, `SELECT `+pgUserCols+` FROM users WHERE lower(email) = lower($1)`, email)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("persistence: user %q: %w", email, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: user by email: %w", err)
	}
	u.utc()
	return u, nil
}

const pgTokenCols = `id, user_id, secret_hash, expires_at, last_used_at, created_at`

func (s *pgStore) CreateToken(ctx context.Context, userID int64, secretHash string, expiresAt *time.Time) (Token, error) {
	var t Token
	err := s.db.GetContext(ctx, &t, `INSERT INTO tokens (user_id, secret_hash, expires_at, created_at)
		VALUES ($1, $2, $3, $4) RETURNING `+pgTokenCols, userID, secretHash, dbTimePtr(expiresAt), dbTime(time.Now()))
	if pgIs(err, pqerror.ForeignKeyViolation) {
		return Token{}, fmt.Errorf("persistence: token for user %d: user: %w", userID, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("persistence: create token: %w", err)
	}
	t.utc()
	return t, nil
}

func (s *pgStore) TokenByID(ctx context.Context, id int64) (Token, error) {
	var t Token
	err := s.db.GetContext(ctx, &t, `SELECT `+pgTokenCols+` FROM tokens WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("persistence: token %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("persistence: token by id: %w", err)
	}
	t.utc()
	return t, nil
}

func (s *pgStore) TouchToken(ctx context.Context, id int64, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET last_used_at = $1 WHERE id = $2`, dbTime(at), id)
	return affectedOne(res, err, "touch token", "token", id)
}

func (s *pgStore) DeleteToken(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM tokens WHERE id = $1`, id)
	return affectedOne(res, err, "delete token", "token", id)
}

func (s *pgStore) CreateMatter(ctx context.Context, title string) (Matter, error) {
	var m Matter
	err := s.db.GetContext(ctx, &m,
		`INSERT INTO matters (title, created_at) VALUES ($1, $2) RETURNING id, title, created_at`,
		title, dbTime(time.Now()))
	if err != nil {
		return Matter{}, fmt.Errorf("persistence: create matter: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *pgStore) MatterByID(ctx context.Context, id int64) (Matter, error) {
	var m Matter
	err := s.db.GetContext(ctx, &m, `SELECT id, title, created_at FROM matters WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Matter{}, fmt.Errorf("persistence: matter %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Matter{}, fmt.Errorf("persistence: matter by id: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *pgStore) AddMember(ctx context.Context, matterID, userID int64) error {
	// DO NOTHING covers only the primary key; a missing matter or user still
	// fails the foreign key.
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO members (matter_id, user_id, joined_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		matterID, userID, dbTime(time.Now()))
	if pgIs(err, pqerror.ForeignKeyViolation) {
		return fmt.Errorf("persistence: add user %d to matter %d: matter or user: %w", userID, matterID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("persistence: add member: %w", err)
	}
	return nil
}

func (s *pgStore) IsMember(ctx context.Context, matterID, userID int64) (bool, error) {
	var ok bool
	err := s.db.GetContext(ctx, &ok,
		`SELECT EXISTS (SELECT 1 FROM members WHERE matter_id = $1 AND user_id = $2)`, matterID, userID)
	if err != nil {
		return false, fmt.Errorf("persistence: is member: %w", err)
	}
	return ok, nil
}

func (s *pgStore) MemberIDs(ctx context.Context, matterID int64) ([]int64, error) {
	ids := []int64{}
	err := s.db.SelectContext(ctx, &ids,
		`SELECT user_id FROM members WHERE matter_id = $1 ORDER BY user_id`, matterID)
	if err != nil {
		return nil, fmt.Errorf("persistence: member ids: %w", err)
	}
	return ids, nil
}

func (s *pgStore) MattersForUser(ctx context.Context, userID int64) ([]Matter, error) {
	ms := []Matter{}
	err := s.db.SelectContext(ctx, &ms, `SELECT m.id, m.title, m.created_at
		FROM members mm JOIN matters m ON m.id = mm.matter_id
		WHERE mm.user_id = $1 ORDER BY m.id`, userID)
	if err != nil {
		return nil, fmt.Errorf("persistence: matters for user: %w", err)
	}
	for i := range ms {
		ms[i].utc()
	}
	return ms, nil
}

const (
	pgMessageCols   = `id, matter_id, sender_id, body, created_at, updated_at, edited_at, client_message_id`
	pgMessageSelect = `SELECT m.id, m.matter_id, m.sender_id, u.name AS sender_name,
	m.body, m.created_at, m.updated_at, m.edited_at,
	m.deleted_at, m.client_message_id
	FROM messages m JOIN users u ON u.id = m.sender_id`
)

func (s *pgStore) CreateMessage(ctx context.Context, matterID, senderID int64, body string, at time.Time) (Message, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return Message{}, fmt.Errorf("persistence: create message: %w", err)
	}
	defer tx.Rollback()
	// Lock the matter so its messages take ids and commit one at a time: an
	// after_id catch-up can then never skip a message that commits late, and
	// the unread counters and read_up_to rely on ids committing in order.
	// NO KEY UPDATE still serialises sends but, unlike UPDATE, does not block
	// the foreign-key checks of other tables' inserts (members, reads).
	var locked int64
	err = tx.GetContext(ctx, &locked, `SELECT id FROM matters WHERE id = $1 FOR NO KEY UPDATE`, matterID)
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, fmt.Errorf("persistence: message in matter %d: matter: %w", matterID, ErrNotFound)
	}
	if err != nil {
		return Message{}, fmt.Errorf("persistence: create message: %w", err)
	}
	var m Message
	err = tx.GetContext(ctx, &m, `WITH m AS (
			INSERT INTO messages (matter_id, sender_id, body, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $4) RETURNING `+pgMessageCols+`)
		SELECT m.*, u.name AS sender_name FROM m JOIN users u ON u.id = m.sender_id`,
		matterID, senderID, body, dbTime(at))
	if pgIs(err, pqerror.ForeignKeyViolation) {
		return Message{}, fmt.Errorf("persistence: message in matter %d from user %d: matter or sender: %w", matterID, senderID, ErrNotFound)
	}
	if err != nil {
		return Message{}, fmt.Errorf("persistence: create message: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Message{}, fmt.Errorf("persistence: create message: commit: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *pgStore) SendMessages(ctx context.Context, sends []Send) []SendResult {
	return sendMessages(ctx, sends, s.sendGroup, func(err error, snd Send) error {
		if pgIs(err, pqerror.ForeignKeyViolation) {
			return fmt.Errorf("persistence: message in matter %d from user %d: matter or sender: %w", snd.MatterID, snd.SenderID, ErrNotFound)
		}
		return fmt.Errorf("persistence: send message: %w", err)
	})
}

// sendGroup stores a group in one transaction of at most four statements
// whatever its size: lock the matters and read their members, insert every
// allowed message, look up the repeats, commit.
func (s *pgStore) sendGroup(ctx context.Context, sends []Send) ([]SendResult, error) {
	out := make([]SendResult, len(sends))
	matterIDs := make([]int64, 0, len(sends))
	for _, snd := range sends {
		matterIDs = append(matterIDs, snd.MatterID)
	}
	slices.Sort(matterIDs)
	matterIDs = slices.Compact(matterIDs)

	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	// Lock the matters (in id order, so groups on several nodes cannot
	// deadlock) so that their messages take ids and commit one group at a
	// time: an after_id catch-up can then never skip a message that commits
	// late, and the unread counters and read_up_to rely on ids committing in
	// order. NO KEY UPDATE does not block the foreign-key checks of other
	// tables' inserts (members, reads). The members come in the same
	// statement, under the same lock.
	rows, err := tx.QueryContext(ctx, `SELECT m.id,
			ARRAY(SELECT mm.user_id FROM members mm WHERE mm.matter_id = m.id ORDER BY mm.user_id)
		FROM matters m WHERE m.id = ANY($1) ORDER BY m.id FOR NO KEY UPDATE OF m`, pq.Array(matterIDs))
	if err != nil {
		return nil, err
	}
	members := make(map[int64][]int64, len(matterIDs))
	for rows.Next() {
		var id int64
		var ms pq.Int64Array
		if err := rows.Scan(&id, &ms); err != nil {
			rows.Close()
			return nil, err
		}
		members[id] = []int64(ms)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()

	var insert []int // indexes into sends, in order
	var mat, snd []int64
	var body, at []string
	var cid []sql.NullString
	for i, x := range sends {
		ms, ok := members[x.MatterID]
		if err := sendRefusal(x, ms, ok); err != nil {
			out[i].Err = err
			continue
		}
		out[i].Members = ms
		insert = append(insert, i)
		mat, snd, body = append(mat, x.MatterID), append(snd, x.SenderID), append(body, x.Body)
		at = append(at, dbTime(x.At).Format(time.RFC3339Nano))
		cid = append(cid, sql.NullString{String: x.ClientMessageID, Valid: x.ClientMessageID != ""})
	}
	if len(insert) > 0 {
		// Identity values are drawn in the order the rows are inserted, so
		// the inserted rows in id order are the inserted sends in order; a
		// send skipped by ON CONFLICT (a repeated client_message_id) has no
		// row and is looked up below.
		// prev is each matter's newest message before this group: a CTE
		// does not see the rows its statement inserts, and this statement
		// started after the matters were locked, so it sees every message
		// committed before.
		var msgs []struct {
			Message
			Before int64 `db:"before_id"`
		}
		err := tx.SelectContext(ctx, &msgs, `WITH prev AS (
				SELECT t.matter_id, (SELECT max(m.id) FROM messages m WHERE m.matter_id = t.matter_id) AS id
				FROM unnest($6::bigint[]) AS t (matter_id)),
			ins AS (
				INSERT INTO messages (matter_id, sender_id, body, client_message_id, created_at, updated_at)
				SELECT t.matter_id, t.sender_id, t.body, t.cid, t.at, t.at
				FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])
					WITH ORDINALITY AS t (matter_id, sender_id, body, cid, at, ord)
				ORDER BY t.ord
				ON CONFLICT DO NOTHING
				RETURNING `+pgMessageCols+`)
			SELECT ins.*, u.name AS sender_name, COALESCE(prev.id, 0) AS before_id
			FROM ins JOIN users u ON u.id = ins.sender_id JOIN prev ON prev.matter_id = ins.matter_id ORDER BY ins.id`,
			pq.Array(mat), pq.Array(snd), pq.Array(body), pq.Array(cid), pq.Array(at), pq.Array(matterIDs))
		if err != nil {
			return nil, err
		}
		last := map[int64]int64{} // matter → its newest message so far
		var repeats []int
		next := 0
		for _, i := range insert {
			x := sends[i]
			if next < len(msgs) && msgs[next].MatterID == x.MatterID && msgs[next].SenderID == x.SenderID &&
				ptrEq(msgs[next].ClientMessageID, nullable(x.ClientMessageID)) {
				m := msgs[next]
				out[i].Message = m.Message
				out[i].PreviousID = m.Before
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
		if len(repeats) > 0 {
			senders := make([]int64, len(repeats))
			keys := make([]string, len(repeats))
			for j, i := range repeats {
				senders[j], keys[j] = sends[i].SenderID, sends[i].ClientMessageID
			}
			var firsts []Message
			err := tx.SelectContext(ctx, &firsts, pgMessageSelect+`
				WHERE (m.sender_id, m.client_message_id) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))`,
				pq.Array(senders), pq.Array(keys))
			if err != nil {
				return nil, err
			}
			for _, i := range repeats {
				x := sends[i]
				k := slices.IndexFunc(firsts, func(m Message) bool {
					return m.SenderID == x.SenderID && m.ClientMessageID != nil && *m.ClientMessageID == x.ClientMessageID
				})
				if k < 0 {
					return nil, fmt.Errorf("send group: client message id %q of user %d conflicts but is not found", x.ClientMessageID, x.SenderID)
				}
				r, err := repeatResult(x, firsts[k], out[i].Members, func(matterID, id int64) (prev int64, err error) {
					err = tx.GetContext(ctx, &prev, sqlx.Rebind(sqlx.DOLLAR, previousIDQuery), matterID, id)
					return prev, err
				})
				if err != nil {
					return nil, err
				}
				out[i] = r
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Message.utc()
	}
	return out, nil
}

func ptrEq(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func (s *pgStore) MessageByID(ctx context.Context, id int64) (Message, error) {
	var m Message
	err := s.db.GetContext(ctx, &m, pgMessageSelect+` WHERE m.id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, fmt.Errorf("persistence: message %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Message{}, fmt.Errorf("persistence: message by id: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *pgStore) UpdateMessage(ctx context.Context, id int64, body string, at time.Time) (Message, error) {
	var m Message
	// A deletion holds the row until it commits; the recheck after the wait
	// sees deleted_at and updates nothing.
	err := s.db.GetContext(ctx, &m, `WITH m AS (
			UPDATE messages SET body = $2, updated_at = $3, edited_at = $3 WHERE id = $1 AND deleted_at IS NULL
			RETURNING `+pgMessageCols+`)
		SELECT m.*, u.name AS sender_name FROM m JOIN users u ON u.id = m.sender_id`,
		id, body, dbTime(at))
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, s.missingOrDeleted(ctx, id)
	}
	if err != nil {
		return Message{}, fmt.Errorf("persistence: update message: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *pgStore) ListMessages(ctx context.Context, q MessageQuery) ([]Message, int, error) {
	ph := func(n int) string { return "$" + strconv.Itoa(n) }
	where, args, order, offset, err := messageWindow(q, ph)
	if err != nil {
		return nil, 0, err
	}
	// Two statements, not one snapshot: a message arriving in between only
	// skews total by one, which the next request corrects.
	// The matter's message_count (migration 0006) makes the total of the
	// whole history, and of what precedes before_id, cost what follows
	// rather than the matter's size; after_id counts what follows it.
	countSQL := `SELECT COUNT(*) FROM messages m WHERE m.matter_id = $1` + where
	switch {
	case q.AfterID <= 0 && q.BeforeID <= 0:
		countSQL = `SELECT COALESCE((SELECT message_count FROM matters WHERE id = $1), 0)`
	case q.AfterID <= 0:
		countSQL = `SELECT COALESCE((SELECT message_count FROM matters WHERE id = $1), 0) -
			(SELECT COUNT(*) FROM messages m WHERE m.matter_id = $1 AND m.id >= $2)`
	}
	var total int
	if err := s.db.GetContext(ctx, &total, countSQL, args...); err != nil {
		return nil, 0, fmt.Errorf("persistence: count messages: %w", err)
	}
	msgs := []Message{}
	if offset < total {
		n := len(args)
		err = s.db.SelectContext(ctx, &msgs,
			pgMessageSelect+` WHERE m.matter_id = $1`+where+` ORDER BY m.id `+order+
				` LIMIT `+ph(n+1)+` OFFSET `+ph(n+2),
			append(args, q.Limit, offset)...)
		if err != nil {
			return nil, 0, fmt.Errorf("persistence: list messages: %w", err)
		}
	}
	for i := range msgs {
		msgs[i].utc()
	}
	return msgs, total, nil
}

func (s *pgStore) MarkRead(ctx context.Context, messageID, readerID int64, at time.Time) (ReadReceipt, bool, error) {
	// One statement: the receipt, then (only if it is new) the member's
	// read_seq under its row lock. Every read takes a receipt row before the
	// member row, so reads never deadlock each other. DO NOTHING waits for a
	// concurrent insert of the same row to commit, so the separate SELECT
	// below (a fresh snapshot) always sees the winner.
	// A deleted message takes no receipt: its deletion already took it out
	// of every unread count (and gave members who had not read it a
	// receipt, which a read racing the deletion finds here).
	var n, seq int64
	var gone bool
	err := s.db.QueryRowxContext(ctx, `WITH msg AS (
			SELECT deleted_at IS NOT NULL AS gone FROM messages WHERE id = $1),
		ins AS (
			INSERT INTO message_reads (message_id, user_id, read_at)
			SELECT $1, $2, $3::timestamptz FROM msg WHERE NOT msg.gone
			ON CONFLICT DO NOTHING RETURNING message_id),
		up AS (
			UPDATE members mm SET read_seq = mm.read_seq + 1
			FROM messages m
			WHERE m.id = $1 AND mm.matter_id = m.matter_id AND mm.user_id = $2 AND EXISTS (SELECT 1 FROM ins)
			RETURNING mm.read_seq)
		SELECT COALESCE((SELECT gone FROM msg), false), (SELECT COUNT(*) FROM ins), COALESCE((SELECT read_seq FROM up), 0)`,
		messageID, readerID, dbTime(at)).Scan(&gone, &n, &seq)
	if pgIs(err, pqerror.ForeignKeyViolation) {
		return ReadReceipt{}, false, fmt.Errorf("persistence: read of message %d by user %d: message or reader: %w", messageID, readerID, ErrNotFound)
	}
	if err != nil {
		return ReadReceipt{}, false, fmt.Errorf("persistence: mark read: %w", err)
	}
	if gone {
		return ReadReceipt{}, false, fmt.Errorf("persistence: read of message %d: %w", messageID, ErrDeleted)
	}
	var r ReadReceipt
	err = s.db.GetContext(ctx, &r, `SELECT r.message_id, m.matter_id, m.sender_id, r.user_id AS reader_id, r.read_at
		FROM message_reads r JOIN messages m ON m.id = r.message_id
		WHERE r.message_id = $1 AND r.user_id = $2`, messageID, readerID)
	if errors.Is(err, sql.ErrNoRows) {
		// Only possible if the message was deleted in between.
		return ReadReceipt{}, false, fmt.Errorf("persistence: message %d: %w", messageID, ErrNotFound)
	}
	if err != nil {
		return ReadReceipt{}, false, fmt.Errorf("persistence: mark read: %w", err)
	}
	r.utc()
	if n == 1 {
		r.ReadSeq = seq
	}
	return r, n == 1, nil
}

func (s *pgStore) MarkReadUpTo(ctx context.Context, matterID, readerID, upToID int64, at time.Time) (ReadUpTo, error) {
	out := ReadUpTo{MatterID: matterID, ReaderID: readerID, UpToID: upToID, ReadAt: dbTime(at)}
	// One statement, one snapshot. The insert ranges over the messages after
	// the member's read_up_to only, so its cost is what is being read, not
	// the matter's history. top is the highest message of the matter at or
	// below upToID in this snapshot; messages of a matter commit in id order
	// (CreateMessage locks the matter), so no message below top can still
	// appear, and read_up_to may move to it.
	var member bool
	var senders pq.Int64Array
	err := s.db.QueryRowxContext(ctx, `WITH lim AS (
			SELECT mm.read_up_to AS old,
				COALESCE((SELECT m.id FROM messages m WHERE m.matter_id = $1 AND m.id <= $3 ORDER BY m.id DESC LIMIT 1), 0) AS top
			FROM members mm WHERE mm.matter_id = $1 AND mm.user_id = $2),
		ins AS (
			INSERT INTO message_reads (message_id, user_id, read_at)
			SELECT m.id, $2, $4 FROM messages m, lim
			WHERE m.matter_id = $1 AND m.id > lim.old AND m.id <= $3 AND m.sender_id <> $2 AND m.deleted_at IS NULL
			ORDER BY m.id
			ON CONFLICT DO NOTHING RETURNING message_id),
		marked AS (
			SELECT COUNT(*) AS n, COALESCE(MAX(ins.message_id), 0) AS last,
				COALESCE(array_agg(DISTINCT m.sender_id) FILTER (WHERE m.sender_id IS NOT NULL), '{}') AS senders
			FROM ins JOIN messages m ON m.id = ins.message_id),
		up AS (
			UPDATE members mm SET read_up_to = GREATEST(mm.read_up_to, lim.top),
				read_seq = mm.read_seq + CASE WHEN (SELECT n FROM marked) > 0 THEN 1 ELSE 0 END
			FROM lim WHERE mm.matter_id = $1 AND mm.user_id = $2
			RETURNING mm.read_seq)
		SELECT EXISTS (SELECT 1 FROM lim), marked.n, marked.last, marked.senders, COALESCE((SELECT read_seq FROM up), 0)
		FROM marked`,
		matterID, readerID, upToID, out.ReadAt).Scan(&member, &out.Marked, &out.LastMarkedID, &senders, &out.ReadSeq)
	if err != nil {
		return ReadUpTo{}, fmt.Errorf("persistence: mark read up to: %w", err)
	}
	if !member {
		return ReadUpTo{}, fmt.Errorf("persistence: user %d in matter %d: member: %w", readerID, matterID, ErrNotFound)
	}
	out.SenderIDs = []int64(senders)
	slices.Sort(out.SenderIDs)
	return out, nil
}

func (s *pgStore) UnreadCounts(ctx context.Context, userID int64) (map[int64]int, error) {
	// The LEFT JOIN keeps matters with nothing unread as zero rows.
	rows, err := s.db.QueryContext(ctx, `SELECT mm.matter_id, COUNT(m.id)
		FROM members mm
		LEFT JOIN messages m ON m.matter_id = mm.matter_id AND m.sender_id <> $1 AND m.deleted_at IS NULL
			AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = $1)
		WHERE mm.user_id = $1
		GROUP BY mm.matter_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("persistence: unread counts: %w", err)
	}
	return scanCounts(rows)
}

func (s *pgStore) UnreadState(ctx context.Context, userID int64) (map[int64]MatterUnread, error) {
	// One statement, so counts, last ids and read versions share a snapshot.
	// The count starts after read_up_to: below it everything is read.
	rows, err := s.db.QueryContext(ctx, `SELECT mm.matter_id,
			(SELECT COUNT(*) FROM messages m
				WHERE m.matter_id = mm.matter_id AND m.id > mm.read_up_to AND m.sender_id <> $1 AND m.deleted_at IS NULL
				AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = $1)),
			COALESCE((SELECT m.id FROM messages m WHERE m.matter_id = mm.matter_id ORDER BY m.id DESC LIMIT 1), 0),
			mm.read_seq
		FROM members mm
		WHERE mm.user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("persistence: unread state: %w", err)
	}
	return scanState(rows)
}

// missingOrDeleted tells why a write that needs a live message found none:
// ErrDeleted if the message exists (deleted), else ErrNotFound.
func (s *pgStore) missingOrDeleted(ctx context.Context, id int64) error {
	var deleted bool
	err := s.db.GetContext(ctx, &deleted, `SELECT deleted_at IS NOT NULL FROM messages WHERE id = $1`, id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("persistence: message %d: %w", id, ErrNotFound)
	case err != nil:
		return fmt.Errorf("persistence: message %d: %w", id, err)
	case deleted:
		return fmt.Errorf("persistence: message %d: %w", id, ErrDeleted)
	}
	return fmt.Errorf("persistence: message %d: %w", id, ErrNotFound) // unreachable: deletion is final
}

func (s *pgStore) DeleteMessage(ctx context.Context, id int64, at time.Time) (Deletion, error) {
	at = dbTime(at)
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return Deletion{}, fmt.Errorf("persistence: delete message: %w", err)
	}
	defer tx.Rollback()
	// One statement: mark the message (a concurrent second deletion waits
	// for the row and then finds it deleted), give every member who has no
	// receipt one at the deletion time, and move those members' read_seq.
	// The receipt is what makes the unread arithmetic exact: a read racing
	// the deletion inserts the same row, so exactly one of them takes the
	// message out of the member's count.
	var out Deletion
	var users, seqs pq.Int64Array
	err = tx.QueryRowxContext(ctx, `WITH d AS (
			UPDATE messages SET body = '', deleted_at = $2, updated_at = $2
			WHERE id = $1 AND deleted_at IS NULL
			RETURNING id, matter_id, sender_id),
		ins AS (
			INSERT INTO message_reads (message_id, user_id, read_at)
			SELECT d.id, mm.user_id, $2 FROM d JOIN members mm ON mm.matter_id = d.matter_id AND mm.user_id <> d.sender_id
			ORDER BY mm.user_id
			ON CONFLICT DO NOTHING RETURNING user_id),
		up AS (
			UPDATE members mm SET read_seq = mm.read_seq + 1
			FROM d, ins WHERE mm.matter_id = d.matter_id AND mm.user_id = ins.user_id
			RETURNING mm.user_id, mm.read_seq)
		SELECT EXISTS (SELECT 1 FROM d),
			COALESCE(array_agg(user_id ORDER BY user_id), '{}'), COALESCE(array_agg(read_seq ORDER BY user_id), '{}')
		FROM up`, id, at).Scan(&out.Deleted, &users, &seqs)
	if err != nil {
		return Deletion{}, fmt.Errorf("persistence: delete message: %w", err)
	}
	err = tx.GetContext(ctx, &out.Message, pgMessageSelect+` WHERE m.id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Deletion{}, fmt.Errorf("persistence: message %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Deletion{}, fmt.Errorf("persistence: delete message: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Deletion{}, fmt.Errorf("persistence: delete message: commit: %w", err)
	}
	out.Message.utc()
	out.Unread = make([]ReadVersion, len(users))
	for i := range users {
		out.Unread[i] = ReadVersion{UserID: users[i], ReadSeq: seqs[i]}
	}
	return out, nil
}

func (s *pgStore) Readers(ctx context.Context, messageIDs []int64) (map[int64][]Reader, error) {
	if len(messageIDs) == 0 {
		return map[int64][]Reader{}, nil
	}
	var rows []readerRow
	err := s.db.SelectContext(ctx, &rows, `SELECT message_id, user_id, read_at FROM message_reads
		WHERE message_id = ANY($1) ORDER BY message_id, read_at, user_id`, pq.Int64Array(messageIDs))
	if err != nil {
		return nil, fmt.Errorf("persistence: readers: %w", err)
	}
	return readers(rows), nil
}

func (s *pgStore) MatterSummaries(ctx context.Context, userID int64) ([]MatterSummary, error) {
	// Repeatable read: both statements see one snapshot.
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("persistence: matter summaries: %w", err)
	}
	defer tx.Rollback()
	mattersSQL, membersSQL := summarySQL(func(n int) string { return "$" + strconv.Itoa(n) })
	var rows []summaryRow
	if err := tx.SelectContext(ctx, &rows, mattersSQL, userID); err != nil {
		return nil, fmt.Errorf("persistence: matter summaries: %w", err)
	}
	var members []memberRow
	if err := tx.SelectContext(ctx, &members, membersSQL, userID); err != nil {
		return nil, fmt.Errorf("persistence: matter summaries: members: %w", err)
	}
	return summaries(rows, members), nil
}
