// Package persistence stores Parley's users, API tokens, matters, messages
// and read receipts in PostgreSQL or in an embedded SQLite database.
package persistence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Sentinel errors, always wrapped with context; test with errors.Is. Any
// other error (database down, bad SQL) is neither.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("already exists")
	ErrForbidden = errors.New("not a member")
)

// ErrDeleted says the message was deleted (soft: its row stays), so it can
// no longer be edited or read; wrapped like the others.
var ErrDeleted = errors.New("message deleted")

// User is an account. Email is stored trimmed and lowercased so uniqueness
// and lookups are case-insensitive in both dialects.
type User struct {
	ID           int64     `db:"id" json:"id"`
	Name         string    `db:"name" json:"name"`
	Email        string    `db:"email" json:"email"`
	PasswordHash string    `db:"password_hash" json:"-"` // "" for a user without a password (cannot log in)
	CreatedAt    time.Time `db:"created_at" json:"created_at"`
	// ExternalID is the user's id in the application that manages it (the
	// admin API's external_id), unique when set.
	ExternalID *string `db:"external_id" json:"external_id"`
	// DeletedAt is set when the user was deleted: the row is anonymised and
	// kept so its messages stay readable and its id is never reused.
	DeletedAt *time.Time `db:"deleted_at" json:"deleted_at,omitempty"`
}

// Token is an API token in the Laravel-Sanctum-like form "{id}|{secret}";
// only a SHA-256 hex hash of the secret is stored.
type Token struct {
	ID         int64      `db:"id" json:"id"`
	UserID     int64      `db:"user_id" json:"user_id"`
	SecretHash string     `db:"secret_hash" json:"-"`
	ExpiresAt  *time.Time `db:"expires_at" json:"expires_at"`
	LastUsedAt *time.Time `db:"last_used_at" json:"last_used_at"`
	CreatedAt  time.Time  `db:"created_at" json:"created_at"`
}

// Matter is a conversation that members post messages to.
type Matter struct {
	ID        int64     `db:"id" json:"id"`
	Title     string    `db:"title" json:"title"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
}

// Message is a chat message with its sender's name joined from users.
type Message struct {
	ID         int64      `db:"id"`
	MatterID   int64      `db:"matter_id"`
	SenderID   int64      `db:"sender_id"`
	SenderName string     `db:"sender_name"` // joined from users
	Body       string     `db:"body"`
	CreatedAt  time.Time  `db:"created_at"`
	UpdatedAt  time.Time  `db:"updated_at"`
	EditedAt   *time.Time `db:"edited_at"`
	DeletedAt  *time.Time `db:"deleted_at"` // set by DeleteMessage, which also empties Body
	// ClientMessageID is the sender's idempotency key for the send, if
	// they gave one (unique per sender).
	ClientMessageID *string `db:"client_message_id"`
}

// ReadReceipt records that ReaderID has read a message.
type ReadReceipt struct {
	MessageID int64     `db:"message_id"`
	MatterID  int64     `db:"matter_id"`
	SenderID  int64     `db:"sender_id"` // the message's sender (who gets the receipt)
	ReaderID  int64     `db:"reader_id"`
	ReadAt    time.Time `db:"read_at"`
	// ReadSeq is the reader's read version in the matter after this call
	// when it created the receipt, else 0 (see MatterUnread.ReadSeq).
	ReadSeq int64 `db:"-"`
}

// ReadUpTo is the outcome of MarkReadUpTo.
type ReadUpTo struct {
	MatterID int64
	ReaderID int64
	UpToID   int64
	ReadAt   time.Time
	// Marked is how many messages this call marked read (0: nothing was
	// unread up to UpToID); LastMarkedID the highest of them.
	Marked       int
	LastMarkedID int64
	// SenderIDs are the senders of the marked messages, ascending.
	SenderIDs []int64
	// ReadSeq is the reader's read version in the matter after this call
	// (unchanged when Marked is 0).
	ReadSeq int64
}

// Reader is one member's read of a message.
type Reader struct {
	UserID int64     `db:"user_id"`
	ReadAt time.Time `db:"read_at"`
}

// ReadVersion is a member's read version in a matter after a change that
// took a message out of their unread count (see MatterUnread.ReadSeq).
type ReadVersion struct {
	UserID  int64 `db:"user_id"`
	ReadSeq int64 `db:"read_seq"`
}

// Deletion is the outcome of DeleteMessage.
type Deletion struct {
	// Message is the message as stored now: DeletedAt set, Body empty.
	Message Message
	// Deleted is false when the message had been deleted before: nothing
	// changed.
	Deleted bool
	// Unread are the members (the sender aside) who had not read the
	// message, ascending by user id: it left their unread count, and their
	// read version in the matter moved to ReadSeq.
	Unread []ReadVersion
}

// MemberName is a member of a matter as GET /api/matters lists them.
type MemberName struct {
	ID   int64  `db:"id" json:"id"`
	Name string `db:"name" json:"name"`
}

// MatterSummary is one of a user's matters with what a matter list shows.
type MatterSummary struct {
	Matter
	// LastMessage is the matter's newest message (deleted or not), nil if
	// it has none.
	LastMessage *Message
	// Members are every member, the user included, ascending by id.
	Members []MemberName
}

// MatterUnread is one matter of a user's read state, all from one snapshot.
type MatterUnread struct {
	// Unread counts messages from others the user has not read, deleted
	// ones aside.
	Unread int
	// LastMessageID is the matter's highest message id (0 if none). Messages
	// of a matter commit in id order, so every message at or below it is
	// counted in Unread, and every later one is not.
	LastMessageID int64
	// ReadSeq is bumped by every read of the user in the matter that
	// marked something, and by every deletion of a message they had not
	// read; a change whose ReadSeq is at or below it is counted.
	ReadSeq int64
}

// MessageQuery selects a page of a matter's messages.
//
// Default order (no cursor): newest first, paged by Page. AfterID returns the
// oldest messages after it first; BeforeID the newest before it first; when
// both are set the result is the open interval between them, oldest first.
// Total counts every message matching the filter (matter + cursor), so the
// caller can compute last_page.
type MessageQuery struct {
	MatterID int64
	Page     int   // 1-based; used when AfterID and BeforeID are 0
	Limit    int   // page size, caller validates 1..100
	AfterID  int64 // >0: messages with id > AfterID, oldest first (catch-up after being offline)
	BeforeID int64 // >0: messages with id < BeforeID, newest first (scroll back)
}

// Store is Parley's persistence. All times are stored and returned in UTC,
// truncated to microseconds (PostgreSQL's precision) so both dialects agree.
type Store interface {
	// Migrate applies pending migrations; it is idempotent and safe when two processes run it at once.
	Migrate(ctx context.Context) error
	// Ping checks that the database is reachable.
	Ping(ctx context.Context) error
	// Close releases the database handles.
	Close() error
	// Dialect reports "postgres" or "sqlite".
	Dialect() string

	// CreateUser inserts a user; ErrConflict if the email is taken (case-insensitive).
	CreateUser(ctx context.Context, name, email, passwordHash string) (User, error)
	// UserByID returns the user or ErrNotFound.
	UserByID(ctx context.Context, id int64) (User, error)
	// UserByEmail looks the user up case-insensitively, or ErrNotFound.
	UserByEmail(ctx context.Context, email string) (User, error)

	// CreateToken stores a token hash; ErrNotFound if the user is missing.
	CreateToken(ctx context.Context, userID int64, secretHash string, expiresAt *time.Time) (Token, error)
	// TokenByID returns the token or ErrNotFound.
	TokenByID(ctx context.Context, id int64) (Token, error)
	// TouchToken sets last_used_at; ErrNotFound if the token is missing.
	TouchToken(ctx context.Context, id int64, at time.Time) error
	// DeleteToken removes the token; ErrNotFound if it was already gone.
	DeleteToken(ctx context.Context, id int64) error

	// CreateMatter inserts a matter.
	CreateMatter(ctx context.Context, title string) (Matter, error)
	// MatterByID returns the matter or ErrNotFound.
	MatterByID(ctx context.Context, id int64) (Matter, error)
	// AddMember is idempotent; ErrNotFound if the matter or user is missing.
	AddMember(ctx context.Context, matterID, userID int64) error
	// IsMember reports whether the user belongs to the matter.
	IsMember(ctx context.Context, matterID, userID int64) (bool, error)
	// MemberIDs lists the matter's member ids ascending (empty if none).
	MemberIDs(ctx context.Context, matterID int64) ([]int64, error)
	// MattersForUser lists the user's matters by ascending id (empty if none).
	MattersForUser(ctx context.Context, userID int64) ([]Matter, error)

	// CreateMessage inserts a message in one transaction and returns it with SenderName; ErrNotFound if the matter or sender is missing.
	CreateMessage(ctx context.Context, matterID, senderID int64, body string, at time.Time) (Message, error)
	// SendMessages sends messages in one transaction (a group commit; see
	// Send and SendResult). Each send succeeds or fails on its own: when the
	// group's transaction fails, every send is retried in a transaction of
	// its own. Messages of a matter take ids in the order given and commit
	// in id order.
	SendMessages(ctx context.Context, sends []Send) []SendResult
	// MessageByID returns the message or ErrNotFound.
	MessageByID(ctx context.Context, id int64) (Message, error)
	// UpdateMessage sets body, updated_at and edited_at; ErrNotFound if the message is missing, ErrDeleted if it was deleted.
	UpdateMessage(ctx context.Context, id int64, body string, at time.Time) (Message, error)
	// ListMessages returns one page of messages and the total matching the filter.
	ListMessages(ctx context.Context, q MessageQuery) (msgs []Message, total int, err error)
	// DeleteMessage soft-deletes a message (deleted_at and updated_at set, body emptied) and, in the
	// same transaction, takes it out of the unread count of every member who had not read it
	// (their read_seq moves; a later read is refused with ErrDeleted); deleting it
	// again changes nothing (Deleted false). ErrNotFound if the message is missing.
	DeleteMessage(ctx context.Context, id int64, at time.Time) (Deletion, error)
	// Readers maps each of the messages to its receipts, oldest read first (one query for all): single reads and
	// the reads derived from the readers' watermark moves (see readstate.go), which derive none for a deleted message.
	Readers(ctx context.Context, messageIDs []int64) (map[int64][]Reader, error)
	// MatterSummaries lists the user's matters with their last message and members, the matter
	// with the newest message (or, without messages, the newest matter) first.
	MatterSummaries(ctx context.Context, userID int64) ([]MatterSummary, error)

	// MarkRead records a read once: a second call, or one for a message the reader's watermark already covers, returns
	// the first read_at and created=false; ErrNotFound if the message (or reader) is missing, ErrDeleted if it was deleted.
	MarkRead(ctx context.Context, messageID, readerID int64, at time.Time) (r ReadReceipt, created bool, err error)
	// MarkReadUpTo marks read, for a member, every message from others in the matter with an id up to upToID (deleted ones
	// aside) by moving the member's watermark: a few rows whatever the number of messages; ErrNotFound if the reader is not a member.
	MarkReadUpTo(ctx context.Context, matterID, readerID, upToID int64, at time.Time) (ReadUpTo, error)
	// UnreadCounts maps every matter the user is a member of (zeros included) to its messages not sent by the user, not deleted and not read by them.
	// It counts from the receipts alone (single reads and ranges: the definition); UnreadState, from the watermark, is the fast path.
	UnreadCounts(ctx context.Context, userID int64) (map[int64]int, error)
	// UnreadState is the user's read state per matter (every matter they belong to), what the unread counters load.
	UnreadState(ctx context.Context, userID int64) (map[int64]MatterUnread, error)

	AdminStore
	DeviceStore
}

// Open returns a PostgreSQL store when databaseURL is non-empty (lib/pq,
// "postgres://..."), else the embedded SQLite database at
// filepath.Join(dataDir, "parley.db") (creating dataDir, 0700).
// It checks the connection but does not migrate; callers call Migrate.
func Open(ctx context.Context, databaseURL, dataDir string) (Store, error) {
	if databaseURL != "" {
		return openPostgres(ctx, databaseURL)
	}
	if dataDir == "" {
		return nil, errors.New("persistence: no database URL and no data directory")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("persistence: create data dir: %w", err)
	}
	return openSQLite(ctx, filepath.Join(dataDir, "parley.db"))
}

// dbTime is how every time is written: UTC at PostgreSQL's microsecond
// precision, so a value read back equals the value written in both dialects.
func dbTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

func dbTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := dbTime(*t)
	return &v
}

// normalizeEmail makes email comparisons case-insensitive in Go rather than
// with SQL lower(), which SQLite only applies to ASCII.
func normalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// The drivers return times in the session's zone; callers get UTC.

func (u *User) utc() {
	u.CreatedAt = u.CreatedAt.UTC()
	u.DeletedAt = utcPtr(u.DeletedAt)
}

func (t *Token) utc() {
	t.CreatedAt = t.CreatedAt.UTC()
	t.ExpiresAt = utcPtr(t.ExpiresAt)
	t.LastUsedAt = utcPtr(t.LastUsedAt)
}

func (m *Matter) utc() {
	m.CreatedAt = m.CreatedAt.UTC()
}

func (m *Message) utc() {
	m.CreatedAt = m.CreatedAt.UTC()
	m.UpdatedAt = m.UpdatedAt.UTC()
	m.EditedAt = utcPtr(m.EditedAt)
	m.DeletedAt = utcPtr(m.DeletedAt)
}

func (r *ReadReceipt) utc() {
	r.ReadAt = r.ReadAt.UTC()
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}

// messageWindow turns a query into a WHERE suffix (after matter_id), its
// arguments ("?" placeholders), the ORDER BY direction and the offset.
func messageWindow(q MessageQuery) (where string, args []any, order string, offset int, err error) {
	if q.Limit <= 0 {
		return "", nil, "", 0, fmt.Errorf("persistence: list messages: limit %d must be positive", q.Limit)
	}
	args = []any{q.MatterID}
	order = "DESC"
	if q.AfterID > 0 {
		args = append(args, q.AfterID)
		where += " AND m.id > ?"
		order = "ASC"
	}
	if q.BeforeID > 0 {
		args = append(args, q.BeforeID)
		where += " AND m.id < ?"
	}
	if q.AfterID <= 0 && q.BeforeID <= 0 && q.Page > 1 {
		// A page far past the end must not overflow into a negative OFFSET.
		if q.Page-1 > math.MaxInt/q.Limit {
			offset = math.MaxInt
		} else {
			offset = (q.Page - 1) * q.Limit
		}
	}
	return where, args, order, offset, nil
}

// rowsAffected is the number of rows a statement changed, from what its
// ExecContext returned: rowsAffected(db.ExecContext(...)).
func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// affectedOne turns a single-row UPDATE/DELETE result into nil or ErrNotFound.
func affectedOne(res sql.Result, err error, op, what string, id int64) error {
	n, err := rowsAffected(res, err)
	if err != nil {
		return fmt.Errorf("persistence: %s: %w", op, err)
	}
	if n == 0 {
		return fmt.Errorf("persistence: %s %d: %w", what, id, ErrNotFound)
	}
	return nil
}

// scanCounts reads (matter_id, count) rows.
func scanCounts(rows *sql.Rows) (map[int64]int, error) {
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var id int64
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("persistence: unread counts: %w", err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("persistence: unread counts: %w", err)
	}
	return out, nil
}

// scanState reads (matter_id, unread, last_message_id, read_seq) rows.
func scanState(rows *sql.Rows) (map[int64]MatterUnread, error) {
	defer rows.Close()
	out := map[int64]MatterUnread{}
	for rows.Next() {
		var id int64
		var u MatterUnread
		if err := rows.Scan(&id, &u.Unread, &u.LastMessageID, &u.ReadSeq); err != nil {
			return nil, fmt.Errorf("persistence: unread state: %w", err)
		}
		out[id] = u
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("persistence: unread state: %w", err)
	}
	return out, nil
}

// Matter summaries: two statements (the matters with their newest message,
// then every member of those matters), in one read transaction so they
// agree; each takes the user id.
const (
	summaryMattersSQL = `SELECT mt.id, mt.title, mt.created_at,
			m.id AS last_id, m.sender_id AS last_sender_id, u.name AS last_sender_name, m.body AS last_body,
			m.created_at AS last_created_at, m.updated_at AS last_updated_at,
			m.edited_at AS last_edited_at, m.deleted_at AS last_deleted_at
		FROM members mm
		JOIN matters mt ON mt.id = mm.matter_id
		LEFT JOIN messages m ON m.id = (SELECT MAX(x.id) FROM messages x WHERE x.matter_id = mt.id)
		LEFT JOIN users u ON u.id = m.sender_id
		WHERE mm.user_id = ?
		ORDER BY COALESCE(m.created_at, mt.created_at) DESC, mt.id DESC`
	summaryMembersSQL = `SELECT mm.matter_id, u.id, u.name
		FROM members mine
		JOIN members mm ON mm.matter_id = mine.matter_id
		JOIN users u ON u.id = mm.user_id
		WHERE mine.user_id = ?
		ORDER BY mm.matter_id, u.id`
)

// summaryRow is one row of summaryMattersSQL.
type summaryRow struct {
	Matter
	LastID         *int64     `db:"last_id"`
	LastSenderID   *int64     `db:"last_sender_id"`
	LastSenderName *string    `db:"last_sender_name"`
	LastBody       *string    `db:"last_body"`
	LastCreatedAt  *time.Time `db:"last_created_at"`
	LastUpdatedAt  *time.Time `db:"last_updated_at"`
	LastEditedAt   *time.Time `db:"last_edited_at"`
	LastDeletedAt  *time.Time `db:"last_deleted_at"`
}

// memberRow is one row of summaryMembersSQL.
type memberRow struct {
	MatterID int64 `db:"matter_id"`
	MemberName
}

// summaries assembles the two statements' results.
func summaries(rows []summaryRow, members []memberRow) []MatterSummary {
	byMatter := map[int64][]MemberName{}
	for _, r := range members {
		byMatter[r.MatterID] = append(byMatter[r.MatterID], r.MemberName)
	}
	out := make([]MatterSummary, len(rows))
	for i, r := range rows {
		s := MatterSummary{Matter: r.Matter, Members: byMatter[r.ID]}
		s.utc()
		if s.Members == nil {
			s.Members = []MemberName{}
		}
		if r.LastID != nil && r.LastSenderID != nil && r.LastCreatedAt != nil && r.LastUpdatedAt != nil {
			m := Message{ID: *r.LastID, MatterID: r.ID, SenderID: *r.LastSenderID,
				CreatedAt: *r.LastCreatedAt, UpdatedAt: *r.LastUpdatedAt, EditedAt: r.LastEditedAt, DeletedAt: r.LastDeletedAt}
			if r.LastSenderName != nil {
				m.SenderName = *r.LastSenderName
			}
			if r.LastBody != nil {
				m.Body = *r.LastBody
			}
			m.utc()
			s.LastMessage = &m
		}
		out[i] = s
	}
	return out
}
