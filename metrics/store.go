package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/parley-chat/parley/persistence"
)

// Store wraps a chat store so that every operation's time lands in
// parley_db_query_duration_seconds{op} (and failures other than not found
// or conflict in parley_db_errors_total), and every stored chat message in
// parley_chat_messages_sent_total of chatApp. Operations added to the Store
// interface later pass through untimed until they are listed here. A nil
// Metrics returns st itself.
func (m *Metrics) Store(st persistence.Store, chatApp string) persistence.Store {
	if m == nil {
		return st
	}
	return &timedStore{Store: st, m: m, chat: m.App(chatApp)}
}

type timedStore struct {
	persistence.Store
	m    *Metrics
	chat *AppMeter
}

func (s *timedStore) done(op string, start time.Time, err error) {
	failed := err != nil && !errors.Is(err, persistence.ErrNotFound) && !errors.Is(err, persistence.ErrConflict) &&
		!errors.Is(err, context.Canceled)
	s.m.DBQuery(op, time.Since(start), failed)
}

func (s *timedStore) Migrate(ctx context.Context) error {
	start := time.Now()
	err := s.Store.Migrate(ctx)
	s.done("Migrate", start, err)
	return err
}

func (s *timedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.Store.Ping(ctx)
	s.done("Ping", start, err)
	return err
}

func (s *timedStore) CreateUser(ctx context.Context, name, email, passwordHash string) (persistence.User, error) {
	start := time.Now()
	r0, err := s.Store.CreateUser(ctx, name, email, passwordHash)
	s.done("CreateUser", start, err)
	return r0, err
}

func (s *timedStore) UserByID(ctx context.Context, id int64) (persistence.User, error) {
	start := time.Now()
	r0, err := s.Store.UserByID(ctx, id)
	s.done("UserByID", start, err)
	return r0, err
}

func (s *timedStore) UserByEmail(ctx context.Context, email string) (persistence.User, error) {
	start := time.Now()
	r0, err := s.Store.UserByEmail(ctx, email)
	s.done("UserByEmail", start, err)
	return r0, err
}

func (s *timedStore) CreateToken(ctx context.Context, userID int64, secretHash string, expiresAt *time.Time) (persistence.Token, error) {
	start := time.Now()
	r0, err := s.Store.CreateToken(ctx, userID, secretHash, expiresAt)
	s.done("CreateToken", start, err)
	return r0, err
}

func (s *timedStore) TokenByID(ctx context.Context, id int64) (persistence.Token, error) {
	start := time.Now()
	r0, err := s.Store.TokenByID(ctx, id)
	s.done("TokenByID", start, err)
	return r0, err
}

func (s *timedStore) TouchToken(ctx context.Context, id int64, at time.Time) error {
	start := time.Now()
	err := s.Store.TouchToken(ctx, id, at)
	s.done("TouchToken", start, err)
	return err
}

func (s *timedStore) DeleteToken(ctx context.Context, id int64) error {
	start := time.Now()
	err := s.Store.DeleteToken(ctx, id)
	s.done("DeleteToken", start, err)
	return err
}

func (s *timedStore) CreateMatter(ctx context.Context, title string) (persistence.Matter, error) {
	start := time.Now()
	r0, err := s.Store.CreateMatter(ctx, title)
	s.done("CreateMatter", start, err)
	return r0, err
}

func (s *timedStore) MatterByID(ctx context.Context, id int64) (persistence.Matter, error) {
	start := time.Now()
	r0, err := s.Store.MatterByID(ctx, id)
	s.done("MatterByID", start, err)
	return r0, err
}

func (s *timedStore) AddMember(ctx context.Context, matterID, userID int64) error {
	start := time.Now()
	err := s.Store.AddMember(ctx, matterID, userID)
	s.done("AddMember", start, err)
	return err
}

func (s *timedStore) IsMember(ctx context.Context, matterID, userID int64) (bool, error) {
	start := time.Now()
	r0, err := s.Store.IsMember(ctx, matterID, userID)
	s.done("IsMember", start, err)
	return r0, err
}

func (s *timedStore) MemberIDs(ctx context.Context, matterID int64) ([]int64, error) {
	start := time.Now()
	r0, err := s.Store.MemberIDs(ctx, matterID)
	s.done("MemberIDs", start, err)
	return r0, err
}

func (s *timedStore) MattersForUser(ctx context.Context, userID int64) ([]persistence.Matter, error) {
	start := time.Now()
	r0, err := s.Store.MattersForUser(ctx, userID)
	s.done("MattersForUser", start, err)
	return r0, err
}

// SendMessages is the group commit of sends: one timing per group (op
// "SendMessages"), failed when no send of the group was stored, and one
// chat send counted per message stored (a repeated client_message_id
// stores nothing).
func (s *timedStore) SendMessages(ctx context.Context, sends []persistence.Send) []persistence.SendResult {
	start := time.Now()
	res := s.Store.SendMessages(ctx, sends)
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

func (s *timedStore) CreateMessage(ctx context.Context, matterID, senderID int64, body string, at time.Time) (persistence.Message, error) {
	start := time.Now()
	r0, err := s.Store.CreateMessage(ctx, matterID, senderID, body, at)
	s.done("CreateMessage", start, err)
	if err == nil {
		s.chat.ChatSent()
	}
	return r0, err
}

func (s *timedStore) MessageByID(ctx context.Context, id int64) (persistence.Message, error) {
	start := time.Now()
	r0, err := s.Store.MessageByID(ctx, id)
	s.done("MessageByID", start, err)
	return r0, err
}

func (s *timedStore) UpdateMessage(ctx context.Context, id int64, body string, at time.Time) (persistence.Message, error) {
	start := time.Now()
	r0, err := s.Store.UpdateMessage(ctx, id, body, at)
	s.done("UpdateMessage", start, err)
	return r0, err
}

func (s *timedStore) ListMessages(ctx context.Context, q persistence.MessageQuery) ([]persistence.Message, int, error) {
	start := time.Now()
	r0, r1, err := s.Store.ListMessages(ctx, q)
	s.done("ListMessages", start, err)
	return r0, r1, err
}

func (s *timedStore) MarkRead(ctx context.Context, messageID, readerID int64, at time.Time) (persistence.ReadReceipt, bool, error) {
	start := time.Now()
	r0, r1, err := s.Store.MarkRead(ctx, messageID, readerID, at)
	s.done("MarkRead", start, err)
	return r0, r1, err
}

func (s *timedStore) MarkReadUpTo(ctx context.Context, matterID, readerID, upToID int64, at time.Time) (persistence.ReadUpTo, error) {
	start := time.Now()
	r0, err := s.Store.MarkReadUpTo(ctx, matterID, readerID, upToID, at)
	s.done("MarkReadUpTo", start, err)
	return r0, err
}

func (s *timedStore) UnreadCounts(ctx context.Context, userID int64) (map[int64]int, error) {
	start := time.Now()
	r0, err := s.Store.UnreadCounts(ctx, userID)
	s.done("UnreadCounts", start, err)
	return r0, err
}

func (s *timedStore) UnreadState(ctx context.Context, userID int64) (map[int64]persistence.MatterUnread, error) {
	start := time.Now()
	r0, err := s.Store.UnreadState(ctx, userID)
	s.done("UnreadState", start, err)
	return r0, err
}
