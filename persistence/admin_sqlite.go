package persistence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

func (s *sqliteStore) CreateUserWith(ctx context.Context, nu NewUser) (User, error) {
	u := User{Name: nu.Name, Email: normalizeEmail(nu.Email), PasswordHash: nu.PasswordHash,
		ExternalID: nu.ExternalID, CreatedAt: dbTime(time.Now())}
	res, err := s.w.ExecContext(ctx,
		`INSERT INTO users (name, email, password_hash, external_id, created_at) VALUES (?, ?, ?, ?, ?)`,
		u.Name, u.Email, u.PasswordHash, u.ExternalID, u.CreatedAt)
	if sqliteIsUnique(err) {
		return User{}, fmt.Errorf("persistence: user %q: %w", u.Email, conflictField(err.Error()))
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: create user: %w", err)
	}
	if u.ID, err = res.LastInsertId(); err != nil {
		return User{}, fmt.Errorf("persistence: create user: %w", err)
	}
	return u, nil
}

// userPatchSet renders a patch as SET assignments with "?" placeholders.
func userPatchSet(p UserPatch) (set []string, args []any) {
	if p.Name != nil {
		set, args = append(set, "name = ?"), append(args, *p.Name)
	}
	if p.Email != nil {
		set, args = append(set, "email = ?"), append(args, normalizeEmail(*p.Email))
	}
	if p.PasswordHash != nil {
		set, args = append(set, "password_hash = ?"), append(args, *p.PasswordHash)
	}
	switch {
	case p.ClearExternalID:
		set = append(set, "external_id = NULL")
	case p.ExternalID != nil:
		set, args = append(set, "external_id = ?"), append(args, *p.ExternalID)
	}
	return set, args
}

func (s *sqliteStore) UpdateUser(ctx context.Context, id int64, p UserPatch) (User, error) {
	var u User
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		if set, args := userPatchSet(p); len(set) > 0 {
			res, err := tx.ExecContext(ctx, `UPDATE users SET `+strings.Join(set, ", ")+` WHERE id = ? AND deleted_at IS NULL`,
				append(args, id)...)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return sql.ErrNoRows
			}
		}
		return tx.GetContext(ctx, &u, `SELECT `+sqliteUserCols+` FROM users WHERE id = ? AND deleted_at IS NULL`, id)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("persistence: user %d: %w", id, ErrNotFound)
	}
	if sqliteIsUnique(err) {
		return User{}, fmt.Errorf("persistence: update user %d: %w", id, conflictField(err.Error()))
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: update user: %w", err)
	}
	u.utc()
	return u, nil
}

func (s *sqliteStore) DeleteUser(ctx context.Context, id int64) ([]int64, error) {
	matters := []int64{}
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET name = ?, email = ?, password_hash = '', external_id = NULL, deleted_at = ?
			WHERE id = ? AND deleted_at IS NULL`, DeletedUserName, deletedEmail(id), dbTime(time.Now()), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return sql.ErrNoRows
		}
		if err := tx.SelectContext(ctx, &matters, `SELECT matter_id FROM members WHERE user_id = ? ORDER BY matter_id`, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM members WHERE user_id = ?`, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = ?`, id)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("persistence: user %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("persistence: delete user: %w", err)
	}
	return matters, nil
}

func (s *sqliteStore) ListUsers(ctx context.Context, q UserQuery) ([]User, error) {
	where := []string{"deleted_at IS NULL", "id > ?"}
	args := []any{q.AfterID}
	if q.Email != "" {
		where, args = append(where, "email = ?"), append(args, normalizeEmail(q.Email))
	}
	if q.ExternalID != "" {
		where, args = append(where, "external_id = ?"), append(args, q.ExternalID)
	}
	us := []User{}
	err := s.r.SelectContext(ctx, &us, `SELECT `+sqliteUserCols+` FROM users WHERE `+strings.Join(where, " AND ")+
		` ORDER BY id LIMIT ?`, append(args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("persistence: list users: %w", err)
	}
	for i := range us {
		us[i].utc()
	}
	return us, nil
}

func (s *sqliteStore) ListTokens(ctx context.Context, userID int64) ([]Token, error) {
	ts := []Token{}
	err := s.r.SelectContext(ctx, &ts, `SELECT id, user_id, secret_hash, expires_at, last_used_at, created_at
		FROM tokens WHERE user_id = ? ORDER BY id`, userID)
	if err != nil {
		return nil, fmt.Errorf("persistence: list tokens: %w", err)
	}
	for i := range ts {
		ts[i].utc()
	}
	return ts, nil
}

func (s *sqliteStore) DeleteUserTokens(ctx context.Context, userID int64) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = ?`, userID)
	if err != nil {
		return 0, fmt.Errorf("persistence: delete tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("persistence: delete tokens: %w", err)
	}
	return int(n), nil
}

// sqliteActiveUsers returns which of ids are users that are not deleted.
func sqliteActiveUsers(ctx context.Context, tx *sqlx.Tx, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	q, args, err := sqlx.In(`SELECT id FROM users WHERE deleted_at IS NULL AND id IN (?)`, ids)
	if err != nil {
		return nil, err
	}
	var found []int64
	err = tx.SelectContext(ctx, &found, q, args...)
	return found, err
}

func (s *sqliteStore) CreateMatterWith(ctx context.Context, title string, memberIDs []int64) (Matter, error) {
	m := Matter{Title: title, CreatedAt: dbTime(time.Now())}
	var missing []int64
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		found, err := sqliteActiveUsers(ctx, tx, memberIDs)
		if err != nil {
			return err
		}
		if missing = missingIDs(memberIDs, found); len(missing) > 0 {
			return sql.ErrNoRows
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO matters (title, created_at) VALUES (?, ?)`, m.Title, m.CreatedAt)
		if err != nil {
			return err
		}
		if m.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		for _, uid := range memberIDs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO members (matter_id, user_id, joined_at) VALUES (?, ?, ?)
				ON CONFLICT DO NOTHING`, m.ID, uid, m.CreatedAt); err != nil {
				return err
			}
		}
		return nil
	})
	if len(missing) > 0 {
		return Matter{}, &MissingUsersError{IDs: missing}
	}
	if err != nil {
		return Matter{}, fmt.Errorf("persistence: create matter: %w", err)
	}
	return m, nil
}

func (s *sqliteStore) UpdateMatter(ctx context.Context, id int64, title string) (Matter, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE matters SET title = ? WHERE id = ?`, title, id)
	if err := affectedOne(res, err, "update matter", "matter", id); err != nil {
		return Matter{}, err
	}
	var m Matter
	if err := s.w.GetContext(ctx, &m, `SELECT id, title, created_at FROM matters WHERE id = ?`, id); err != nil {
		return Matter{}, fmt.Errorf("persistence: update matter: %w", err)
	}
	m.utc()
	return m, nil
}

func (s *sqliteStore) DeleteMatter(ctx context.Context, id int64) ([]int64, error) {
	members := []int64{}
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		if err := tx.SelectContext(ctx, &members, `SELECT user_id FROM members WHERE matter_id = ? ORDER BY user_id`, id); err != nil {
			return err
		}
		// The foreign keys cascade to members, messages and their receipts.
		res, err := tx.ExecContext(ctx, `DELETE FROM matters WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return sql.ErrNoRows
		}
		return nil
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("persistence: matter %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("persistence: delete matter: %w", err)
	}
	return members, nil
}

func (s *sqliteStore) ListMatters(ctx context.Context, q MatterQuery) ([]Matter, error) {
	ms := []Matter{}
	var err error
	if q.UserID > 0 {
		err = s.r.SelectContext(ctx, &ms, `SELECT m.id, m.title, m.created_at
			FROM members mm JOIN matters m ON m.id = mm.matter_id
			WHERE mm.user_id = ? AND m.id > ? ORDER BY m.id LIMIT ?`, q.UserID, q.AfterID, q.Limit)
	} else {
		err = s.r.SelectContext(ctx, &ms, `SELECT id, title, created_at FROM matters WHERE id > ? ORDER BY id LIMIT ?`,
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

func (s *sqliteStore) MatterMembers(ctx context.Context, matterID int64) ([]User, error) {
	us := []User{}
	err := s.r.SelectContext(ctx, &us, `SELECT u.id, u.name, u.email, u.password_hash, u.created_at, u.external_id, u.deleted_at
		FROM members mm JOIN users u ON u.id = mm.user_id WHERE mm.matter_id = ? ORDER BY u.id`, matterID)
	if err != nil {
		return nil, fmt.Errorf("persistence: matter members: %w", err)
	}
	for i := range us {
		us[i].utc()
	}
	return us, nil
}

func (s *sqliteStore) AddActiveMember(ctx context.Context, matterID, userID int64) (bool, error) {
	return s.changeMember(ctx, matterID, userID, true, "add member",
		`INSERT INTO members (matter_id, user_id, joined_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, matterID, userID, dbTime(time.Now()))
}

func (s *sqliteStore) RemoveMember(ctx context.Context, matterID, userID int64) (bool, error) {
	return s.changeMember(ctx, matterID, userID, false, "remove member",
		`DELETE FROM members WHERE matter_id = ? AND user_id = ?`, matterID, userID)
}

// changeMember runs query, which adds or removes the membership, once the
// matter and the user (not deleted, if active) are known to exist, and
// reports whether it changed a row.
func (s *sqliteStore) changeMember(ctx context.Context, matterID, userID int64, active bool, what, query string, args ...any) (bool, error) {
	var changed bool
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		if err := sqliteMatterAndUser(ctx, tx, matterID, userID, active); err != nil {
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
	if err != nil {
		return false, fmt.Errorf("persistence: %s: %w", what, err)
	}
	return changed, nil
}

// sqliteMatterAndUser returns ErrNotFound naming what is missing: the matter,
// or the user (also when deleted, if active).
func sqliteMatterAndUser(ctx context.Context, tx *sqlx.Tx, matterID, userID int64, active bool) error {
	var ok bool
	if err := tx.GetContext(ctx, &ok, `SELECT EXISTS (SELECT 1 FROM matters WHERE id = ?)`, matterID); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("persistence: matter %d: %w", matterID, ErrNoSuchMatter)
	}
	q := `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`
	if active {
		q = `SELECT EXISTS (SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL)`
	}
	if err := tx.GetContext(ctx, &ok, q, userID); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("persistence: user %d: %w", userID, ErrNoSuchUser)
	}
	return nil
}
