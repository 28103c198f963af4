package persistence

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var _ Store = (*sqliteStore)(nil)

// sqliteStore keeps two pools on one WAL database file. All writes go through
// w, a single connection: SQLite admits one writer at a time anyway, and
// queueing in database/sql is FIFO and wakes waiters at once, whereas
// contending connections would poll in SQLite's sleeping busy handler and
// blow up tail latency. Reads use r concurrently; WAL lets them run beside
// the writer.
type sqliteStore struct {
	w          *sqlx.DB
	r          *sqlx.DB
	migrations []migration

	sendMu    sync.Mutex
	sendStmts *sqliteSendStmts // prepared on the writer at the first send (after Migrate)
}

// sqliteSendStmts are the send path's statements, prepared once on the one
// writer connection: the embedded database otherwise parses each statement
// again every time (a seventh of the server's CPU at 200 messages/s).
type sqliteSendStmts struct {
	matterExists, members, insert, repeat, senderName, newest *sqlx.Stmt
}

func (s *sqliteStore) sendStatements(ctx context.Context) (*sqliteSendStmts, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.sendStmts != nil {
		return s.sendStmts, nil
	}
	st := &sqliteSendStmts{}
	for _, p := range []struct {
		dst **sqlx.Stmt
		sql string
	}{
		{&st.matterExists, `SELECT EXISTS (SELECT 1 FROM matters WHERE id = ?)`},
		{&st.members, `SELECT user_id FROM members WHERE matter_id = ? ORDER BY user_id`},
		{&st.insert, `INSERT INTO messages (matter_id, sender_id, body, client_message_id, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`},
		{&st.repeat, sqliteMessageSelect + ` WHERE m.sender_id = ? AND m.client_message_id = ?`},
		{&st.senderName, `SELECT name FROM users WHERE id = ?`},
		{&st.newest, `SELECT COALESCE(MAX(id), 0) FROM messages WHERE matter_id = ?`},
	} {
		stmt, err := s.w.PreparexContext(ctx, p.sql)
		if err != nil {
			return nil, err
		}
		*p.dst = stmt
	}
	s.sendStmts = st
	return st, nil
}

// sqliteDSN builds the modernc DSN. busy_timeout only matters against other
// processes (or a second Store) on the same file, since in-process writers
// are serialised by the one-connection pool; _txlock=immediate makes write
// transactions take the write lock at BEGIN, where SQLite honours
// busy_timeout, instead of failing with SQLITE_BUSY on upgrade.
// _time_format=sqlite writes times as "2006-01-02 15:04:05.999999999-07:00",
// which the driver parses back into time.Time from DATETIME columns.
func sqliteDSN(path string, writer bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_time_format", "sqlite")
	if writer {
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	return path + "?" + q.Encode()
}

func openSQLite(ctx context.Context, path string) (*sqliteStore, error) {
	migs, err := loadMigrations("sqlite")
	if err != nil {
		return nil, err
	}
	w, err := sqlx.Open("sqlite", sqliteDSN(path, true))
	if err != nil {
		return nil, fmt.Errorf("persistence: open sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// The writer connects first so WAL mode is set before any reader opens.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("persistence: open sqlite %s: %w", path, err)
	}
	r, err := sqlx.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("persistence: open sqlite: %w", err)
	}
	n := max(4, runtime.NumCPU())
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("persistence: open sqlite %s: %w", path, err)
	}
	return &sqliteStore{w: w, r: r, migrations: migs}, nil
}

func (s *sqliteStore) Dialect() string { return "sqlite" }

func (s *sqliteStore) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("persistence: ping: %w", err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("persistence: ping: %w", err)
	}
	return nil
}

func (s *sqliteStore) Close() error {
	s.sendMu.Lock()
	if st := s.sendStmts; st != nil {
		for _, stmt := range []*sqlx.Stmt{st.matterExists, st.members, st.insert, st.repeat, st.senderName} {
			stmt.Close()
		}
		s.sendStmts = nil
	}
	s.sendMu.Unlock()
	return errors.Join(s.r.Close(), s.w.Close())
}

// writeTx runs fn in a BEGIN IMMEDIATE transaction on the writer connection.
func (s *sqliteStore) writeTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

func sqliteIsUnique(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func sqliteIsForeignKey(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// Migrate applies each pending file in its own BEGIN IMMEDIATE transaction,
// which also serialises concurrent migrators (other processes wait out
// busy_timeout); the version is re-checked under that lock.
func (s *sqliteStore) Migrate(ctx context.Context) error {
	for _, m := range s.migrations {
		err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version    INTEGER PRIMARY KEY,
				applied_at DATETIME NOT NULL
			)`); err != nil {
				return err
			}
			var applied bool
			if err := tx.GetContext(ctx, &applied,
				`SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`, m.version); err != nil {
				return err
			}
			if applied {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx,
				`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, m.version, dbTime(time.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("persistence: migrate %s: %w", m.name, err)
		}
	}
	return nil
}

const sqliteUserCols = `id, name, email, password_hash, created_at, external_id, deleted_at`

func (s *sqliteStore) CreateUser(ctx context.Context, name, email, passwordHash string) (User, error) {
	u := User{Name: name, Email: normalizeEmail(email), PasswordHash: passwordHash, CreatedAt: dbTime(time.Now())}
	res, err := s.w.ExecContext(ctx,
		`INSERT INTO users (name, email, password_hash, created_at) VALUES (?, ?, ?, ?)`,
		u.Name, u.Email, u.PasswordHash, u.CreatedAt)
	if sqliteIsUnique(err) {
		return User{}, fmt.Errorf("persistence: user %q: %w", u.Email, ErrConflict)
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: create user: %w", err)
	}
	if u.ID, err = res.LastInsertId(); err != nil {
		return User{}, fmt.Errorf("persistence: create user: %w", err)
	}
	return u, nil
}

func (s *sqliteStore) UserByID(ctx context.Context, id int64) (User, error) {
	var u User
	err := s.r.GetContext(ctx, &u, `SELECT `+sqliteUserCols+` FROM users WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("persistence: user %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: user by id: %w", err)
	}
	u.utc()
	return u, nil
}

func (s *sqliteStore) UserByEmail(ctx context.Context, email string) (User, error) {
	var u User
	email = normalizeEmail(email)
	err := s.r.GetContext(ctx, &u, `SELECT `+sqliteUserCols+` FROM users WHERE email = ?`, email)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("persistence: user %q: %w", email, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: user by email: %w", err)
	}
	u.utc()
	return u, nil
}

func (s *sqliteStore) CreateToken(ctx context.Context, userID int64, secretHash string, expiresAt *time.Time) (Token, error) {
	t := Token{UserID: userID, SecretHash: secretHash, ExpiresAt: dbTimePtr(expiresAt), CreatedAt: dbTime(time.Now())}
	res, err := s.w.ExecContext(ctx,
		`INSERT INTO tokens (user_id, secret_hash, expires_at, created_at) VALUES (?, ?, ?, ?)`,
		t.UserID, t.SecretHash, t.ExpiresAt, t.CreatedAt)
	if sqliteIsForeignKey(err) {
		return Token{}, fmt.Errorf("persistence: token for user %d: user: %w", userID, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("persistence: create token: %w", err)
	}
	if t.ID, err = res.LastInsertId(); err != nil {
		return Token{}, fmt.Errorf("persistence: create token: %w", err)
	}
	return t, nil
}

func (s *sqliteStore) TokenByID(ctx context.Context, id int64) (Token, error) {
	var t Token
	err := s.r.GetContext(ctx, &t,
		`SELECT id, user_id, secret_hash, expires_at, last_used_at, created_at FROM tokens WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("persistence: token %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("persistence: token by id: %w", err)
	}
	t.utc()
	return t, nil
}

func (s *sqliteStore) TouchToken(ctx context.Context, id int64, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE tokens SET last_used_at = ? WHERE id = ?`, dbTime(at), id)
	return affectedOne(res, err, "touch token", "token", id)
}

func (s *sqliteStore) DeleteToken(ctx context.Context, id int64) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM tokens WHERE id = ?`, id)
	return affectedOne(res, err, "delete token", "token", id)
}

func (s *sqliteStore) CreateMatter(ctx context.Context, title string) (Matter, error) {
	m := Matter{Title: title, CreatedAt: dbTime(time.Now())}
	res, err := s.w.ExecContext(ctx, `INSERT INTO matters (title, created_at) VALUES (?, ?)`, m.Title, m.CreatedAt)
	if err != nil {
		return Matter{}, fmt.Errorf("persistence: create matter: %w", err)
	}
	if m.ID, err = res.LastInsertId(); err != nil {
		return Matter{}, fmt.Errorf("persistence: create matter: %w", err)
	}
	return m, nil
}

func (s *sqliteStore) MatterByID(ctx context.Context, id int64) (Matter, error) {
	var m Matter
	err := s.r.GetContext(ctx, &m, `SELECT id, title, created_at FROM matters WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Matter{}, fmt.Errorf("persistence: matter %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Matter{}, fmt.Errorf("persistence: matter by id: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *sqliteStore) AddMember(ctx context.Context, matterID, userID int64) error {
	// DO NOTHING covers only the primary key; a missing matter or user still
	// fails the foreign key.
	_, err := s.w.ExecContext(ctx,
		`INSERT INTO members (matter_id, user_id, joined_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		matterID, userID, dbTime(time.Now()))
	if sqliteIsForeignKey(err) {
		return fmt.Errorf("persistence: add user %d to matter %d: matter or user: %w", userID, matterID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("persistence: add member: %w", err)
	}
	return nil
}

func (s *sqliteStore) IsMember(ctx context.Context, matterID, userID int64) (bool, error) {
	var ok bool
	err := s.r.GetContext(ctx, &ok,
		`SELECT EXISTS (SELECT 1 FROM members WHERE matter_id = ? AND user_id = ?)`, matterID, userID)
	if err != nil {
		return false, fmt.Errorf("persistence: is member: %w", err)
	}
	return ok, nil
}

func (s *sqliteStore) MemberIDs(ctx context.Context, matterID int64) ([]int64, error) {
	ids := []int64{}
	err := s.r.SelectContext(ctx, &ids,
		`SELECT user_id FROM members WHERE matter_id = ? ORDER BY user_id`, matterID)
	if err != nil {
		return nil, fmt.Errorf("persistence: member ids: %w", err)
	}
	return ids, nil
}

func (s *sqliteStore) MattersForUser(ctx context.Context, userID int64) ([]Matter, error) {
	ms := []Matter{}
	err := s.r.SelectContext(ctx, &ms, `SELECT m.id, m.title, m.created_at
		FROM members mm JOIN matters m ON m.id = mm.matter_id
		WHERE mm.user_id = ? ORDER BY m.id`, userID)
	if err != nil {
		return nil, fmt.Errorf("persistence: matters for user: %w", err)
	}
	for i := range ms {
		ms[i].utc()
	}
	return ms, nil
}

const sqliteMessageSelect = `SELECT m.id, m.matter_id, m.sender_id, u.name AS sender_name,
	m.body, m.created_at, m.updated_at, m.edited_at,
	m.deleted_at, m.client_message_id
	FROM messages m JOIN users u ON u.id = m.sender_id`

func (s *sqliteStore) CreateMessage(ctx context.Context, matterID, senderID int64, body string, at time.Time) (Message, error) {
	at = dbTime(at)
	m := Message{MatterID: matterID, SenderID: senderID, Body: body, CreatedAt: at, UpdatedAt: at}
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx,
			`INSERT INTO messages (matter_id, sender_id, body, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
			matterID, senderID, body, at, at)
		if err != nil {
			return err
		}
		if m.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		return tx.GetContext(ctx, &m.SenderName, `SELECT name FROM users WHERE id = ?`, senderID)
	})
	if sqliteIsForeignKey(err) {
		return Message{}, fmt.Errorf("persistence: message in matter %d from user %d: matter or sender: %w", matterID, senderID, ErrNotFound)
	}
	if err != nil {
		return Message{}, fmt.Errorf("persistence: create message: %w", err)
	}
	return m, nil
}

func (s *sqliteStore) SendMessages(ctx context.Context, sends []Send) []SendResult {
	return sendMessages(ctx, sends, s.sendGroup, func(err error, snd Send) error {
		if sqliteIsForeignKey(err) {
			return fmt.Errorf("persistence: message in matter %d from user %d: matter or sender: %w", snd.MatterID, snd.SenderID, ErrNotFound)
		}
		return fmt.Errorf("persistence: send message: %w", err)
	})
}

// sendGroup stores a group in one write transaction. The one writer
// connection serialises it with every other write, so ids commit in order
// without locks, and statements cost no round trips.
func (s *sqliteStore) sendGroup(ctx context.Context, sends []Send) ([]SendResult, error) {
	ps, err := s.sendStatements(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]SendResult, len(sends))
	err = s.writeTx(ctx, func(tx *sqlx.Tx) error {
		// The statements were prepared on the writer, the connection of tx:
		// Stmtx reuses them.
		matterExists, members, insert := tx.StmtxContext(ctx, ps.matterExists), tx.StmtxContext(ctx, ps.members), tx.StmtxContext(ctx, ps.insert)
		repeat, senderName, newest := tx.StmtxContext(ctx, ps.repeat), tx.StmtxContext(ctx, ps.senderName), tx.StmtxContext(ctx, ps.newest)
		type matterInfo struct {
			exists  bool
			members []int64
			last    int64 // the matter's newest message so far
		}
		matters := map[int64]matterInfo{}
		names := map[int64]string{}
		for i, x := range sends {
			mi, seen := matters[x.MatterID]
			if !seen {
				if err := matterExists.GetContext(ctx, &mi.exists, x.MatterID); err != nil {
					return err
				}
				mi.members = []int64{}
				if err := members.SelectContext(ctx, &mi.members, x.MatterID); err != nil {
					return err
				}
				if err := newest.GetContext(ctx, &mi.last, x.MatterID); err != nil {
					return err
				}
				matters[x.MatterID] = mi
			}
			if err := sendRefusal(x, mi.members, mi.exists); err != nil {
				out[i].Err = err
				continue
			}
			at := dbTime(x.At)
			res, err := insert.ExecContext(ctx, x.MatterID, x.SenderID, x.Body, nullable(x.ClientMessageID), at, at)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 {
				if x.ClientMessageID == "" {
					return fmt.Errorf("send: insert of a message without a client message id skipped")
				}
				var first Message
				if err := repeat.GetContext(ctx, &first, x.SenderID, x.ClientMessageID); err != nil {
					return err
				}
				first.utc()
				r, err := repeatResult(x, first, mi.members, func(matterID, id int64) (prev int64, err error) {
					err = tx.GetContext(ctx, &prev, previousIDQuery, matterID, id)
					return prev, err
				})
				if err != nil {
					return err
				}
				out[i] = r
				continue
			}
			id, err := res.LastInsertId()
			if err != nil {
				return err
			}
			name, ok := names[x.SenderID]
			if !ok {
				if err := senderName.GetContext(ctx, &name, x.SenderID); err != nil {
					return err
				}
				names[x.SenderID] = name
			}
			out[i] = SendResult{Members: mi.members, PreviousID: mi.last, Message: Message{
				ID: id, MatterID: x.MatterID, SenderID: x.SenderID, SenderName: name, Body: x.Body,
				CreatedAt: at, UpdatedAt: at, ClientMessageID: nullable(x.ClientMessageID),
			}}
			mi.last = id
			matters[x.MatterID] = mi
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *sqliteStore) MessageByID(ctx context.Context, id int64) (Message, error) {
	var m Message
	err := s.r.GetContext(ctx, &m, sqliteMessageSelect+` WHERE m.id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, fmt.Errorf("persistence: message %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Message{}, fmt.Errorf("persistence: message by id: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *sqliteStore) UpdateMessage(ctx context.Context, id int64, body string, at time.Time) (Message, error) {
	at = dbTime(at)
	var m Message
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE messages SET body = ?, updated_at = ?, edited_at = ? WHERE id = ? AND deleted_at IS NULL`, body, at, at, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return missingOrDeletedTx(ctx, tx, id)
		}
		return tx.GetContext(ctx, &m, sqliteMessageSelect+` WHERE m.id = ?`, id)
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDeleted) {
		return Message{}, err
	}
	if err != nil {
		return Message{}, fmt.Errorf("persistence: update message: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *sqliteStore) ListMessages(ctx context.Context, q MessageQuery) ([]Message, int, error) {
	where, args, order, offset, err := messageWindow(q, func(int) string { return "?" })
	if err != nil {
		return nil, 0, err
	}
	msgs := []Message{}
	var total int
	// A read transaction is free in-process and makes the page and the
	// total come from the same snapshot.
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("persistence: list messages: %w", err)
	}
	defer tx.Rollback()
	if err := tx.GetContext(ctx, &total, `SELECT COUNT(*) FROM messages m WHERE m.matter_id = ?`+where, args...); err != nil {
		return nil, 0, fmt.Errorf("persistence: count messages: %w", err)
	}
	if offset < total {
		err = tx.SelectContext(ctx, &msgs,
			sqliteMessageSelect+` WHERE m.matter_id = ?`+where+` ORDER BY m.id `+order+` LIMIT ? OFFSET ?`,
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

func (s *sqliteStore) MarkRead(ctx context.Context, messageID, readerID int64, at time.Time) (ReadReceipt, bool, error) {
	var r ReadReceipt
	var created bool
	var seq int64
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		// A deleted message takes no receipt (see the PostgreSQL store).
		var gone bool
		err := tx.GetContext(ctx, &gone, `SELECT deleted_at IS NOT NULL FROM messages WHERE id = ?`, messageID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("persistence: message %d: %w", messageID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if gone {
			return fmt.Errorf("persistence: read of message %d: %w", messageID, ErrDeleted)
		}
		res, err := tx.ExecContext(ctx,
			`INSERT INTO message_reads (message_id, user_id, read_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			messageID, readerID, dbTime(at))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		created = n == 1
		if created {
			// A non-member's read bumps nothing (no member row).
			err := tx.GetContext(ctx, &seq, `UPDATE members SET read_seq = read_seq + 1
				WHERE matter_id = (SELECT matter_id FROM messages WHERE id = ?) AND user_id = ?
				RETURNING read_seq`, messageID, readerID)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		return tx.GetContext(ctx, &r, `SELECT r.message_id, m.matter_id, m.sender_id, r.user_id AS reader_id, r.read_at
			FROM message_reads r JOIN messages m ON m.id = r.message_id
			WHERE r.message_id = ? AND r.user_id = ?`, messageID, readerID)
	})
	if sqliteIsForeignKey(err) {
		return ReadReceipt{}, false, fmt.Errorf("persistence: read of message %d by user %d: message or reader: %w", messageID, readerID, ErrNotFound)
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDeleted) {
		return ReadReceipt{}, false, err
	}
	if err != nil {
		return ReadReceipt{}, false, fmt.Errorf("persistence: mark read: %w", err)
	}
	r.utc()
	if created {
		r.ReadSeq = seq
	}
	return r, created, nil
}

func (s *sqliteStore) MarkReadUpTo(ctx context.Context, matterID, readerID, upToID int64, at time.Time) (ReadUpTo, error) {
	out := ReadUpTo{MatterID: matterID, ReaderID: readerID, UpToID: upToID, ReadAt: dbTime(at), SenderIDs: []int64{}}
	// The one writer makes this transaction see exactly what it changes: the
	// messages after read_up_to that are still unread are the ones the
	// insert marks.
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		var old int64
		err := tx.GetContext(ctx, &old, `SELECT read_up_to FROM members WHERE matter_id = ? AND user_id = ?`, matterID, readerID)
		if err != nil {
			return err
		}
		var top int64
		if err := tx.GetContext(ctx, &top, `SELECT COALESCE(MAX(id), 0) FROM messages WHERE matter_id = ? AND id <= ?`, matterID, upToID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT m.id, m.sender_id FROM messages m
			WHERE m.matter_id = ? AND m.id > ? AND m.id <= ? AND m.sender_id <> ? AND m.deleted_at IS NULL
			AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = ?)`,
			matterID, old, upToID, readerID, readerID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, sender int64
			if err := rows.Scan(&id, &sender); err != nil {
				return err
			}
			out.Marked++
			out.LastMarkedID = max(out.LastMarkedID, id)
			if !slices.Contains(out.SenderIDs, sender) {
				out.SenderIDs = append(out.SenderIDs, sender)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO message_reads (message_id, user_id, read_at)
			SELECT m.id, ?, ? FROM messages m
			WHERE m.matter_id = ? AND m.id > ? AND m.id <= ? AND m.sender_id <> ? AND m.deleted_at IS NULL
			ON CONFLICT DO NOTHING`, readerID, out.ReadAt, matterID, old, upToID, readerID); err != nil {
			return err
		}
		bump := 0
		if out.Marked > 0 {
			bump = 1
		}
		return tx.GetContext(ctx, &out.ReadSeq, `UPDATE members SET read_up_to = MAX(read_up_to, ?), read_seq = read_seq + ?
			WHERE matter_id = ? AND user_id = ? RETURNING read_seq`, top, bump, matterID, readerID)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return ReadUpTo{}, fmt.Errorf("persistence: user %d in matter %d: member: %w", readerID, matterID, ErrNotFound)
	}
	if err != nil {
		return ReadUpTo{}, fmt.Errorf("persistence: mark read up to: %w", err)
	}
	slices.Sort(out.SenderIDs)
	return out, nil
}

func (s *sqliteStore) UnreadCounts(ctx context.Context, userID int64) (map[int64]int, error) {
	// The LEFT JOIN keeps matters with nothing unread as zero rows.
	rows, err := s.r.QueryContext(ctx, `SELECT mm.matter_id, COUNT(m.id)
		FROM members mm
		LEFT JOIN messages m ON m.matter_id = mm.matter_id AND m.sender_id <> ? AND m.deleted_at IS NULL
			AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = ?)
		WHERE mm.user_id = ?
		GROUP BY mm.matter_id`, userID, userID, userID)
	if err != nil {
		return nil, fmt.Errorf("persistence: unread counts: %w", err)
	}
	return scanCounts(rows)
}

func (s *sqliteStore) UnreadState(ctx context.Context, userID int64) (map[int64]MatterUnread, error) {
	// One statement, one snapshot; the count starts after read_up_to.
	rows, err := s.r.QueryContext(ctx, `SELECT mm.matter_id,
			(SELECT COUNT(*) FROM messages m
				WHERE m.matter_id = mm.matter_id AND m.id > mm.read_up_to AND m.sender_id <> ? AND m.deleted_at IS NULL
				AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = ?)),
			COALESCE((SELECT MAX(m.id) FROM messages m WHERE m.matter_id = mm.matter_id), 0),
			mm.read_seq
		FROM members mm
		WHERE mm.user_id = ?`, userID, userID, userID)
	if err != nil {
		return nil, fmt.Errorf("persistence: unread state: %w", err)
	}
	return scanState(rows)
}

// missingOrDeletedTx tells why a write that needs a live message found
// none: ErrDeleted if the message exists, else ErrNotFound.
func missingOrDeletedTx(ctx context.Context, tx *sqlx.Tx, id int64) error {
	var deleted bool
	err := tx.GetContext(ctx, &deleted, `SELECT deleted_at IS NOT NULL FROM messages WHERE id = ?`, id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("persistence: message %d: %w", id, ErrNotFound)
	case err != nil:
		return err
	case deleted:
		return fmt.Errorf("persistence: message %d: %w", id, ErrDeleted)
	}
	return fmt.Errorf("persistence: message %d: %w", id, ErrNotFound) // unreachable: deletion is final
}

func (s *sqliteStore) DeleteMessage(ctx context.Context, id int64, at time.Time) (Deletion, error) {
	at = dbTime(at)
	out := Deletion{Unread: []ReadVersion{}}
	// The one writer makes this the same as PostgreSQL's statement: mark the
	// message, move read_seq of each member without a receipt, and give them
	// one at the deletion time.
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		var matterID, senderID int64
		err := tx.QueryRowxContext(ctx, `UPDATE messages SET body = '', deleted_at = ?, updated_at = ?
			WHERE id = ? AND deleted_at IS NULL RETURNING matter_id, sender_id`, at, at, id).Scan(&matterID, &senderID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Missing, or deleted before.
		case err != nil:
			return err
		default:
			out.Deleted = true
			if err := tx.SelectContext(ctx, &out.Unread, `UPDATE members SET read_seq = read_seq + 1
				WHERE matter_id = ? AND user_id <> ?
				AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = ? AND r.user_id = members.user_id)
				RETURNING user_id, read_seq`, matterID, senderID, id); err != nil {
				return err
			}
			slices.SortFunc(out.Unread, func(a, b ReadVersion) int { return cmp.Compare(a.UserID, b.UserID) })
			if _, err := tx.ExecContext(ctx, `INSERT INTO message_reads (message_id, user_id, read_at)
				SELECT ?, user_id, ? FROM members WHERE matter_id = ? AND user_id <> ?
				ON CONFLICT DO NOTHING`, id, at, matterID, senderID); err != nil {
				return err
			}
		}
		err = tx.GetContext(ctx, &out.Message, sqliteMessageSelect+` WHERE m.id = ?`, id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("persistence: message %d: %w", id, ErrNotFound)
		}
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Deletion{}, err
	}
	if err != nil {
		return Deletion{}, fmt.Errorf("persistence: delete message: %w", err)
	}
	out.Message.utc()
	return out, nil
}

func (s *sqliteStore) Readers(ctx context.Context, messageIDs []int64) (map[int64][]Reader, error) {
	if len(messageIDs) == 0 {
		return map[int64][]Reader{}, nil
	}
	q, args, err := sqlx.In(`SELECT message_id, user_id, read_at FROM message_reads
		WHERE message_id IN (?) ORDER BY message_id, read_at, user_id`, messageIDs)
	if err != nil {
		return nil, fmt.Errorf("persistence: readers: %w", err)
	}
	var rows []readerRow
	if err := s.r.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, fmt.Errorf("persistence: readers: %w", err)
	}
	return readers(rows), nil
}

func (s *sqliteStore) MatterSummaries(ctx context.Context, userID int64) ([]MatterSummary, error) {
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("persistence: matter summaries: %w", err)
	}
	defer tx.Rollback()
	mattersSQL, membersSQL := summarySQL(func(int) string { return "?" })
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
