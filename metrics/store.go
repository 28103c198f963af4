package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/parley-chat/parley/persistence"
)

// Store wraps a chat store so that every operation's time lands in
// parley_db_query_duration_seconds{op} (op is the method's name), failures
// other than not found, conflict or a cancelled request in
// parley_db_errors_total{op}, and every stored chat message in
// parley_chat_messages_sent_total of chatApp. The wrapper implements each
// method itself rather than embedding the store, so a method added to
// persistence.Store does not compile until it is timed here. A nil Metrics
// returns st itself.
func (m *Metrics) Store(st persistence.Store, chatApp string) persistence.Store {
	if m == nil {
		return st
	}
	return &timedStore{st: st, m: m, chat: m.App(chatApp)}
}

var _ persistence.Store = (*timedStore)(nil)

type timedStore struct {
	st   persistence.Store
	m    *Metrics
	chat *AppMeter
}

func (s *timedStore) done(op string, start time.Time, err error) {
	failed := err != nil && !errors.Is(err, persistence.ErrNotFound) && !errors.Is(err, persistence.ErrConflict) &&
		!errors.Is(err, context.Canceled)
	s.m.DBQuery(op, time.Since(start), failed)
}

// timed0, timed1 and timed2 time an operation returning an error after
// no, one or two values.

func timed0(s *timedStore, op string, f func() error) error {
	start := time.Now()
	err := f()
	s.done(op, start, err)
	return err
}

func timed1[A any](s *timedStore, op string, f func() (A, error)) (A, error) {
	start := time.Now()
	a, err := f()
	s.done(op, start, err)
	return a, err
}

func timed2[A, B any](s *timedStore, op string, f func() (A, B, error)) (A, B, error) {
	start := time.Now()
	a, b, err := f()
	s.done(op, start, err)
	return a, b, err
}

func (s *timedStore) Migrate(ctx context.Context) error {
	return timed0(s, "Migrate", func() error { return s.st.Migrate(ctx) })
}

func (s *timedStore) Ping(ctx context.Context) error {
	return timed0(s, "Ping", func() error { return s.st.Ping(ctx) })
}

func (s *timedStore) Close() error {
	return timed0(s, "Close", s.st.Close)
}

// Dialect asks the database nothing; it is timed all the same, so that
// every method of the store is.
func (s *timedStore) Dialect() string {
	start := time.Now()
	d := s.st.Dialect()
	s.done("Dialect", start, nil)
	return d
}

func (s *timedStore) CreateUser(ctx context.Context, name, email, passwordHash string) (persistence.User, error) {
	return timed1(s, "CreateUser", func() (persistence.User, error) { return s.st.CreateUser(ctx, name, email, passwordHash) })
}

func (s *timedStore) UserByID(ctx context.Context, id int64) (persistence.User, error) {
	return timed1(s, "UserByID", func() (persistence.User, error) { return s.st.UserByID(ctx, id) })
}

func (s *timedStore) UserByEmail(ctx context.Context, email string) (persistence.User, error) {
	return timed1(s, "UserByEmail", func() (persistence.User, error) { return s.st.UserByEmail(ctx, email) })
}

func (s *timedStore) CreateToken(ctx context.Context, userID int64, secretHash string, expiresAt *time.Time) (persistence.Token, error) {
	return timed1(s, "CreateToken", func() (persistence.Token, error) { return s.st.CreateToken(ctx, userID, secretHash, expiresAt) })
}

func (s *timedStore) TokenByID(ctx context.Context, id int64) (persistence.Token, error) {
	return timed1(s, "TokenByID", func() (persistence.Token, error) { return s.st.TokenByID(ctx, id) })
}

func (s *timedStore) TouchToken(ctx context.Context, id int64, at time.Time) error {
	return timed0(s, "TouchToken", func() error { return s.st.TouchToken(ctx, id, at) })
}

func (s *timedStore) DeleteToken(ctx context.Context, id int64) error {
	return timed0(s, "DeleteToken", func() error { return s.st.DeleteToken(ctx, id) })
}

func (s *timedStore) CreateMatter(ctx context.Context, title string) (persistence.Matter, error) {
	return timed1(s, "CreateMatter", func() (persistence.Matter, error) { return s.st.CreateMatter(ctx, title) })
}

func (s *timedStore) MatterByID(ctx context.Context, id int64) (persistence.Matter, error) {
	return timed1(s, "MatterByID", func() (persistence.Matter, error) { return s.st.MatterByID(ctx, id) })
}

func (s *timedStore) AddMember(ctx context.Context, matterID, userID int64) error {
	return timed0(s, "AddMember", func() error { return s.st.AddMember(ctx, matterID, userID) })
}

func (s *timedStore) IsMember(ctx context.Context, matterID, userID int64) (bool, error) {
	return timed1(s, "IsMember", func() (bool, error) { return s.st.IsMember(ctx, matterID, userID) })
}

func (s *timedStore) MemberIDs(ctx context.Context, matterID int64) ([]int64, error) {
	return timed1(s, "MemberIDs", func() ([]int64, error) { return s.st.MemberIDs(ctx, matterID) })
}

func (s *timedStore) MattersForUser(ctx context.Context, userID int64) ([]persistence.Matter, error) {
	return timed1(s, "MattersForUser", func() ([]persistence.Matter, error) { return s.st.MattersForUser(ctx, userID) })
}

// CreateMessage also counts a chat send when it stores the message.
func (s *timedStore) CreateMessage(ctx context.Context, matterID, senderID int64, body string, at time.Time) (persistence.Message, error) {
	m, err := timed1(s, "CreateMessage", func() (persistence.Message, error) {
		return s.st.CreateMessage(ctx, matterID, senderID, body, at)
	})
	if err == nil {
		s.chat.ChatSent()
	}
	return m, err
}

// SendMessages is the group commit of sends: one timing per group (op
// "SendMessages"), failed when no send of the group was stored, and one
// chat send counted per message stored (a repeated client_message_id
// stores nothing).
func (s *timedStore) SendMessages(ctx context.Context, sends []persistence.Send) []persistence.SendResult {
	start := time.Now()
	res := s.st.SendMessages(ctx, sends)
	var firstErr error
	stored := 0
	for _, r := range res {
		switch {
		case r.Err != nil:
			if firstErr == nil {
				firstErr = r.Err
			}
		case !r.Repeat:
			stored++
			s.chat.ChatSent()
		}
	}
	if stored > 0 || len(res) == 0 {
		firstErr = nil
	}
	s.done("SendMessages", start, firstErr)
	return res
}

func (s *timedStore) MessageByID(ctx context.Context, id int64) (persistence.Message, error) {
	return timed1(s, "MessageByID", func() (persistence.Message, error) { return s.st.MessageByID(ctx, id) })
}

func (s *timedStore) UpdateMessage(ctx context.Context, id int64, body string, at time.Time) (persistence.Message, error) {
	return timed1(s, "UpdateMessage", func() (persistence.Message, error) { return s.st.UpdateMessage(ctx, id, body, at) })
}

func (s *timedStore) ListMessages(ctx context.Context, q persistence.MessageQuery) ([]persistence.Message, int, error) {
	return timed2(s, "ListMessages", func() ([]persistence.Message, int, error) { return s.st.ListMessages(ctx, q) })
}

func (s *timedStore) DeleteMessage(ctx context.Context, id int64, at time.Time) (persistence.Deletion, error) {
	return timed1(s, "DeleteMessage", func() (persistence.Deletion, error) { return s.st.DeleteMessage(ctx, id, at) })
}

func (s *timedStore) Readers(ctx context.Context, messageIDs []int64) (map[int64][]persistence.Reader, error) {
	return timed1(s, "Readers", func() (map[int64][]persistence.Reader, error) { return s.st.Readers(ctx, messageIDs) })
}

func (s *timedStore) MatterSummaries(ctx context.Context, userID int64) ([]persistence.MatterSummary, error) {
	return timed1(s, "MatterSummaries", func() ([]persistence.MatterSummary, error) { return s.st.MatterSummaries(ctx, userID) })
}

func (s *timedStore) MarkRead(ctx context.Context, messageID, readerID int64, at time.Time) (persistence.ReadReceipt, bool, error) {
	return timed2(s, "MarkRead", func() (persistence.ReadReceipt, bool, error) { return s.st.MarkRead(ctx, messageID, readerID, at) })
}

func (s *timedStore) MarkReadUpTo(ctx context.Context, matterID, readerID, upToID int64, at time.Time) (persistence.ReadUpTo, error) {
	return timed1(s, "MarkReadUpTo", func() (persistence.ReadUpTo, error) {
		return s.st.MarkReadUpTo(ctx, matterID, readerID, upToID, at)
	})
}

func (s *timedStore) UnreadCounts(ctx context.Context, userID int64) (map[int64]int, error) {
	return timed1(s, "UnreadCounts", func() (map[int64]int, error) { return s.st.UnreadCounts(ctx, userID) })
}

func (s *timedStore) UnreadState(ctx context.Context, userID int64) (map[int64]persistence.MatterUnread, error) {
	return timed1(s, "UnreadState", func() (map[int64]persistence.MatterUnread, error) { return s.st.UnreadState(ctx, userID) })
}

// The admin operations (persistence.AdminStore).

func (s *timedStore) CreateUserWith(ctx context.Context, u persistence.NewUser) (persistence.User, error) {
	return timed1(s, "CreateUserWith", func() (persistence.User, error) { return s.st.CreateUserWith(ctx, u) })
}

func (s *timedStore) UpdateUser(ctx context.Context, id int64, p persistence.UserPatch) (persistence.User, error) {
	return timed1(s, "UpdateUser", func() (persistence.User, error) { return s.st.UpdateUser(ctx, id, p) })
}

func (s *timedStore) DeleteUser(ctx context.Context, id int64) ([]int64, error) {
	return timed1(s, "DeleteUser", func() ([]int64, error) { return s.st.DeleteUser(ctx, id) })
}

func (s *timedStore) ListUsers(ctx context.Context, q persistence.UserQuery) ([]persistence.User, error) {
	return timed1(s, "ListUsers", func() ([]persistence.User, error) { return s.st.ListUsers(ctx, q) })
}

func (s *timedStore) ListTokens(ctx context.Context, userID int64) ([]persistence.Token, error) {
	return timed1(s, "ListTokens", func() ([]persistence.Token, error) { return s.st.ListTokens(ctx, userID) })
}

func (s *timedStore) DeleteUserTokens(ctx context.Context, userID int64) (int, error) {
	return timed1(s, "DeleteUserTokens", func() (int, error) { return s.st.DeleteUserTokens(ctx, userID) })
}

func (s *timedStore) CreateMatterWith(ctx context.Context, title string, memberIDs []int64) (persistence.Matter, error) {
	return timed1(s, "CreateMatterWith", func() (persistence.Matter, error) { return s.st.CreateMatterWith(ctx, title, memberIDs) })
}

func (s *timedStore) UpdateMatter(ctx context.Context, id int64, title string) (persistence.Matter, error) {
	return timed1(s, "UpdateMatter", func() (persistence.Matter, error) { return s.st.UpdateMatter(ctx, id, title) })
}

func (s *timedStore) DeleteMatter(ctx context.Context, id int64) ([]int64, error) {
	return timed1(s, "DeleteMatter", func() ([]int64, error) { return s.st.DeleteMatter(ctx, id) })
}

func (s *timedStore) ListMatters(ctx context.Context, q persistence.MatterQuery) ([]persistence.Matter, error) {
	return timed1(s, "ListMatters", func() ([]persistence.Matter, error) { return s.st.ListMatters(ctx, q) })
}

func (s *timedStore) MatterMembers(ctx context.Context, matterID int64) ([]persistence.User, error) {
	return timed1(s, "MatterMembers", func() ([]persistence.User, error) { return s.st.MatterMembers(ctx, matterID) })
}

func (s *timedStore) AddActiveMember(ctx context.Context, matterID, userID int64) (bool, error) {
	return timed1(s, "AddActiveMember", func() (bool, error) { return s.st.AddActiveMember(ctx, matterID, userID) })
}

func (s *timedStore) RemoveMember(ctx context.Context, matterID, userID int64) (bool, error) {
	return timed1(s, "RemoveMember", func() (bool, error) { return s.st.RemoveMember(ctx, matterID, userID) })
}

func (s *timedStore) RegisterDevice(ctx context.Context, userID int64, d persistence.NewDevice) (persistence.Registration, error) {
	return timed1(s, "RegisterDevice", func() (persistence.Registration, error) { return s.st.RegisterDevice(ctx, userID, d) })
}

func (s *timedStore) Devices(ctx context.Context, userID int64) ([]persistence.Device, error) {
	return timed1(s, "Devices", func() ([]persistence.Device, error) { return s.st.Devices(ctx, userID) })
}

func (s *timedStore) DeleteDevice(ctx context.Context, userID, deviceID int64) error {
	return timed0(s, "DeleteDevice", func() error { return s.st.DeleteDevice(ctx, userID, deviceID) })
}

func (s *timedStore) DeleteUserDevices(ctx context.Context, userID int64) (int, error) {
	return timed1(s, "DeleteUserDevices", func() (int, error) { return s.st.DeleteUserDevices(ctx, userID) })
}

func (s *timedStore) DeleteDeadToken(ctx context.Context, deviceID int64, token string) (int64, bool, error) {
	return timed2(s, "DeleteDeadToken", func() (int64, bool, error) { return s.st.DeleteDeadToken(ctx, deviceID, token) })
}

func (s *timedStore) SetMuted(ctx context.Context, matterID, userID int64, muted bool) error {
	return timed0(s, "SetMuted", func() error { return s.st.SetMuted(ctx, matterID, userID, muted) })
}

func (s *timedStore) Muted(ctx context.Context, matterID, userID int64) (bool, error) {
	return timed1(s, "Muted", func() (bool, error) { return s.st.Muted(ctx, matterID, userID) })
}

func (s *timedStore) PushTargets(ctx context.Context, userID int64) (persistence.PushTargets, error) {
	return timed1(s, "PushTargets", func() (persistence.PushTargets, error) { return s.st.PushTargets(ctx, userID) })
}
