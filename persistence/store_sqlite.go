package persistence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"

	"github.com/jmoiron/sqlx"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var _ Store = (*sqliteStore)(nil)

// sqliteStore is the embedded store: sqlStore on two pools over one WAL
// database file, plus its own group commit of sends. All writes go
// through w, a single connection: SQLite admits one writer at a time anyway,
// and queueing in database/sql is FIFO and wakes waiters at once, whereas
// contending connections would poll in SQLite's sleeping busy handler and
// blow up tail latency. Reads use r concurrently; WAL lets them run beside
// the writer.
type sqliteStore struct {
	sqlStore
}

// sqliteDialect is what the shared statements need to know of SQLite.
var sqliteDialect = dialect{
	name:         "sqlite",
	embedded:     true,
	isUnique:     sqliteIsUnique,
	isForeignKey: sqliteIsForeignKey,
	emailIs:      `email = ?`,
	snapshot:     sql.TxOptions{ReadOnly: true},
	inIDs: func(col string, ids []int64) (string, []any) {
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		return col + ` IN (` + questionMarks(len(ids)) + `)`, args
	},
	countMessages: countAllMessages, // in-process and fast
	unreadState:   unreadStateSQL(`(SELECT MAX(m.id) FROM messages m WHERE m.matter_id = mm.matter_id)`),
	moveWatermark: moveWatermarkStatements, // statements cost no round trip here
	// BEGIN IMMEDIATE (see sqliteDSN) serialises concurrent migrators: other
	// processes wait out busy_timeout.
	timestamp: `DATETIME`,
}

// questionMarks is n comma-separated placeholders.
func questionMarks(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// The send path's statements, prepared once on the one writer connection
// (prepared.go): the embedded database otherwise parses each statement
// again every time (a seventh of the server's CPU at 200 messages/s).
const (
	sqliteMatterExists = `SELECT EXISTS (SELECT 1 FROM matters WHERE id = ?)`
	sqliteMembers      = `SELECT user_id FROM members WHERE matter_id = ? ORDER BY user_id`
	sqliteInsert       = `INSERT INTO messages (matter_id, sender_id, body, client_message_id, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqliteRepeat     = messageSelect + ` WHERE m.sender_id = ? AND m.client_message_id = ?`
	sqliteSenderName = `SELECT name FROM users WHERE id = ?`
	sqliteNewest     = `SELECT COALESCE(MAX(id), 0) FROM messages WHERE matter_id = ?`
)

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
	return &sqliteStore{sqlStore: sqlStore{w: w, r: r, d: sqliteDialect, migrations: migs}}, nil
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

func (s *sqliteStore) SendMessages(ctx context.Context, sends []Send) []SendResult {
	return s.sendMessages(ctx, sends, s.sendGroup)
}

// sendGroup stores a group in one write transaction. The one writer
// connection serialises it with every other write, so ids commit in order
// without locks, and statements cost no round trips.
func (s *sqliteStore) sendGroup(ctx context.Context, sends []Send) ([]SendResult, error) {
	ps, err := s.stmts.prepared(ctx, s.w, sqliteMatterExists, sqliteMembers, sqliteInsert, sqliteRepeat, sqliteSenderName, sqliteNewest)
	if err != nil {
		return nil, err
	}
	out := make([]SendResult, len(sends))
	err = s.writeTx(ctx, func(tx *sqlx.Tx) error {
		// The statements were prepared on the writer, the connection of tx:
		// Stmtx reuses them.
		matterExists, members, insert := tx.StmtxContext(ctx, ps[0]), tx.StmtxContext(ctx, ps[1]), tx.StmtxContext(ctx, ps[2])
		repeat, senderName, newest := tx.StmtxContext(ctx, ps[3]), tx.StmtxContext(ctx, ps[4]), tx.StmtxContext(ctx, ps[5])
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
