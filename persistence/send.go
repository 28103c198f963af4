package persistence

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Send is one message to send through SendMessages.
type Send struct {
	MatterID int64
	SenderID int64
	Body     string
	// ClientMessageID is the sender's idempotency key ("" = none): a send
	// repeating one of the sender's earlier keys inserts nothing and
	// returns the message stored first.
	ClientMessageID string
	At              time.Time
}

// SendResult is the outcome of one Send.
type SendResult struct {
	// Message is the message stored: new, or the first one sent with the
	// same ClientMessageID when Repeat.
	Message Message
	// Repeat says ClientMessageID had been used before: nothing was
	// inserted.
	Repeat bool
	// Members are the matter's members (ascending) in the transaction that
	// stored or found the message.
	Members []int64
	// PreviousID is the id of the message before this one in its matter (0
	// for the first), read under the matter's lock in the transaction that
	// stored it: a client that has shown PreviousID and then gets this
	// message knows it missed nothing in between. For a Repeat, that of the
	// message stored first.
	PreviousID int64
	// Err is this send's failure: ErrNotFound (the matter or the sender does
	// not exist), ErrForbidden (the sender is not a member of the matter),
	// ErrConflict (ClientMessageID was used for a message in another
	// matter), or a database error. Nothing was stored when it is set.
	Err error
}

// sendGroup is one dialect's attempt at a group in one transaction. A
// returned error means the transaction failed and nothing of the group was
// stored; per-send refusals (ErrNotFound, ErrForbidden, ErrConflict) are in
// the results and do not fail the group.
type sendGroup func(ctx context.Context, sends []Send) ([]SendResult, error)

// sendMessages runs a group in one transaction and, if that fails, each
// send in a transaction of its own, so one bad message (a constraint, a
// trigger) does not fail its neighbours.
func sendMessages(ctx context.Context, sends []Send, group sendGroup, wrap func(error, Send) error) []SendResult {
	if len(sends) == 0 {
		return nil
	}
	res, err := group(ctx, sends)
	if err == nil {
		return res
	}
	out := make([]SendResult, len(sends))
	if len(sends) == 1 || ctx.Err() != nil {
		for i, s := range sends {
			out[i].Err = wrap(err, s)
		}
		return out
	}
	for i, s := range sends {
		r, err := group(ctx, []Send{s})
		if err != nil {
			out[i].Err = wrap(err, s)
			continue
		}
		out[i] = r[0]
	}
	return out
}

// sendRefusal is the per-send check shared by both dialects: the matter
// must exist and the sender must be one of its members.
func sendRefusal(s Send, members []int64, matterExists bool) error {
	if !matterExists {
		return fmt.Errorf("persistence: message in matter %d: matter: %w", s.MatterID, ErrNotFound)
	}
	if _, found := slices.BinarySearch(members, s.SenderID); !found {
		return fmt.Errorf("persistence: user %d in matter %d: %w", s.SenderID, s.MatterID, ErrForbidden)
	}
	return nil
}

// repeatResult is a send whose ClientMessageID the sender used before: the
// stored message, unless it is in another matter. previous finds the id of
// the message before it in its matter (a query, for repeats only).
func repeatResult(s Send, first Message, members []int64, previous func(matterID, id int64) (int64, error)) (SendResult, error) {
	if first.MatterID != s.MatterID {
		return SendResult{Err: fmt.Errorf("persistence: client message id %q of user %d is message %d in matter %d: %w",
			s.ClientMessageID, s.SenderID, first.ID, first.MatterID, ErrConflict)}, nil
	}
	prev, err := previous(first.MatterID, first.ID)
	if err != nil {
		return SendResult{}, err
	}
	return SendResult{Message: first, Repeat: true, Members: members, PreviousID: prev}, nil
}

// previousIDQuery is the id of a matter's message before a given one.
const previousIDQuery = `SELECT COALESCE(MAX(id), 0) FROM messages WHERE matter_id = ? AND id < ?`

// nullable is s, or nil when empty.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
