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
)

// Conflicts of the admin operations say which unique field is taken; both
// wrap ErrConflict.
var (
	ErrEmailTaken      = fmt.Errorf("email %w", ErrConflict)
	ErrExternalIDTaken = fmt.Errorf("external_id %w", ErrConflict)
)

// Which of a matter and a user is missing, for the membership operations;
// both wrap ErrNotFound.
var (
	ErrNoSuchMatter = fmt.Errorf("matter %w", ErrNotFound)
	ErrNoSuchUser   = fmt.Errorf("user %w", ErrNotFound)
)

// NewUser is a user to create. PasswordHash "" makes a user who cannot log
// in (an application's own users, who only get tokens issued for them).
type NewUser struct {
	Name         string
	Email        string
	PasswordHash string
	ExternalID   *string // nil: none
}

// UserPatch changes some of a user's fields; nil fields stay as they are.
type UserPatch struct {
	Name         *string
	Email        *string
	PasswordHash *string
	// ExternalID sets the external id; ClearExternalID removes it.
	ExternalID      *string
	ClearExternalID bool
}

// UserQuery selects a page of users that are not deleted, by ascending id.
type UserQuery struct {
	Email      string // exact, case-insensitive; "" for any
	ExternalID string // exact; "" for any
	AfterID    int64  // ids above it
	Limit      int    // page size, caller validates 1..100
}

// MatterQuery selects a page of matters by ascending id.
type MatterQuery struct {
	UserID  int64 // >0: only matters the user belongs to
	AfterID int64 // ids above it
	Limit   int   // page size, caller validates 1..100
}

// AdminStore is what the admin API and the admin commands need beyond the
// chat's own operations. Deleted users count as missing everywhere here
// (ErrNotFound) except UserByID, which returns them with DeletedAt set.
type AdminStore interface {
	// CreateUserWith inserts a user; ErrEmailTaken or ErrExternalIDTaken on a conflict.
	CreateUserWith(ctx context.Context, u NewUser) (User, error)
	// UpdateUser applies the patch; ErrNotFound for a missing or deleted user, ErrEmailTaken or ErrExternalIDTaken on a conflict.
	UpdateUser(ctx context.Context, id int64, p UserPatch) (User, error)
	// DeleteUser revokes the user's tokens, removes their devices and memberships and anonymises the row, in one transaction; it returns the matters they were a member of. ErrNotFound if missing or already deleted.
	DeleteUser(ctx context.Context, id int64) (matterIDs []int64, err error)
	// ListUsers returns a page of users that are not deleted.
	ListUsers(ctx context.Context, q UserQuery) ([]User, error)

	// ListTokens lists the user's tokens by ascending id (empty if none).
	ListTokens(ctx context.Context, userID int64) ([]Token, error)
	// DeleteUserTokens revokes every token of the user and says how many there were.
	DeleteUserTokens(ctx context.Context, userID int64) (int, error)

	// CreateMatterWith inserts a matter and its members in one transaction; ErrNotFound (naming the ids) if a member is missing or deleted.
	CreateMatterWith(ctx context.Context, title string, memberIDs []int64) (Matter, error)
	// UpdateMatter sets the title; ErrNotFound if the matter is missing.
	UpdateMatter(ctx context.Context, id int64, title string) (Matter, error)
	// DeleteMatter removes the matter with its members, messages and receipts and returns who its members were; ErrNotFound if missing.
	DeleteMatter(ctx context.Context, id int64) (memberIDs []int64, err error)
	// ListMatters returns a page of matters.
	ListMatters(ctx context.Context, q MatterQuery) ([]Matter, error)
	// MatterMembers lists the matter's members by ascending id (empty if none).
	MatterMembers(ctx context.Context, matterID int64) ([]User, error)
	// AddActiveMember is AddMember that also refuses a deleted user (ErrNotFound); added is false when the user was a member already.
	AddActiveMember(ctx context.Context, matterID, userID int64) (added bool, err error)
	// RemoveMember removes the user from the matter; removed is false when they were not a member. ErrNotFound if the matter or user is missing.
	RemoveMember(ctx context.Context, matterID, userID int64) (removed bool, err error)
}

// deletedEmail is the anonymised email of deleted user id: unique, and in
// the .invalid domain, so it can never receive mail or match a login.
func deletedEmail(id int64) string { return fmt.Sprintf("deleted-user-%d@parley.invalid", id) }

// DeletedUserName is the name a deleted user's messages show.
const DeletedUserName = "Deleted user"

// conflictField maps a unique violation's constraint or message to the
// field's sentinel.
func conflictField(detail string) error {
	if strings.Contains(detail, "external_id") {
		return ErrExternalIDTaken
	}
	return ErrEmailTaken
}

// missingIDs lists the wanted ids not in found.
func missingIDs(want, found []int64) []int64 {
	have := make(map[int64]bool, len(found))
	for _, id := range found {
		have[id] = true
	}
	var out []int64
	for _, id := range want {
		if !have[id] {
			out = append(out, id)
			have[id] = true
		}
	}
	return out
}

// MissingUsersError names the member ids of CreateMatterWith that are
// missing or deleted; it wraps ErrNotFound.
type MissingUsersError struct{ IDs []int64 }

func (e *MissingUsersError) Error() string {
	return fmt.Sprintf("persistence: users %v: %v", e.IDs, ErrNotFound)
}

func (e *MissingUsersError) Unwrap() error { return ErrNotFound }

func (s *sqlStore) CreateUserWith(ctx context.Context, nu NewUser) (User, error) {
	var u User
	email := normalizeEmail(nu.Email)
	err := s.w.GetContext(ctx, &u, s.rebind(`INSERT INTO users (name, email, password_hash, external_id, created_at)
		VALUES (?, ?, ?, ?, ?) RETURNING `+userCols), nu.Name, email, nu.PasswordHash, nu.ExternalID, dbTime(time.Now()))
	if s.d.isUnique(err) {
		return User{}, fmt.Errorf("persistence: user %q: %w", email, conflictField(err.Error()))
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: create user: %w", err)
	}
	u.utc()
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

func (s *sqlStore) UpdateUser(ctx context.Context, id int64, p UserPatch) (User, error) {
	var u User
	var err error
	if set, args := userPatchSet(p); len(set) > 0 {
		err = s.w.GetContext(ctx, &u, s.rebind(`UPDATE users SET `+strings.Join(set, ", ")+
			` WHERE id = ? AND deleted_at IS NULL RETURNING `+userCols), append(args, id)...)
	} else {
		err = s.r.GetContext(ctx, &u, s.rebind(`SELECT `+userCols+` FROM users WHERE id = ? AND deleted_at IS NULL`), id)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("persistence: user %d: %w", id, ErrNotFound)
	}
	if s.d.isUnique(err) {
		return User{}, fmt.Errorf("persistence: update user %d: %w", id, conflictField(err.Error()))
	}
	if err != nil {
		return User{}, fmt.Errorf("persistence: update user: %w", err)
	}
	u.utc()
	return u, nil
}

func (s *sqlStore) DeleteUser(ctx context.Context, id int64) ([]int64, error) {
	matters := []int64{}
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		// On PostgreSQL the row lock taken here makes AddActiveMember (FOR
		// SHARE) wait and then see the user deleted.
		n, err := rowsAffected(tx.ExecContext(ctx, s.rebind(`UPDATE users SET name = ?, email = ?, password_hash = '', external_id = NULL, deleted_at = ?
			WHERE id = ? AND deleted_at IS NULL`), DeletedUserName, deletedEmail(id), dbTime(time.Now()), id))
		if err != nil {
			return err
		} else if n == 0 {
			return sql.ErrNoRows
		}
		if err := tx.SelectContext(ctx, &matters,
			s.rebind(`DELETE FROM members WHERE user_id = ? RETURNING matter_id`), id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM devices WHERE user_id = ?`), id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.rebind(`DELETE FROM tokens WHERE user_id = ?`), id)
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

func (s *sqlStore) ListUsers(ctx context.Context, q UserQuery) ([]User, error) {
	where := []string{"deleted_at IS NULL", "id > ?"}
	args := []any{q.AfterID}
	if q.Email != "" {
		where, args = append(where, s.d.emailIs), append(args, normalizeEmail(q.Email))
	}
	if q.ExternalID != "" {
		where, args = append(where, "external_id = ?"), append(args, q.ExternalID)
	}
	us := []User{}
	err := s.r.SelectContext(ctx, &us, s.rebind(`SELECT `+userCols+` FROM users WHERE `+strings.Join(where, " AND ")+
		` ORDER BY id LIMIT ?`), append(args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("persistence: list users: %w", err)
	}
	for i := range us {
		us[i].utc()
	}
	return us, nil
}

func (s *sqlStore) ListTokens(ctx context.Context, userID int64) ([]Token, error) {
	ts := []Token{}
	if err := s.r.SelectContext(ctx, &ts, s.rebind(`SELECT `+tokenCols+` FROM tokens WHERE user_id = ? ORDER BY id`), userID); err != nil {
		return nil, fmt.Errorf("persistence: list tokens: %w", err)
	}
	for i := range ts {
		ts[i].utc()
	}
	return ts, nil
}

func (s *sqlStore) DeleteUserTokens(ctx context.Context, userID int64) (int, error) {
	n, err := rowsAffected(s.w.ExecContext(ctx, s.rebind(`DELETE FROM tokens WHERE user_id = ?`), userID))
	if err != nil {
		return 0, fmt.Errorf("persistence: delete tokens: %w", err)
	}
	return int(n), nil
}

func (s *sqlStore) CreateMatterWith(ctx context.Context, title string, memberIDs []int64) (Matter, error) {
	var m Matter
	var missing []int64
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		in, ids := s.d.inIDs("id", memberIDs)
		if len(memberIDs) > 0 {
			var found []int64
			// FOR SHARE waits for a concurrent DeleteUser and sees its outcome.
			if err := tx.SelectContext(ctx, &found, s.rebind(`SELECT id FROM users WHERE `+in+` AND deleted_at IS NULL`+
				s.lock(` FOR SHARE`)), ids...); err != nil {
				return err
			}
			if missing = missingIDs(memberIDs, found); len(missing) > 0 {
				return sql.ErrNoRows
			}
		}
		if err := tx.GetContext(ctx, &m, s.rebind(`INSERT INTO matters (title, created_at) VALUES (?, ?) RETURNING `+matterCols),
			title, dbTime(time.Now())); err != nil {
			return err
		}
		if len(memberIDs) > 0 {
			// The users were just found (and, on PostgreSQL, locked): each
			// joins once, whatever the repeats in memberIDs.
			_, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO members (matter_id, user_id, joined_at)
				SELECT ?, id, ? FROM users WHERE `+in+` ON CONFLICT DO NOTHING`), append([]any{m.ID, m.CreatedAt}, ids...)...)
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

func (s *sqlStore) UpdateMatter(ctx context.Context, id int64, title string) (Matter, error) {
	return getOne[Matter](ctx, s.w, "matter", id, "update matter",
		s.rebind(`UPDATE matters SET title = ? WHERE id = ? RETURNING `+matterCols), title, id)
}

func (s *sqlStore) DeleteMatter(ctx context.Context, id int64) ([]int64, error) {
	members := []int64{}
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		// Locking the matter first waits for sends in progress (they hold it
		// FOR NO KEY UPDATE) and keeps new members out meanwhile.
		var found int64
		if err := tx.GetContext(ctx, &found, s.rebind(`SELECT id FROM matters WHERE id = ?`+s.lock(` FOR UPDATE`)), id); err != nil {
			return err
		}
		if err := tx.SelectContext(ctx, &members, s.rebind(`SELECT user_id FROM members WHERE matter_id = ? ORDER BY user_id`), id); err != nil {
			return err
		}
		// The foreign keys cascade to members, messages and their receipts.
		_, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM matters WHERE id = ?`), id)
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

func (s *sqlStore) ListMatters(ctx context.Context, q MatterQuery) ([]Matter, error) {
	ms, err := s.matters(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("persistence: list matters: %w", err)
	}
	return ms, nil
}

func (s *sqlStore) MatterMembers(ctx context.Context, matterID int64) ([]User, error) {
	us := []User{}
	err := s.r.SelectContext(ctx, &us, s.rebind(`SELECT u.id, u.name, u.email, u.password_hash, u.created_at, u.external_id, u.deleted_at
		FROM members mm JOIN users u ON u.id = mm.user_id WHERE mm.matter_id = ? ORDER BY u.id`), matterID)
	if err != nil {
		return nil, fmt.Errorf("persistence: matter members: %w", err)
	}
	for i := range us {
		us[i].utc()
	}
	return us, nil
}

func (s *sqlStore) AddActiveMember(ctx context.Context, matterID, userID int64) (bool, error) {
	return s.changeMember(ctx, matterID, userID, true, "add member",
		`INSERT INTO members (matter_id, user_id, joined_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, matterID, userID, dbTime(time.Now()))
}

func (s *sqlStore) RemoveMember(ctx context.Context, matterID, userID int64) (bool, error) {
	return s.changeMember(ctx, matterID, userID, false, "remove member",
		`DELETE FROM members WHERE matter_id = ? AND user_id = ?`, matterID, userID)
}

// changeMember runs query, which adds or removes the membership, once the
// matter and the user (not deleted, if active) are known to exist, and
// reports whether it changed a row.
func (s *sqlStore) changeMember(ctx context.Context, matterID, userID int64, active bool, what, query string, args ...any) (bool, error) {
	var changed bool
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		if err := s.matterAndUser(ctx, tx, matterID, userID, active); err != nil {
			return err
		}
		n, err := rowsAffected(tx.ExecContext(ctx, s.rebind(query), args...))
		changed = n == 1
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return false, err
	}
	if s.d.isForeignKey(err) {
		// The matter was deleted after the check (PostgreSQL).
		return false, fmt.Errorf("persistence: matter %d: %w", matterID, ErrNoSuchMatter)
	}
	if err != nil {
		return false, fmt.Errorf("persistence: %s: %w", what, err)
	}
	return changed, nil
}

// matterAndUser returns ErrNotFound naming what is missing: the matter, or
// the user (also when deleted, if active; on PostgreSQL after waiting out a
// DeleteUser in progress).
func (s *sqlStore) matterAndUser(ctx context.Context, tx *sqlx.Tx, matterID, userID int64, active bool) error {
	var ok bool
	if err := tx.GetContext(ctx, &ok, s.rebind(`SELECT EXISTS (SELECT 1 FROM matters WHERE id = ?)`), matterID); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("persistence: matter %d: %w", matterID, ErrNoSuchMatter)
	}
	q := `SELECT id FROM users WHERE id = ?`
	if active {
		q += ` AND deleted_at IS NULL` + s.lock(` FOR SHARE`)
	}
	var id int64
	err := tx.GetContext(ctx, &id, s.rebind(q), userID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("persistence: user %d: %w", userID, ErrNoSuchUser)
	}
	return err
}
