package persistence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

// pgTx runs fn in a transaction.
func (s *pgStore) pgTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *pgStore) CreateUserWith(ctx context.Context, nu NewUser) (User, error) {
	var u User
	email := normalizeEmail(nu.Email)
	err := s.db.GetContext(ctx, &u, `INSERT INTO users (name, email, password_hash, external_id, created_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+pgUserCols, nu.Name, email, nu.PasswordHash, nu.ExternalID, dbTime(time.Now()))
	if pgIs(err, pqerror.UniqueViolation) {
		return User{}, fmt.Errorf("persistence: user %q: %w", email, conflictField(err.Error()))
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: create user: %w", err)
	}
	u.utc()
	return u, nil
}

func (s *pgStore) UpdateUser(ctx context.Context, id int64, p UserPatch) (User, error) {
	var u User
	var err error
	if set, args := userPatchSet(p); len(set) > 0 {
		err = s.db.GetContext(ctx, &u, s.db.Rebind(`UPDATE users SET `+strings.Join(set, ", ")+
			` WHERE id = ? AND deleted_at IS NULL RETURNING `+pgUserCols), append(args, id)...)
	} else {
		err = s.db.GetContext(ctx, &u, `SELECT `+pgUserCols+` FROM users WHERE id = $1 AND deleted_at IS NULL`, id)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("persistence: user %d: %w", id, ErrNotFound)
	}
	if pgIs(err, pqerror.UniqueViolation) {
		return User{}, fmt.Errorf("persistence: update user %d: %w", id, conflictField(err.Error()))
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: update user: %w", err)
	}
	u.utc()
	return u, nil
}

func (s *pgStore) DeleteUser(ctx context.Context, id int64) ([]int64, error) {
	matters := []int64{}
	err := s.pgTx(ctx, func(tx *sqlx.Tx) error {
		// The row lock taken here makes AddActiveMember (FOR SHARE) wait and
		// then see the user deleted.
		res, err := tx.ExecContext(ctx, `UPDATE users SET name = $1, email = $2, password_hash = '', external_id = NULL, deleted_at = $3
			WHERE id = $4 AND deleted_at IS NULL`, DeletedUserName, deletedEmail(id), dbTime(time.Now()), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return sql.ErrNoRows
		}
		if err := tx.SelectContext(ctx, &matters,
			`DELETE FROM members WHERE user_id = $1 RETURNING matter_id`, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1`, id)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("persistence: user %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("persistence: delete user: %w", err)
	}
	slices.Sort(matters)
	return matters, nil
}

func (s *pgStore) ListUsers(ctx context.Context, q UserQuery) ([]User, error) {
	where := []string{"deleted_at IS NULL", "id > ?"}
	args := []any{q.AfterID}
	if q.Email != "" {
		// lower() matches the unique index users_email_lower_key.
		where, args = append(where, "lower(email) = lower(?)"), append(args, normalizeEmail(q.Email))
	}
	if q.ExternalID != "" {
		where, args = append(where, "external_id = ?"), append(args, q.ExternalID)
	}
	us := []User{}
	err := s.db.SelectContext(ctx, &us, s.db.Rebind(`SELECT `+pgUserCols+` FROM users WHERE `+strings.Join(where, " AND ")+
		` ORDER BY id LIMIT ?`), append(args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("persistence: list users: %w", err)
	}
	for i := range us {
		us[i].utc()
	}
	return us, nil
}

func (s *pgStore) ListTokens(ctx context.Context, userID int64) ([]Token, error) {
	ts := []Token{}
	if err := s.db.SelectContext(ctx, &ts, `SELECT `+pgTokenCols+` FROM tokens WHERE user_id = $1 ORDER BY id`, userID); err != nil {
		return nil, fmt.Errorf("persistence: list tokens: %w", err)
	}
	for i := range ts {
		ts[i].utc()
	}
	return ts, nil
}

func (s *pgStore) DeleteUserTokens(ctx context.Context, userID int64) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1`, userID)
	if err != nil {
		return 0, fmt.Errorf("persistence: delete tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("persistence: delete tokens: %w", err)
	}
	return int(n), nil
}

func (s *pgStore) CreateMatterWith(ctx context.Context, title string, memberIDs []int64) (Matter, error) {
	var m Matter
	var missing []int64
	err := s.pgTx(ctx, func(tx *sqlx.Tx) error {
		if len(memberIDs) > 0 {
			var found []int64
			// FOR SHARE waits for a concurrent DeleteUser and sees its outcome.
			if err := tx.SelectContext(ctx, &found, `SELECT id FROM users WHERE id = ANY($1) AND deleted_at IS NULL FOR SHARE`,
				pq.Array(memberIDs)); err != nil {
				return err
			}
			if missing = missingIDs(memberIDs, found); len(missing) > 0 {
				return sql.ErrNoRows
			}
		}
		if err := tx.GetContext(ctx, &m, `INSERT INTO matters (title, created_at) VALUES ($1, $2) RETURNING id, title, created_at`,
			title, dbTime(time.Now())); err != nil {
			return err
		}
		if len(memberIDs) > 0 {
			_, err := tx.ExecContext(ctx, `INSERT INTO members (matter_id, user_id, joined_at)
				SELECT $1, u, $2 FROM unnest($3::bigint[]) AS u ON CONFLICT DO NOTHING`, m.ID, m.CreatedAt, pq.Array(memberIDs))
			return err
		}
		return nil
	})
	if len(missing) > 0 {
		return Matter{}, &MissingUsersError{IDs: missing}
	}
	if err != nil {
		return Matter{}, fmt.Errorf("persistence: create matter: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *pgStore) UpdateMatter(ctx context.Context, id int64, title string) (Matter, error) {
	var m Matter
	err := s.db.GetContext(ctx, &m, `UPDATE matters SET title = $1 WHERE id = $2 RETURNING id, title, created_at`, title, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Matter{}, fmt.Errorf("persistence: matter %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Matter{}, fmt.Errorf("persistence: update matter: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *pgStore) DeleteMatter(ctx context.Context, id int64) ([]int64, error) {
	members := []int64{}
	err := s.pgTx(ctx, func(tx *sqlx.Tx) error {
		// Locking the matter first waits for sends in progress (they hold it
		// FOR NO KEY UPDATE) and keeps new members out meanwhile.
		var found int64
		if err := tx.GetContext(ctx, &found, `SELECT id FROM matters WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		if err := tx.SelectContext(ctx, &members, `SELECT user_id FROM members WHERE matter_id = $1 ORDER BY user_id`, id); err != nil {
			return err
		}
		// The foreign keys cascade to members, messages and their receipts.
		_, err := tx.ExecContext(ctx, `DELETE FROM matters WHERE id = $1`, id)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("persistence: matter %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("persistence: delete matter: %w", err)
	}
	return members, nil
}

func (s *pgStore) ListMatters(ctx context.Context, q MatterQuery) ([]Matter, error) {
	ms := []Matter{}
	var err error
	if q.UserID > 0 {
		err = s.db.SelectContext(ctx, &ms, `SELECT m.id, m.title, m.created_at
			FROM members mm JOIN matters m ON m.id = mm.matter_id
			WHERE mm.user_id = $1 AND m.id > $2 ORDER BY m.id LIMIT $3`, q.UserID, q.AfterID, q.Limit)
	} else {
		err = s.db.SelectContext(ctx, &ms, `SELECT id, title, created_at FROM matters WHERE id > $1 ORDER BY id LIMIT $2`,
			q.AfterID, q.Limit)
	}
	if err != nil {
		return nil, fmt.Errorf("persistence: list matters: %w", err)
	}
	for i := range ms {
		ms[i].utc()
	}
	return ms, nil
}

func (s *pgStore) MatterMembers(ctx context.Context, matterID int64) ([]User, error) {
	us := []User{}
	err := s.db.SelectContext(ctx, &us, `SELECT u.id, u.name, u.email, u.password_hash, u.created_at, u.external_id, u.deleted_at
		FROM members mm JOIN users u ON u.id = mm.user_id WHERE mm.matter_id = $1 ORDER BY u.id`, matterID)
	if err != nil {
		return nil, fmt.Errorf("persistence: matter members: %w", err)
	}
	for i := range us {
		us[i].utc()
	}
	return us, nil
}

func (s *pgStore) AddActiveMember(ctx context.Context, matterID, userID int64) (bool, error) {
	return s.changeMember(ctx, matterID, userID, true, "add member",
		`INSERT INTO members (matter_id, user_id, joined_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, matterID, userID, dbTime(time.Now()))
}

func (s *pgStore) RemoveMember(ctx context.Context, matterID, userID int64) (bool, error) {
	return s.changeMember(ctx, matterID, userID, false, "remove member",
		`DELETE FROM members WHERE matter_id = $1 AND user_id = $2`, matterID, userID)
}

// changeMember runs query, which adds or removes the membership, once the
// matter and the user (not deleted, if active) are known to exist, and
// reports whether it changed a row.
func (s *pgStore) changeMember(ctx context.Context, matterID, userID int64, active bool, what, query string, args ...any) (bool, error) {
	var changed bool
	err := s.pgTx(ctx, func(tx *sqlx.Tx) error {
		if err := pgMatterAndUser(ctx, tx, matterID, userID, active); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		changed = n == 1
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return false, err
	}
	if pgIs(err, pqerror.ForeignKeyViolation) {
		// The matter was deleted after the check.
		return false, fmt.Errorf("persistence: matter %d: %w", matterID, ErrNoSuchMatter)
	}
	if err != nil {
		return false, fmt.Errorf("persistence: %s: %w", what, err)
	}
	return changed, nil
}

// pgMatterAndUser returns ErrNotFound naming what is missing: the matter, or
// the user (also when deleted, if active, after waiting out a DeleteUser in
// progress).
func pgMatterAndUser(ctx context.Context, tx *sqlx.Tx, matterID, userID int64, active bool) error {
	var ok bool
	if err := tx.GetContext(ctx, &ok, `SELECT EXISTS (SELECT 1 FROM matters WHERE id = $1)`, matterID); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("persistence: matter %d: %w", matterID, ErrNoSuchMatter)
	}
	q := `SELECT id FROM users WHERE id = $1`
	if active {
		q = `SELECT id FROM users WHERE id = $1 AND deleted_at IS NULL FOR SHARE`
	}
	var id int64
	err := tx.GetContext(ctx, &id, q, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("persistence: user %d: %w", userID, ErrNoSuchUser)
	}
	return err
}
