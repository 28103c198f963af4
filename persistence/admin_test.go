package persistence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestAdminStore(t *testing.T) {
	suite := []storeCase{
		{"Users", testAdminUsers},
		{"DeleteUser", testAdminDeleteUser},
		{"Matters", testAdminMatters},
		{"DeleteUserRacesAddMember", testDeleteUserRacesAddMember},
	}
	runSuite(t, suite)
}

func strp(s string) *string { return &s }

func userIDs(us []User) []int64 {
	out := []int64{}
	for _, u := range us {
		out = append(out, u.ID)
	}
	return out
}

func testAdminUsers(t *testing.T, s Store) {
	ctx := context.Background()
	ann, err := s.CreateUserWith(ctx, NewUser{Name: "Ann", Email: " Ann@Example.com ", PasswordHash: "h", ExternalID: strp("41")})
	if err != nil || ann.Email != "ann@example.com" || *ann.ExternalID != "41" {
		t.Fatalf("create: %+v %v", ann, err)
	}
	bob, err := s.CreateUserWith(ctx, NewUser{Name: "Bob", Email: "bob@example.com"})
	if err != nil || bob.ExternalID != nil || bob.PasswordHash != "" {
		t.Fatalf("create without password or external id: %+v %v", bob, err)
	}
	cy, _ := s.CreateUserWith(ctx, NewUser{Name: "Cy", Email: "cy@example.com"})

	_, err = s.CreateUserWith(ctx, NewUser{Name: "A", Email: "ANN@example.com"})
	wantErr(t, "email taken", err, ErrEmailTaken)
	wantErr(t, "email taken", err, ErrConflict)
	_, err = s.CreateUserWith(ctx, NewUser{Name: "A", Email: "a2@example.com", ExternalID: strp("41")})
	wantErr(t, "external id taken", err, ErrExternalIDTaken)
	if errors.Is(err, ErrEmailTaken) {
		t.Fatal("an external id conflict reported as an email conflict")
	}

	// Lists: filters, pages.
	for _, tc := range []struct {
		q    UserQuery
		want string
	}{
		{UserQuery{Limit: 10}, fmt.Sprint([]int64{ann.ID, bob.ID, cy.ID})},
		{UserQuery{Limit: 2}, fmt.Sprint([]int64{ann.ID, bob.ID})},
		{UserQuery{Limit: 10, AfterID: bob.ID}, fmt.Sprint([]int64{cy.ID})},
		{UserQuery{Limit: 10, Email: "BOB@example.com"}, fmt.Sprint([]int64{bob.ID})},
		{UserQuery{Limit: 10, ExternalID: "41"}, fmt.Sprint([]int64{ann.ID})},
		{UserQuery{Limit: 10, ExternalID: "nope"}, "[]"},
	} {
		us, err := s.ListUsers(ctx, tc.q)
		if err != nil || fmt.Sprint(userIDs(us)) != tc.want {
			t.Errorf("%+v: %v %v, want %s", tc.q, userIDs(us), err, tc.want)
		}
	}

	// Partial updates.
	u, err := s.UpdateUser(ctx, bob.ID, UserPatch{Name: strp("Bobby"), PasswordHash: strp("h2"), ExternalID: strp("7")})
	if err != nil || u.Name != "Bobby" || u.PasswordHash != "h2" || *u.ExternalID != "7" || u.Email != "bob@example.com" {
		t.Fatalf("update: %+v %v", u, err)
	}
	u, err = s.UpdateUser(ctx, bob.ID, UserPatch{ClearExternalID: true, Email: strp("Robert@Example.com")})
	if err != nil || u.ExternalID != nil || u.Email != "robert@example.com" || u.Name != "Bobby" {
		t.Fatalf("update: %+v %v", u, err)
	}
	if u, err := s.UpdateUser(ctx, bob.ID, UserPatch{}); err != nil || u.ID != bob.ID {
		t.Fatalf("empty patch: %+v %v", u, err)
	}
	_, err = s.UpdateUser(ctx, bob.ID, UserPatch{Email: strp("ann@example.com")})
	wantErr(t, "update to a taken email", err, ErrEmailTaken)
	_, err = s.UpdateUser(ctx, bob.ID, UserPatch{ExternalID: strp("41")})
	wantErr(t, "update to a taken external id", err, ErrExternalIDTaken)
	_, err = s.UpdateUser(ctx, 999999, UserPatch{Name: strp("X")})
	wantErr(t, "update a missing user", err, ErrNotFound)
}

func testAdminDeleteUser(t *testing.T, s Store) {
	ctx := context.Background()
	ann, bob := mustUser(t, s, "ann"), mustUser(t, s, "bob")
	if _, err := s.UpdateUser(ctx, ann.ID, UserPatch{ExternalID: strp("x1")}); err != nil {
		t.Fatal(err)
	}
	m1, m2 := mustMatter(t, s, "one", ann, bob), mustMatter(t, s, "two", ann)
	msg := mustSend(t, s, m1, ann, "from ann")
	if _, _, err := s.MarkRead(ctx, mustSend(t, s, m1, bob, "from bob").ID, ann.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.CreateToken(ctx, ann.ID, "hash", nil); err != nil {
			t.Fatal(err)
		}
	}

	left, err := s.DeleteUser(ctx, ann.ID)
	if err != nil || fmt.Sprint(left) != fmt.Sprint([]int64{m1.ID, m2.ID}) {
		t.Fatalf("delete: %v %v", left, err)
	}
	_, err = s.DeleteUser(ctx, ann.ID)
	wantErr(t, "delete twice", err, ErrNotFound)
	u, err := s.UserByID(ctx, ann.ID)
	if err != nil || u.DeletedAt == nil || u.Name != DeletedUserName || u.Email == "ann@example.com" || u.PasswordHash != "" || u.ExternalID != nil {
		t.Fatalf("deleted row: %+v %v", u, err)
	}
	_, err = s.UserByEmail(ctx, "ann@example.com")
	wantErr(t, "login lookup of a deleted user", err, ErrNotFound)
	if toks, err := s.ListTokens(ctx, ann.ID); err != nil || len(toks) != 0 {
		t.Fatalf("tokens left: %v %v", toks, err)
	}
	if ms, err := s.MattersForUser(ctx, ann.ID); err != nil || len(ms) != 0 {
		t.Fatalf("memberships left: %v %v", ms, err)
	}
	if got, err := s.MessageByID(ctx, msg.ID); err != nil || got.Body != "from ann" || got.SenderName != DeletedUserName {
		t.Fatalf("message of a deleted user: %+v %v", got, err)
	}
	if us, _ := s.ListUsers(ctx, UserQuery{Limit: 10}); fmt.Sprint(userIDs(us)) != fmt.Sprint([]int64{bob.ID}) {
		t.Fatalf("list shows deleted users: %v", userIDs(us))
	}
	_, err = s.UpdateUser(ctx, ann.ID, UserPatch{Name: strp("back")})
	wantErr(t, "update a deleted user", err, ErrNotFound)
	_, err = s.AddActiveMember(ctx, m1.ID, ann.ID)
	wantErr(t, "add a deleted user", err, ErrNoSuchUser)
	// Her email and external id are free again; her id is not reused.
	again, err := s.CreateUserWith(ctx, NewUser{Name: "Ann", Email: "ann@example.com", ExternalID: strp("x1")})
	if err != nil || again.ID <= bob.ID {
		t.Fatalf("recreate: %+v %v", again, err)
	}
}

func testAdminMatters(t *testing.T, s Store) {
	ctx := context.Background()
	ann, bob, cy := mustUser(t, s, "ann"), mustUser(t, s, "bob"), mustUser(t, s, "cy")

	m1, err := s.CreateMatterWith(ctx, "one", []int64{ann.ID, bob.ID, ann.ID})
	if err != nil {
		t.Fatal(err)
	}
	if us, _ := s.MatterMembers(ctx, m1.ID); fmt.Sprint(userIDs(us)) != fmt.Sprint([]int64{ann.ID, bob.ID}) {
		t.Fatalf("members %v", userIDs(us))
	}
	_, err = s.CreateMatterWith(ctx, "bad", []int64{ann.ID, 999998, 999999})
	var missing *MissingUsersError
	if !errors.As(err, &missing) || fmt.Sprint(missing.IDs) != "[999998 999999]" || !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing members: %v", err)
	}
	m2, _ := s.CreateMatterWith(ctx, "two", nil)
	if ms, _ := s.ListMatters(ctx, MatterQuery{Limit: 10}); len(ms) != 2 {
		t.Fatalf("a refused create wrote a matter: %v", ms)
	}

	if m, err := s.UpdateMatter(ctx, m2.ID, "renamed"); err != nil || m.Title != "renamed" || !m.CreatedAt.Equal(m2.CreatedAt) {
		t.Fatalf("rename %+v %v", m, err)
	}
	_, err = s.UpdateMatter(ctx, 999999, "x")
	wantErr(t, "rename a missing matter", err, ErrNotFound)

	if added, err := s.AddActiveMember(ctx, m2.ID, cy.ID); err != nil || !added {
		t.Fatalf("add: %v %v", added, err)
	}
	if added, err := s.AddActiveMember(ctx, m2.ID, cy.ID); err != nil || added {
		t.Fatalf("add again: %v %v", added, err)
	}
	_, err = s.AddActiveMember(ctx, 999999, cy.ID)
	wantErr(t, "add to a missing matter", err, ErrNoSuchMatter)
	_, err = s.AddActiveMember(ctx, m2.ID, 999999)
	wantErr(t, "add a missing user", err, ErrNoSuchUser)
	if removed, err := s.RemoveMember(ctx, m2.ID, cy.ID); err != nil || !removed {
		t.Fatalf("remove: %v %v", removed, err)
	}
	if removed, err := s.RemoveMember(ctx, m2.ID, cy.ID); err != nil || removed {
		t.Fatalf("remove again: %v %v", removed, err)
	}
	_, err = s.RemoveMember(ctx, 999999, cy.ID)
	wantErr(t, "remove from a missing matter", err, ErrNoSuchMatter)

	for _, tc := range []struct {
		q    MatterQuery
		want string
	}{
		{MatterQuery{Limit: 10}, fmt.Sprint([]int64{m1.ID, m2.ID})},
		{MatterQuery{Limit: 1}, fmt.Sprint([]int64{m1.ID})},
		{MatterQuery{Limit: 10, AfterID: m1.ID}, fmt.Sprint([]int64{m2.ID})},
		{MatterQuery{Limit: 10, UserID: bob.ID}, fmt.Sprint([]int64{m1.ID})},
		{MatterQuery{Limit: 10, UserID: cy.ID}, "[]"},
	} {
		ms, err := s.ListMatters(ctx, tc.q)
		ids := []int64{}
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		if err != nil || fmt.Sprint(ids) != tc.want {
			t.Errorf("%+v: %v %v, want %s", tc.q, ids, err, tc.want)
		}
	}

	// Delete: members, messages and receipts go with the matter.
	msg := mustSend(t, s, m1, ann, "hi")
	if _, _, err := s.MarkRead(ctx, msg.ID, bob.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	members, err := s.DeleteMatter(ctx, m1.ID)
	if err != nil || fmt.Sprint(members) != fmt.Sprint([]int64{ann.ID, bob.ID}) {
		t.Fatalf("delete: %v %v", members, err)
	}
	_, err = s.DeleteMatter(ctx, m1.ID)
	wantErr(t, "delete twice", err, ErrNotFound)
	_, err = s.MessageByID(ctx, msg.ID)
	wantErr(t, "message of a deleted matter", err, ErrNotFound)
	var receipts int
	if err := rawDB(s).Get(&receipts, rawDB(s).Rebind(`SELECT COUNT(*) FROM message_reads WHERE message_id = ?`), msg.ID); err != nil || receipts != 0 {
		t.Fatalf("receipts left: %d %v", receipts, err)
	}
	if counts, err := s.UnreadCounts(ctx, bob.ID); err != nil || len(counts) != 0 {
		t.Fatalf("bob's unread after delete: %v %v", counts, err)
	}
}

// A user deleted while being added to a matter ends up in no matter: the
// add either happened first (and the delete removed it) or saw the user
// deleted.
func testDeleteUserRacesAddMember(t *testing.T, s Store) {
	ctx := context.Background()
	m := mustMatter(t, s, "race")
	for i := range 20 {
		u := mustUser(t, s, fmt.Sprintf("racer%d", i))
		var wg sync.WaitGroup
		wg.Add(2)
		var addErr, delErr error
		go func() { defer wg.Done(); _, addErr = s.AddActiveMember(ctx, m.ID, u.ID) }()
		go func() { defer wg.Done(); _, delErr = s.DeleteUser(ctx, u.ID) }()
		wg.Wait()
		if delErr != nil || (addErr != nil && !errors.Is(addErr, ErrNoSuchUser)) {
			t.Fatalf("delete %v, add %v", delErr, addErr)
		}
		if ok, err := s.IsMember(ctx, m.ID, u.ID); err != nil || ok {
			t.Fatalf("round %d: a deleted user is a member (%v)", i, err)
		}
	}
}
