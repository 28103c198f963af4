package persistence

import (
	"context"
	"fmt"
	"strings"
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
	// DeleteUser revokes the user's tokens, removes their memberships and anonymises the row, in one transaction; it returns the matters they were a member of. ErrNotFound if missing or already deleted.
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
