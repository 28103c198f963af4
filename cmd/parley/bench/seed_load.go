package bench

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
)

// progressEveryRows is how often a load publishes its row count and checks
// for cancellation.
const progressEveryRows = 10_000

// pgLoader loads with COPY, one transaction per table.
type pgLoader struct{ db *sql.DB }

func openPGLoader(ctx context.Context, databaseURL string) (*pgLoader, error) {
	db, err := sql.Open("postgres", databaseURL)
	if err != nil {
		return nil, fmt.Errorf("opening PostgreSQL: %w", err)
	}
	db.SetMaxOpenConns(2)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening PostgreSQL: %w", err)
	}
	return &pgLoader{db: db}, nil
}

func (l *pgLoader) sqlDB() *sql.DB { return l.db }
func (l *pgLoader) close() error   { return l.db.Close() }

func (l *pgLoader) load(ctx context.Context, t seedTable, rows *atomic.Int64) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	fks, err := dropForeignKeys(ctx, tx, t.name)
	if err != nil {
		return err
	}
	// What pq.CopyIn builds, written out (lib/pq deprecates the builder).
	stmt, err := tx.PrepareContext(ctx, "COPY "+quoteIdents(t.name)+" ("+quoteIdents(t.cols...)+") FROM STDIN")
	if err != nil {
		return err
	}
	defer stmt.Close()
	d := make([]any, len(t.cols))
	var n int64
	for t.next(d) {
		// Errors of a COPY row surface on a later Exec or on the final one.
		if _, err := stmt.ExecContext(ctx, d...); err != nil {
			return err
		}
		if n++; n%progressEveryRows == 0 {
			rows.Store(n)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		return err
	}
	rows.Store(n)
	if err := stmt.Close(); err != nil {
		return err
	}
	for _, fk := range fks {
		if _, err := tx.ExecContext(ctx, "ALTER TABLE "+quoteIdents(t.name)+" ADD CONSTRAINT "+quoteIdents(fk.name)+" "+fk.def); err != nil {
			return fmt.Errorf("restoring %s: %w", fk.name, err)
		}
	}
	return tx.Commit()
}

type foreignKey struct{ name, def string }

// dropForeignKeys drops table's foreign keys inside tx, for the caller to
// add back (same names and definitions, from pg_constraint) before the
// commit. A foreign key checked row by row costs a queued trigger per row
// (8M reads: minutes); added back, it is checked in one join, as
// PostgreSQL's "Populating a Database" advises. Nothing outside the
// transaction ever sees the table without them.
func dropForeignKeys(ctx context.Context, tx *sql.Tx, table string) ([]foreignKey, error) {
	rows, err := tx.QueryContext(ctx, `SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = $1::regclass AND contype = 'f' ORDER BY conname`, quoteIdents(table))
	if err != nil {
		return nil, fmt.Errorf("reading the foreign keys of %s: %w", table, err)
	}
	var fks []foreignKey
	for rows.Next() {
		var fk foreignKey
		if err := rows.Scan(&fk.name, &fk.def); err != nil {
			rows.Close()
			return nil, err
		}
		fks = append(fks, fk)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, fk := range fks {
		if _, err := tx.ExecContext(ctx, "ALTER TABLE "+quoteIdents(table)+" DROP CONSTRAINT "+quoteIdents(fk.name)); err != nil {
			return nil, fmt.Errorf("dropping %s for the load: %w", fk.name, err)
		}
	}
	return fks, nil
}

// finish moves the identity sequences past the explicit ids and gives the
// planner statistics and the visibility map (index-only scans) as
// autovacuum would on a database that grew by itself.
func (l *pgLoader) finish(ctx context.Context) error {
	for _, t := range []string{"users", "matters", "messages"} {
		q := fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%s', 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM %s`, t, quoteIdents(t))
		if _, err := l.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("moving the %s id sequence: %w", t, err)
		}
	}
	if _, err := l.db.ExecContext(ctx, "VACUUM ANALYZE users, matters, members, messages, read_positions, read_ranges, message_reads"); err != nil {
		return fmt.Errorf("vacuum analyze: %w", err)
	}
	return nil
}

// sqliteLoader loads with multi-row INSERTs in large transactions on one
// connection.
type sqliteLoader struct{ db *sql.DB }

// The embedded database's DSN for loading: persistence's pragmas and time
// format (so times read back as the store writes them), except that
// foreign keys are not checked, since the rows are consistent by
// construction, and commits are not synced, since a load that dies is
// simply run again on a fresh database.
func openSQLiteLoader(ctx context.Context, path string) (*sqliteLoader, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(0)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(OFF)")
	q.Add("_pragma", "cache_size(-131072)") // 128 MiB for the indexes being built
	q.Set("_time_format", "sqlite")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &sqliteLoader{db: db}, nil
}

func (l *sqliteLoader) sqlDB() *sql.DB { return l.db }
func (l *sqliteLoader) close() error   { return l.db.Close() }

// Rows per INSERT statement (under SQLite's 32,766 bound variables) and per
// transaction.
const (
	sqliteMaxVars   = 30_000
	sqliteRowsPerTx = 200_000
)

func (l *sqliteLoader) load(ctx context.Context, t seedTable, rows *atomic.Int64) error {
	perStmt := min(500, sqliteMaxVars/len(t.cols))
	insert := func(n int) string {
		one := "(" + strings.TrimSuffix(strings.Repeat("?,", len(t.cols)), ",") + ")"
		return "INSERT INTO " + quoteIdents(t.name) + " (" + quoteIdents(t.cols...) + ") VALUES " +
			strings.TrimSuffix(strings.Repeat(one+",", n), ",")
	}
	args := make([]any, 0, perStmt*len(t.cols))
	d := make([]any, len(t.cols))
	var total, inTx int64
	var tx *sql.Tx
	var full *sql.Stmt
	defer func() {
		if tx != nil {
			tx.Rollback()
		}
	}()
	flush := func(last bool) error {
		if len(args) == 0 && !last {
			return nil
		}
		if tx == nil && len(args) > 0 {
			var err error
			if tx, err = l.db.BeginTx(ctx, nil); err != nil {
				return err
			}
			if full, err = tx.PrepareContext(ctx, insert(perStmt)); err != nil {
				return err
			}
		}
		if n := len(args) / len(t.cols); n == perStmt {
			if _, err := full.ExecContext(ctx, args...); err != nil {
				return err
			}
		} else if n > 0 {
			if _, err := tx.ExecContext(ctx, insert(n), args...); err != nil {
				return err
			}
		}
		total += int64(len(args) / len(t.cols))
		inTx += int64(len(args) / len(t.cols))
		args = args[:0]
		rows.Store(total)
		if tx != nil && (last || inTx >= sqliteRowsPerTx) {
			inTx = 0
			full.Close()
			err := tx.Commit()
			tx, full = nil, nil
			if err != nil {
				return err
			}
		}
		return ctx.Err()
	}
	for t.next(d) {
		args = append(args, d...)
		if len(args) == cap(args) {
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	return flush(true)
}

// finish folds the write-ahead log into the database file.
func (l *sqliteLoader) finish(ctx context.Context) error {
	if _, err := l.db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// quoteIdents double-quotes SQL identifiers (the same in both dialects) and
// joins them with commas.
func quoteIdents(names ...string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = `"` + strings.ReplaceAll(n, `"`, `""`) + `"`
	}
	return strings.Join(q, ", ")
}
