package persistence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
)

// sqlStore is the one implementation of every operation whose SQL and logic
// are the same on both databases. Its statements are written once, with "?"
// placeholders that rebind turns into PostgreSQL's $n; a value repeated in a
// statement is passed once per placeholder. pgStore and sqliteStore embed it
// and add what truly differs: opening the database and the group-commit
// send. The read-state writes (readstate.go) are shared too: they lock rows
// with s.lock, which the embedded database's one writer makes unnecessary.
// Statements only one database runs keep its own placeholders.
type sqlStore struct {
	w *sqlx.DB // writes; on SQLite the one writer connection
	r *sqlx.DB // reads; on PostgreSQL the same pool as w
	d dialect

	migrations []migration
	stmts      statements // the send path's, prepared on w (prepared.go)
}

// dialect is what the shared statements need to know of the database.
type dialect struct {
	name string
	// embedded: the database runs in-process with a single writer (SQLite).
	// Statements cost no round trip, so a read transaction is free, and
	// writes are serialised without row locks (which SQLite lacks).
	embedded bool
	// isUnique and isForeignKey recognise the driver's constraint errors.
	isUnique, isForeignKey func(error) bool
	// emailIs compares users.email with a normalised address. PostgreSQL
	// applies lower() to both sides so that its unique index
	// users_email_lower_key serves the lookup.
	emailIs string
	// snapshot opens a read-only transaction whose statements all see one
	// snapshot.
	snapshot sql.TxOptions
	// inIDs renders "col is one of ids" with its arguments.
	inIDs func(col string, ids []int64) (cond string, args []any)
	// countMessages is ListMessages' count: where and args are the
	// messageWindow of q.
	countMessages func(q MessageQuery, where string, args []any) (query string, countArgs []any)
	// unreadState is UnreadState's statement; its three placeholders all
	// take the user id.
	unreadState string
	// moveWatermark writes a move of a reader's watermark that marked
	// something (the watermark, the range, the read version) and returns
	// the member's new read version.
	moveWatermark func(ctx context.Context, tx *sqlx.Tx, mv watermarkMove) (readSeq int64, err error)
	// migrationLock, if set, runs first in each migration's transaction;
	// timestamp is the type of schema_migrations.applied_at.
	migrationLock, timestamp string
}

// rebind turns the "?" placeholders of a shared statement into the
// database's.
func (s *sqlStore) rebind(query string) string { return s.w.Rebind(query) }

// lock is clause (" FOR UPDATE", ...) where rows can be locked, "" on the
// embedded database, whose one writer already serialises writes.
func (s *sqlStore) lock(clause string) string {
	if s.d.embedded {
		return ""
	}
	return clause
}

// writeTx runs fn in a transaction on the writer (on SQLite BEGIN IMMEDIATE:
// see sqliteDSN) and commits it if fn returns nil.
func (s *sqlStore) writeTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *sqlStore) Dialect() string { return s.d.name }

func (s *sqlStore) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("persistence: ping: %w", err)
	}
	if s.r != s.w {
		if err := s.r.PingContext(ctx); err != nil {
			return fmt.Errorf("persistence: ping: %w", err)
		}
	}
	return nil
}

func (s *sqlStore) Close() error {
	err := s.stmts.close()
	if s.r == s.w {
		return errors.Join(err, s.w.Close())
	}
	return errors.Join(err, s.r.Close(), s.w.Close())
}

const (
	userCols   = `id, name, email, password_hash, created_at, external_id, deleted_at`
	tokenCols  = `id, user_id, secret_hash, expires_at, last_used_at, created_at`
	matterCols = `id, title, created_at`
	// messageSelect selects messages (m) with their sender's name.
	messageSelect = `SELECT m.id, m.matter_id, m.sender_id, u.name AS sender_name,
	m.body, m.created_at, m.updated_at, m.edited_at,
	m.deleted_at, m.client_message_id
	FROM messages m JOIN users u ON u.id = m.sender_id`
	// messageReturning ends a statement that writes one message: the row as
	// written, with its sender's name.
	messageReturning = ` RETURNING id, matter_id, sender_id, body, created_at, updated_at, edited_at, deleted_at,
	client_message_id, (SELECT u.name FROM users u WHERE u.id = messages.sender_id) AS sender_name`
)

func (s *sqlStore) CreateUser(ctx context.Context, name, email, passwordHash string) (User, error) {
	return s.CreateUserWith(ctx, NewUser{Name: name, Email: email, PasswordHash: passwordHash})
}

func (s *sqlStore) UserByID(ctx context.Context, id int64) (User, error) {
	return getOne[User](ctx, s.r, "user", id, "user by id", s.rebind(`SELECT `+userCols+` FROM users WHERE id = ?`), id)
}

func (s *sqlStore) UserByEmail(ctx context.Context, email string) (User, error) {
	email = normalizeEmail(email)
	return getOne[User](ctx, s.r, "user", strconv.Quote(email), "user by email",
		s.rebind(`SELECT `+userCols+` FROM users WHERE `+s.d.emailIs), email)
}

// getOne reads the one row of query into a T, made UTC. No row is
// ErrNotFound naming the row (what and key); op names the operation in
// other errors.
func getOne[T any, PT interface {
	*T
	utc()
}](ctx context.Context, db sqlx.QueryerContext, what string, key any, op, query string, args ...any) (T, error) {
	var v, zero T
	err := sqlx.GetContext(ctx, db, &v, query, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return zero, fmt.Errorf("persistence: %s %v: %w", what, key, ErrNotFound)
	}
	if err != nil {
		return zero, fmt.Errorf("persistence: %s: %w", op, err)
	}
	PT(&v).utc()
	return v, nil
}

func (s *sqlStore) CreateToken(ctx context.Context, userID int64, secretHash string, expiresAt *time.Time) (Token, error) {
	var t Token
	err := s.w.GetContext(ctx, &t, s.rebind(`INSERT INTO tokens (user_id, secret_hash, expires_at, created_at)
		VALUES (?, ?, ?, ?) RETURNING `+tokenCols), userID, secretHash, dbTimePtr(expiresAt), dbTime(time.Now()))
	if s.d.isForeignKey(err) {
		return Token{}, fmt.Errorf("persistence: token for user %d: user: %w", userID, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("persistence: create token: %w", err)
	}
	t.utc()
	return t, nil
}

func (s *sqlStore) TokenByID(ctx context.Context, id int64) (Token, error) {
	return getOne[Token](ctx, s.r, "token", id, "token by id", s.rebind(`SELECT `+tokenCols+` FROM tokens WHERE id = ?`), id)
}

func (s *sqlStore) TouchToken(ctx context.Context, id int64, at time.Time) error {
	res, err := s.w.ExecContext(ctx, s.rebind(`UPDATE tokens SET last_used_at = ? WHERE id = ?`), dbTime(at), id)
	return affectedOne(res, err, "touch token", "token", id)
}

func (s *sqlStore) DeleteToken(ctx context.Context, id int64) error {
	res, err := s.w.ExecContext(ctx, s.rebind(`DELETE FROM tokens WHERE id = ?`), id)
	return affectedOne(res, err, "delete token", "token", id)
}

func (s *sqlStore) CreateMatter(ctx context.Context, title string) (Matter, error) {
	var m Matter
	err := s.w.GetContext(ctx, &m, s.rebind(`INSERT INTO matters (title, created_at) VALUES (?, ?) RETURNING `+matterCols),
		title, dbTime(time.Now()))
	if err != nil {
		return Matter{}, fmt.Errorf("persistence: create matter: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *sqlStore) MatterByID(ctx context.Context, id int64) (Matter, error) {
	return getOne[Matter](ctx, s.r, "matter", id, "matter by id", s.rebind(`SELECT `+matterCols+` FROM matters WHERE id = ?`), id)
}

func (s *sqlStore) AddMember(ctx context.Context, matterID, userID int64) error {
	// DO NOTHING covers only the primary key; a missing matter or user still
	// fails the foreign key.
	_, err := s.w.ExecContext(ctx,
		s.rebind(`INSERT INTO members (matter_id, user_id, joined_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`),
		matterID, userID, dbTime(time.Now()))
	if s.d.isForeignKey(err) {
		return fmt.Errorf("persistence: add user %d to matter %d: matter or user: %w", userID, matterID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("persistence: add member: %w", err)
	}
	return nil
}

func (s *sqlStore) IsMember(ctx context.Context, matterID, userID int64) (bool, error) {
	var ok bool
	err := s.r.GetContext(ctx, &ok,
		s.rebind(`SELECT EXISTS (SELECT 1 FROM members WHERE matter_id = ? AND user_id = ?)`), matterID, userID)
	if err != nil {
		return false, fmt.Errorf("persistence: is member: %w", err)
	}
	return ok, nil
}

func (s *sqlStore) MemberIDs(ctx context.Context, matterID int64) ([]int64, error) {
	ids := []int64{}
	err := s.r.SelectContext(ctx, &ids, s.rebind(`SELECT user_id FROM members WHERE matter_id = ? ORDER BY user_id`), matterID)
	if err != nil {
		return nil, fmt.Errorf("persistence: member ids: %w", err)
	}
	return ids, nil
}

func (s *sqlStore) MattersForUser(ctx context.Context, userID int64) ([]Matter, error) {
	ms, err := s.matters(ctx, MatterQuery{UserID: userID})
	if err != nil {
		return nil, fmt.Errorf("persistence: matters for user: %w", err)
	}
	return ms, nil
}

// matters selects matters by ascending id: the user's (UserID > 0) or all,
// above AfterID, at most Limit (0: no limit).
func (s *sqlStore) matters(ctx context.Context, q MatterQuery) ([]Matter, error) {
	query := `SELECT m.id, m.title, m.created_at FROM matters m WHERE TRUE`
	var args []any
	if q.UserID > 0 {
		query = `SELECT m.id, m.title, m.created_at
			FROM members mm JOIN matters m ON m.id = mm.matter_id
			WHERE mm.user_id = ?`
		args = append(args, q.UserID)
	}
	if q.AfterID > 0 {
		query, args = query+` AND m.id > ?`, append(args, q.AfterID)
	}
	query += ` ORDER BY m.id`
	if q.Limit > 0 {
		query, args = query+` LIMIT ?`, append(args, q.Limit)
	}
	ms := []Matter{}
	if err := s.r.SelectContext(ctx, &ms, s.rebind(query), args...); err != nil {
		return nil, err
	}
	for i := range ms {
		ms[i].utc()
	}
	return ms, nil
}

func (s *sqlStore) CreateMessage(ctx context.Context, matterID, senderID int64, body string, at time.Time) (Message, error) {
	at = dbTime(at)
	var m Message
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		// Lock the matter so its messages take ids and commit one at a time:
		// an after_id catch-up can then never skip a message that commits
		// late, and the unread counters and read_up_to rely on ids committing
		// in order. NO KEY UPDATE still serialises sends but, unlike UPDATE,
		// does not block the foreign-key checks of other tables' inserts
		// (members, reads). SQLite's one writer does the same without locks.
		var locked int64
		err := tx.GetContext(ctx, &locked, s.rebind(`SELECT id FROM matters WHERE id = ?`+s.lock(` FOR NO KEY UPDATE`)), matterID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("persistence: message in matter %d: matter: %w", matterID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		return tx.GetContext(ctx, &m, s.rebind(`INSERT INTO messages (matter_id, sender_id, body, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?)`+messageReturning), matterID, senderID, body, at, at)
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return Message{}, err
	case s.d.isForeignKey(err):
		return Message{}, fmt.Errorf("persistence: message in matter %d from user %d: matter or sender: %w", matterID, senderID, ErrNotFound)
	case err != nil:
		return Message{}, fmt.Errorf("persistence: create message: %w", err)
	}
	m.utc()
	return m, nil
}

// sendMessages is SendMessages over the dialect's group commit.
func (s *sqlStore) sendMessages(ctx context.Context, sends []Send, group sendGroup) []SendResult {
	return sendMessages(ctx, sends, group, func(err error, snd Send) error {
		if s.d.isForeignKey(err) {
			return fmt.Errorf("persistence: message in matter %d from user %d: matter or sender: %w", snd.MatterID, snd.SenderID, ErrNotFound)
		}
		return fmt.Errorf("persistence: send message: %w", err)
	})
}

func (s *sqlStore) MessageByID(ctx context.Context, id int64) (Message, error) {
	return getOne[Message](ctx, s.r, "message", id, "message by id", s.rebind(messageSelect+` WHERE m.id = ?`), id)
}

func (s *sqlStore) UpdateMessage(ctx context.Context, id int64, body string, at time.Time) (Message, error) {
	at = dbTime(at)
	var m Message
	// On PostgreSQL a deletion holds the row until it commits; the recheck
	// after the wait sees deleted_at and updates nothing.
	err := s.w.GetContext(ctx, &m, s.rebind(`UPDATE messages SET body = ?, updated_at = ?, edited_at = ?
		WHERE id = ? AND deleted_at IS NULL`+messageReturning), body, at, at, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, s.missingOrDeleted(ctx, id)
	}
	if err != nil {
		return Message{}, fmt.Errorf("persistence: update message: %w", err)
	}
	m.utc()
	return m, nil
}

// missingOrDeleted tells why a write that needs a live message found none:
// ErrDeleted if the message exists (deleted), else ErrNotFound.
func (s *sqlStore) missingOrDeleted(ctx context.Context, id int64) error {
	var deleted bool
	err := s.r.GetContext(ctx, &deleted, s.rebind(`SELECT deleted_at IS NOT NULL FROM messages WHERE id = ?`), id)
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

func (s *sqlStore) ListMessages(ctx context.Context, q MessageQuery) ([]Message, int, error) {
	where, args, order, offset, err := messageWindow(q)
	if err != nil {
		return nil, 0, err
	}
	msgs := []Message{}
	var total int
	err = s.listReads(ctx, func(db sqlx.QueryerContext) error {
		countSQL, countArgs := s.d.countMessages(q, where, args)
		if err := sqlx.GetContext(ctx, db, &total, s.rebind(countSQL), countArgs...); err != nil {
			return fmt.Errorf("persistence: count messages: %w", err)
		}
		if offset >= total {
			return nil
		}
		err := sqlx.SelectContext(ctx, db, &msgs,
			s.rebind(messageSelect+` WHERE m.matter_id = ?`+where+` ORDER BY m.id `+order+` LIMIT ? OFFSET ?`),
			append(args, q.Limit, offset)...)
		if err != nil {
			return fmt.Errorf("persistence: list messages: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	for i := range msgs {
		msgs[i].utc()
	}
	return msgs, total, nil
}

// listReads runs ListMessages' two statements. The embedded database runs
// them in one read transaction, free in-process, so the page and the total
// come from one snapshot. PostgreSQL runs them on the pool, two round trips
// rather than four: a message arriving in between only skews total by one,
// which the next request corrects.
func (s *sqlStore) listReads(ctx context.Context, fn func(db sqlx.QueryerContext) error) error {
	if !s.d.embedded {
		return fn(s.r)
	}
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("persistence: list messages: %w", err)
	}
	defer tx.Rollback()
	return fn(tx)
}

// countAllMessages counts what the window selects (ListMessages' count
// where no shortcut applies).
func countAllMessages(_ MessageQuery, where string, args []any) (string, []any) {
	return `SELECT COUNT(*) FROM messages m WHERE m.matter_id = ?` + where, args
}

func (s *sqlStore) MatterSummaries(ctx context.Context, userID int64) ([]MatterSummary, error) {
	// Both statements see one snapshot.
	tx, err := s.r.BeginTxx(ctx, &s.d.snapshot)
	if err != nil {
		return nil, fmt.Errorf("persistence: matter summaries: %w", err)
	}
	defer tx.Rollback()
	var rows []summaryRow
	if err := tx.SelectContext(ctx, &rows, s.rebind(summaryMattersSQL), userID); err != nil {
		return nil, fmt.Errorf("persistence: matter summaries: %w", err)
	}
	var members []memberRow
	if err := tx.SelectContext(ctx, &members, s.rebind(summaryMembersSQL), userID); err != nil {
		return nil, fmt.Errorf("persistence: matter summaries: members: %w", err)
	}
	return summaries(rows, members), nil
}
