package chat

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/persistence"
)

// evMessageDeleted is broadcast where MessageSent went when a message is deleted.
const evMessageDeleted = "MessageDeleted"

// msgDeleted answers an edit of a deleted message.
const msgDeleted = "This message was deleted."

// readerJSON is one entry of a message's read_by.
type readerJSON struct {
	UserID int64  `json:"user_id"`
	ReadAt string `json:"read_at"`
}

// viewedBy is the message as viewer sees it, given its receipts (oldest
// first). Own messages are read, with read_by naming who else has read them
// and read_at the first of those reads (what a one-to-one chat shows).
// Others' messages are read once the viewer has read them, read_at being
// when. A deleted message has no read state left to show: read, nobody in
// read_by, read_at null.
func viewedBy(m persistence.Message, viewer int64, receipts []persistence.Reader) messageJSON {
	mj := newMessageJSON(m)
	if m.DeletedAt != nil {
		return mj
	}
	mj.IsRead = m.SenderID == viewer
	for _, r := range receipts {
		if r.UserID == m.SenderID {
			continue
		}
		at := timeJSON(r.ReadAt)
		mj.ReadBy = append(mj.ReadBy, readerJSON{UserID: r.UserID, ReadAt: at})
		if r.UserID == viewer || (m.SenderID == viewer && mj.ReadAt == nil) {
			mj.ReadAt = &at
		}
		if r.UserID == viewer {
			mj.IsRead = true
		}
	}
	return mj
}

// viewAll renders messages as viewer sees them, with one query for the
// receipts of them all (deleted messages need none).
func (s *Service) viewAll(ctx context.Context, msgs []persistence.Message, viewer int64) ([]messageJSON, error) {
	ids := make([]int64, 0, len(msgs))
	for _, m := range msgs {
		if m.DeletedAt == nil {
			ids = append(ids, m.ID)
		}
	}
	receipts, err := s.st.Readers(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]messageJSON, len(msgs))
	for i, m := range msgs {
		out[i] = viewedBy(m, viewer, receipts[m.ID])
	}
	return out, nil
}

// deleteMessage is DELETE /api/messages/{id}: the sender (still a member)
// deletes their message. Soft: the message stays in the history with
// deleted_at set and its text removed. MessageDeleted goes where
// MessageSent went, and every member who had not read it gets it out of
// their unread count (one UnreadCountUpdated each). Deleting it again
// answers the same and broadcasts nothing. See ownMessage.
func (s *Service) deleteMessage(ctx context.Context, c *gin.Context, me persistence.User, msg persistence.Message) {
	members, ok := s.membersWith(ctx, c, msg.MatterID, me.ID)
	if !ok {
		return
	}
	if msg.DeletedAt != nil {
		c.JSON(http.StatusOK, gin.H{"data": newMessageJSON(msg)})
		return
	}
	del, err := s.st.DeleteMessage(ctx, msg.ID, time.Now())
	if s.storeFailed(c, err, "Message not found.") {
		return
	}
	mj := newMessageJSON(del.Message)
	if del.Deleted {
		s.broadcast(evMessageDeleted, messageChannels(msg.MatterID, others(members, me.ID)), gin.H{"message": mj}, excludedSocket(c))
		for _, u := range del.Unread {
			s.counters.Read(u.UserID, msg.MatterID, u.ReadSeq, 1)
		}
	}
	c.JSON(http.StatusOK, gin.H{"data": mj})
}
