package persistence

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Migrations are numbered files "NNNN_name.sql", one directory per dialect.
// Each is applied once, in its own transaction together with its
// schema_migrations row, so a failed file leaves no half-applied schema.
//
//go:embed migrations/postgres/*.sql migrations/sqlite/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the dialect's files sorted by version. Duplicate or
// malformed versions are an error rather than being skipped, since a silently
// ignored file would leave the schema behind the code.
func loadMigrations(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, fmt.Errorf("persistence: read migrations: %w", err)
	}
	var out []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		prefix, _, ok := strings.Cut(name, "_")
		if !ok {
			return nil, fmt.Errorf("persistence: migration %s: name must be NNNN_name.sql", name)
		}
		v, err := strconv.Atoi(prefix)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("persistence: migration %s: bad version %q", name, prefix)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("persistence: migrations %s and %s share version %d", other, name, v)
		}
		seen[v] = name
		body, err := fs.ReadFile(migrationFiles, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("persistence: read migration %s: %w", name, err)
		}
		out = append(out, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// Migrate applies each pending file in its own write transaction, which
// first takes the dialect's migration lock (PostgreSQL: an advisory lock;
// SQLite: BEGIN IMMEDIATE's write lock already), so stores migrating at once
// serialise and the loser sees the winner's version row.
func (s *sqlStore) Migrate(ctx context.Context) error {
	for _, m := range s.migrations {
		if err := s.writeTx(ctx, func(tx *sqlx.Tx) error { return s.migrateOne(ctx, tx, m) }); err != nil {
			return fmt.Errorf("persistence: migrate %s: %w", m.name, err)
		}
	}
	return nil
}

func (s *sqlStore) migrateOne(ctx context.Context, tx *sqlx.Tx, m migration) error {
	if s.d.migrationLock != "" {
		if _, err := tx.ExecContext(ctx, s.d.migrationLock); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at `+s.d.timestamp+` NOT NULL
	)`); err != nil {
		return err
	}
	var applied bool
	if err := tx.GetContext(ctx, &applied,
		s.rebind(`SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`), m.version); err != nil {
		return err
	}
	if applied {
		return nil
	}
	// Without arguments lib/pq uses the simple query protocol, which runs a
	// multi-statement file; so does the SQLite driver.
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx,
		s.rebind(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), m.version, dbTime(time.Now()))
	return err
}
