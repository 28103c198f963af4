package persistence

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
)

// Read state (migration 0007). A user's reads in a matter are kept as:
//
//   - read_positions.up_to, their watermark: every message from others in
//     the matter with an id at or below it is read or deleted. It outlives a
//     membership, so a former member's reads keep showing, and come back
//     with the member.
//   - read_ranges, one row per move of the watermark that marked something:
//     the messages from others with from_id < id <= to_id, not deleted, were
//     read at read_at, the time of that move. A user's ranges in a matter
//     never overlap and never pass their up_to.
//   - message_reads, the reads of single messages (and the receipts that
//     migration 0007 could not turn into ranges). Such a row wins over a
//     range covering the same message: it was there first.
//
// So marking a matter read up to a message writes at most three rows
// whatever the backlog it clears, and a message's receipts are derived
// where they are shown (Readers, MarkRead). Every write that changes a
// member's read state (MarkRead, MarkReadUpTo, DeleteMessage) first locks
// the member rows it concerns and only then reads, in statements of its own
// (on PostgreSQL each statement sees what committed before it started): of
// two such writes for the same member, the second sees everything the first
// did, so each message leaves a member's unread count exactly once, which
// is what the unread counters' arithmetic relies on. The embedded
// database's one writer serialises them without locks.

// lockMember is the statement that locks a member row and reads its
// read_seq; matterID is the matter's SQL, "?" or a subquery with one
// argument. FOR NO KEY UPDATE: read_seq is all that changes.
func (s *sqlStore) lockMember(matterID string) string {
	return s.rebind(`SELECT read_seq FROM members WHERE matter_id = ` + matterID + ` AND user_id = ?` + s.lock(` FOR NO KEY UPDATE`))
}

// bumpReadSeq moves a member's read version (the unread counters' guard
// against counting a read twice) and returns it.
const bumpReadSeq = `UPDATE members SET read_seq = read_seq + 1 WHERE matter_id = ? AND user_id = ? RETURNING read_seq`

// receiptState is a message's read state for one reader, as MarkRead reads it.
type receiptState struct {
	MatterID int64      `db:"matter_id"`
	SenderID int64      `db:"sender_id"`
	Gone     bool       `db:"gone"`
	Single   *time.Time `db:"single_at"` // the reader's message_reads row
	Ranged   *time.Time `db:"range_at"`  // the reader's range that covers it
}

// rangeEnd is the to_id of the first range of reader (a column or "?") in
// message m's matter that ends at or after m: the range that covers m, if
// any does (a user's ranges never overlap, so it is this one or none),
// found with one index probe. Statements compute it in a MATERIALIZED CTE
// and then join read_ranges on its whole primary key: as a join condition
// PostgreSQL would evaluate the subquery for each of the reader's ranges.
// Times come from table columns, so that the embedded database's driver
// returns them as times.
func rangeEnd(reader string) string {
	return `(SELECT MIN(x.to_id) FROM read_ranges x WHERE x.matter_id = m.matter_id AND x.user_id = ` + reader + ` AND x.to_id >= m.id)`
}

// receiptStateSQL takes the reader, the message, then the reader three
// times.
var receiptStateSQL = `WITH c AS MATERIALIZED (
		SELECT m.id, m.matter_id, m.sender_id, m.deleted_at IS NOT NULL AS gone, ` + rangeEnd("?") + ` AS to_id
		FROM messages m WHERE m.id = ?)
	SELECT c.matter_id, c.sender_id, c.gone, r.read_at AS single_at, g.read_at AS range_at
	FROM c
	LEFT JOIN message_reads r ON r.message_id = c.id AND r.user_id = ?
	LEFT JOIN read_ranges g ON c.sender_id <> ? AND g.matter_id = c.matter_id AND g.user_id = ? AND g.to_id = c.to_id AND g.from_id < c.id`

func (s *sqlStore) MarkRead(ctx context.Context, messageID, readerID int64, at time.Time) (ReadReceipt, bool, error) {
	r := ReadReceipt{MessageID: messageID, ReaderID: readerID, ReadAt: dbTime(at)}
	var created bool
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		// A non-member has no row to lock: their reads count nowhere.
		var seq int64
		err := tx.GetContext(ctx, &seq, s.lockMember(`(SELECT matter_id FROM messages WHERE id = ?)`), messageID, readerID)
		member := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var st receiptState
		err = tx.GetContext(ctx, &st, s.rebind(receiptStateSQL), readerID, messageID, readerID, readerID, readerID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("persistence: message %d: %w", messageID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		r.MatterID, r.SenderID = st.MatterID, st.SenderID
		switch {
		case st.Gone:
			// A deleted message takes no receipt: its deletion already took
			// it out of every unread count.
			return fmt.Errorf("persistence: read of message %d: %w", messageID, ErrDeleted)
		case st.Single != nil:
			r.ReadAt = *st.Single
			return nil
		case st.Ranged != nil:
			r.ReadAt = *st.Ranged
			return nil
		}
		// DO NOTHING: a non-member's read of the same message at the same
		// time (a member's reads are serialised by the lock). It waits for
		// that one to commit, so the SELECT after it sees it.
		n, err := rowsAffected(tx.ExecContext(ctx, s.rebind(`INSERT INTO message_reads (message_id, user_id, read_at) VALUES (?, ?, ?)
			ON CONFLICT DO NOTHING`), messageID, readerID, r.ReadAt))
		if err != nil {
			return err
		}
		if n == 0 {
			return tx.GetContext(ctx, &r.ReadAt, s.rebind(`SELECT read_at FROM message_reads WHERE message_id = ? AND user_id = ?`), messageID, readerID)
		}
		created = true
		if !member {
			return nil
		}
		return tx.GetContext(ctx, &r.ReadSeq, s.rebind(bumpReadSeq), st.MatterID, readerID)
	})
	switch {
	case s.d.isForeignKey(err):
		return ReadReceipt{}, false, fmt.Errorf("persistence: read of message %d by user %d: message or reader: %w", messageID, readerID, ErrNotFound)
	case errors.Is(err, ErrNotFound) || errors.Is(err, ErrDeleted):
		return ReadReceipt{}, false, err
	case err != nil:
		return ReadReceipt{}, false, fmt.Errorf("persistence: mark read: %w", err)
	}
	r.utc()
	return r, created, nil
}

func (s *sqlStore) MarkReadUpTo(ctx context.Context, matterID, readerID, upToID int64, at time.Time) (ReadUpTo, error) {
	out := ReadUpTo{MatterID: matterID, ReaderID: readerID, UpToID: upToID, ReadAt: dbTime(at), SenderIDs: []int64{}}
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		if err := tx.GetContext(ctx, &out.ReadSeq, s.lockMember(`?`), matterID, readerID); err != nil {
			return err
		}
		mv, err := s.countMarked(ctx, tx, &out)
		if err != nil || mv.to <= mv.from {
			return err
		}
		if out.Marked == 0 {
			// Only own, deleted or singly read messages in between: the
			// watermark moves; no range to record, read_seq stays.
			_, err := tx.ExecContext(ctx, s.rebind(upsertPosition), matterID, readerID, mv.to)
			return err
		}
		seq, err := s.d.moveWatermark(ctx, tx, mv)
		out.ReadSeq = seq
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return ReadUpTo{}, fmt.Errorf("persistence: user %d in matter %d: member: %w", readerID, matterID, ErrNotFound)
	}
	if err != nil {
		return ReadUpTo{}, fmt.Errorf("persistence: mark read up to: %w", err)
	}
	return out, nil
}

// watermarkMove is a move of a reader's watermark in a matter from from to
// to, at at, that marked something: what moveWatermark writes.
type watermarkMove struct {
	matterID, userID, from, to int64
	at                         time.Time
}

// upsertPosition sets a watermark (matter, user, up_to).
const upsertPosition = `INSERT INTO read_positions (matter_id, user_id, up_to) VALUES (?, ?, ?)
	ON CONFLICT (matter_id, user_id) DO UPDATE SET up_to = excluded.up_to`

// moveWatermarkStatements is moveWatermark in three statements, which cost
// nothing on the embedded database: the new watermark, the range, the
// member's read version (returned).
func moveWatermarkStatements(ctx context.Context, tx *sqlx.Tx, mv watermarkMove) (int64, error) {
	if _, err := tx.ExecContext(ctx, upsertPosition, mv.matterID, mv.userID, mv.to); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO read_ranges (matter_id, user_id, from_id, to_id, read_at) VALUES (?, ?, ?, ?, ?)`,
		mv.matterID, mv.userID, mv.from, mv.to, mv.at); err != nil {
		return 0, err
	}
	var seq int64
	err := tx.GetContext(ctx, &seq, bumpReadSeq, mv.matterID, mv.userID)
	return seq, err
}

// markedCount is a row of markedSQL.
type markedCount struct {
	Kind     int   `db:"kind"`
	SenderID int64 `db:"sender_id"`
	N        int64 `db:"n"`
	Last     int64 `db:"last_id"`
}

// markedSQL reads, in one statement, what moving a reader's watermark marks
// (see countMarked): kind 0 is the watermark (n) and the matter's newest
// message at or below the id read up to (last_id), to which it may move:
// messages of a matter commit in id order (a send locks the matter), so no
// message below it can still appear. Kind 1 counts, per sender, the
// messages from others in between, not deleted (an index-only aggregate
// over the matter's messages); kind 2 the reader's single reads among them
// (from the reader's receipts: CROSS JOIN makes SQLite start there too,
// rather than probe them for every message); kind 3 is the newest not read
// on its own. Its arguments: matter, reader, matter, up to; then kind 1's
// matter and reader, kind 2's reader, matter and reader, kind 3's matter,
// reader and reader.
const markedSQL = `WITH lim AS (SELECT
		COALESCE((SELECT up_to FROM read_positions WHERE matter_id = ? AND user_id = ?), 0) AS old,
		COALESCE((SELECT MAX(id) FROM messages WHERE matter_id = ? AND id <= ?), 0) AS top)
	SELECT 0 AS kind, 0 AS sender_id, old AS n, top AS last_id FROM lim
	UNION ALL
	SELECT 1, m.sender_id, COUNT(*), 0 FROM messages m
	WHERE m.matter_id = ? AND m.id > (SELECT old FROM lim) AND m.id <= (SELECT top FROM lim)
		AND m.sender_id <> ? AND m.deleted_at IS NULL
	GROUP BY m.sender_id
	UNION ALL
	SELECT 2, m.sender_id, COUNT(*), 0 FROM message_reads r CROSS JOIN messages m
	WHERE r.user_id = ? AND r.message_id > (SELECT old FROM lim) AND r.message_id <= (SELECT top FROM lim)
		AND m.id = r.message_id AND m.matter_id = ? AND m.sender_id <> ? AND m.deleted_at IS NULL
	GROUP BY m.sender_id
	UNION ALL
	SELECT 3, 0, 0, COALESCE((SELECT m.id FROM messages m
		WHERE m.matter_id = ? AND m.id > (SELECT old FROM lim) AND m.id <= (SELECT top FROM lim)
			AND m.sender_id <> ? AND m.deleted_at IS NULL
			AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = ?)
		ORDER BY m.id DESC LIMIT 1), 0)`

// countMarked reads where the reader's watermark is and may move to, and
// fills out's Marked, LastMarkedID and SenderIDs: what the move marks read,
// the messages from others after the watermark up to the new one, not
// deleted and not read on their own. It counts rather than lists them.
func (s *sqlStore) countMarked(ctx context.Context, tx *sqlx.Tx, out *ReadUpTo) (watermarkMove, error) {
	m, u := out.MatterID, out.ReaderID
	mv := watermarkMove{matterID: m, userID: u, at: out.ReadAt}
	var rows []markedCount
	if err := tx.SelectContext(ctx, &rows, s.rebind(markedSQL), m, u, m, out.UpToID, m, u, u, m, u, m, u, u); err != nil {
		return mv, err
	}
	per := map[int64]int64{}
	for _, r := range rows {
		switch r.Kind {
		case 0:
			mv.from, mv.to = r.N, r.Last
		case 1:
			per[r.SenderID] += r.N
		case 2:
			per[r.SenderID] -= r.N
		case 3:
			out.LastMarkedID = r.Last
		}
	}
	for sender, n := range per {
		if n > 0 {
			out.Marked += int(n)
			out.SenderIDs = append(out.SenderIDs, sender)
		}
	}
	slices.Sort(out.SenderIDs)
	return mv, nil
}

func (s *sqlStore) DeleteMessage(ctx context.Context, id int64, at time.Time) (Deletion, error) {
	at = dbTime(at)
	out := Deletion{Unread: []ReadVersion{}}
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		// Every member row of the matter, in user order as every deletion
		// takes them: a read of one of them waits, or is waited for.
		var locked []int64
		if err := tx.SelectContext(ctx, &locked, s.rebind(`SELECT user_id FROM members
			WHERE matter_id = (SELECT matter_id FROM messages WHERE id = ?) ORDER BY user_id`+s.lock(` FOR NO KEY UPDATE`)), id); err != nil {
			return err
		}
		// A concurrent second deletion waits for the row, then finds it
		// deleted.
		var matterID, senderID int64
		err := tx.QueryRowxContext(ctx, s.rebind(`UPDATE messages SET body = '', deleted_at = ?, updated_at = ?
			WHERE id = ? AND deleted_at IS NULL RETURNING matter_id, sender_id`), at, at, id).Scan(&matterID, &senderID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Missing, or deleted before.
		case err != nil:
			return err
		default:
			out.Deleted = true
			// It leaves the count of the members who had not read it:
			// above their watermark and not read on its own.
			if err := tx.SelectContext(ctx, &out.Unread, s.rebind(`UPDATE members SET read_seq = read_seq + 1
				WHERE matter_id = ? AND user_id <> ?
				AND NOT EXISTS (SELECT 1 FROM read_positions p
					WHERE p.matter_id = members.matter_id AND p.user_id = members.user_id AND p.up_to >= ?)
				AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = ? AND r.user_id = members.user_id)
				RETURNING user_id, read_seq`), matterID, senderID, id, id); err != nil {
				return err
			}
			slices.SortFunc(out.Unread, func(a, b ReadVersion) int { return cmp.Compare(a.UserID, b.UserID) })
		}
		err = tx.GetContext(ctx, &out.Message, s.rebind(messageSelect+` WHERE m.id = ?`), id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("persistence: message %d: %w", id, ErrNotFound)
		}
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Deletion{}, err
	}
	if err != nil {
		return Deletion{}, fmt.Errorf("persistence: delete message: %w", err)
	}
	out.Message.utc()
	return out, nil
}

// readerRow is one receipt as Readers selects it; Ranged says it is derived
// from a range.
type readerRow struct {
	MessageID int64 `db:"message_id"`
	Ranged    bool  `db:"ranged"`
	Reader
}

func (s *sqlStore) Readers(ctx context.Context, messageIDs []int64) (map[int64][]Reader, error) {
	if len(messageIDs) == 0 {
		return map[int64][]Reader{}, nil
	}
	// One statement, one snapshot: the single reads, and what the ranges
	// derive for every user whose watermark reaches the message (former
	// members too). Ranges derive nothing for a deleted message (callers
	// show no read state for one; its single reads are returned as stored).
	inSingle, args := s.d.inIDs("r.message_id", messageIDs)
	inRanged, args2 := s.d.inIDs("m.id", messageIDs)
	var rows []readerRow
	err := s.r.SelectContext(ctx, &rows, s.rebind(`WITH c AS MATERIALIZED (
			SELECT m.id, m.matter_id, p.user_id, `+rangeEnd("p.user_id")+` AS to_id
			FROM messages m
			JOIN read_positions p ON p.matter_id = m.matter_id AND p.up_to >= m.id AND p.user_id <> m.sender_id
			WHERE `+inRanged+` AND m.deleted_at IS NULL)
		SELECT r.message_id, 0 AS ranged, r.user_id, r.read_at FROM message_reads r WHERE `+inSingle+`
		UNION ALL
		SELECT c.id, 1, g.user_id, g.read_at
		FROM c JOIN read_ranges g ON g.matter_id = c.matter_id AND g.user_id = c.user_id AND g.to_id = c.to_id AND g.from_id < c.id`),
		append(args2, args...)...)
	if err != nil {
		return nil, fmt.Errorf("persistence: readers: %w", err)
	}
	return readers(rows), nil
}

// readers groups receipts by message, oldest read first (then by user); a
// single read wins over a range's for the same message and user.
func readers(rows []readerRow) map[int64][]Reader {
	type key struct{ msg, user int64 }
	single := map[key]bool{}
	for _, r := range rows {
		if !r.Ranged {
			single[key{r.MessageID, r.UserID}] = true
		}
	}
	out := map[int64][]Reader{}
	for _, r := range rows {
		if r.Ranged && single[key{r.MessageID, r.UserID}] {
			continue
		}
		r.ReadAt = r.ReadAt.UTC()
		out[r.MessageID] = append(out[r.MessageID], r.Reader)
	}
	for _, rs := range out {
		slices.SortFunc(rs, func(a, b Reader) int {
			return cmp.Or(a.ReadAt.Compare(b.ReadAt), cmp.Compare(a.UserID, b.UserID))
		})
	}
	return out
}

func (s *sqlStore) UnreadCounts(ctx context.Context, userID int64) (map[int64]int, error) {
	// The definition, from the receipts alone (single reads and ranges),
	// not from the watermark. The LEFT JOIN keeps matters with nothing
	// unread as zero rows.
	rows, err := s.r.QueryContext(ctx, s.rebind(`SELECT mm.matter_id, COUNT(m.id)
		FROM members mm
		LEFT JOIN messages m ON m.matter_id = mm.matter_id AND m.sender_id <> ? AND m.deleted_at IS NULL
			AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = ?)
			AND NOT EXISTS (SELECT 1 FROM read_ranges g
				WHERE g.matter_id = m.matter_id AND g.user_id = ? AND g.from_id < m.id AND g.to_id >= m.id)
		WHERE mm.user_id = ?
		GROUP BY mm.matter_id`), userID, userID, userID, userID)
	if err != nil {
		return nil, fmt.Errorf("persistence: unread counts: %w", err)
	}
	return scanCounts(rows)
}

func (s *sqlStore) UnreadState(ctx context.Context, userID int64) (map[int64]MatterUnread, error) {
	// One statement, so counts, last ids and read versions share a snapshot.
	rows, err := s.r.QueryContext(ctx, s.rebind(s.d.unreadState), userID, userID, userID)
	if err != nil {
		return nil, fmt.Errorf("persistence: unread state: %w", err)
	}
	return scanState(rows)
}

// unreadStateSQL is UnreadState's statement with newestID, the dialect's
// subquery for a matter's (mm's) newest message id. The count starts after
// the member's watermark: below it everything is read.
func unreadStateSQL(newestID string) string {
	return `SELECT mm.matter_id,
			(SELECT COUNT(*) FROM messages m
				WHERE m.matter_id = mm.matter_id AND m.id > COALESCE(p.up_to, 0) AND m.sender_id <> ? AND m.deleted_at IS NULL
				AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = ?)),
			COALESCE(` + newestID + `, 0),
			mm.read_seq
		FROM members mm
		LEFT JOIN read_positions p ON p.matter_id = mm.matter_id AND p.user_id = mm.user_id
		WHERE mm.user_id = ?`
}
