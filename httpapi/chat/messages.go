package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/unread"
	"github.com/parley-chat/parley/persistence"
)

// Bare event names; the configured namespace is prepended (App\Events\MessageSent).
const (
	evMessageSent        = "MessageSent"
	evMessageReceived    = "MessageReceived" // a read receipt
	evMessageUpdated     = "MessageUpdated"
	evUnreadCountUpdated = "UnreadCountUpdated"
	evMessagesRead       = "MessagesRead" // a read of everything up to a message
)

// eventName is namespace + `\` + bare, or bare when the namespace is empty,
// the name Laravel broadcasts a class under and Echo's listen() expects.
func (s *Service) eventName(bare string) string {
	if s.ns == "" {
		return bare
	}
	return s.ns + `\` + bare
}

var socketIDPattern = regexp.MustCompile(`^\d+\.\d+$`)

// excludedSocket is the X-Socket-ID header (Laravel's toOthers()) if it is a
// socket id, else "".
func excludedSocket(c *gin.Context) string {
	if id := c.GetHeader("X-Socket-ID"); socketIDPattern.MatchString(id) {
		return id
	}
	return ""
}

// broadcast publishes one event to channels. Call it only after the data it
// describes committed: it is never refused (the write was, before it
// committed, if the node could not publish; see publishable).
func (s *Service) broadcast(bare string, channels []string, payload any, exceptSocket string) {
	data, err := json.Marshal(payload)
	if err != nil {
		s.log.Error("chat: encode event", "event", bare, "error", err)
		return
	}
	s.node.PublishCommitted(actors.Event{AppID: s.app.ID, Channels: channels, Name: s.eventName(bare), Data: string(data), SocketID: exceptSocket})
}

// unreadJSON is GET /api/messages/unread-count and the UnreadCountUpdated event.
type unreadJSON struct {
	UserID      int64         `json:"user_id"`
	UnreadCount int           `json:"unread_count"`
	Matters     map[int64]int `json:"matters"` // keys are written as strings: {"4": 2}
}

func newUnreadJSON(c unread.Counts) unreadJSON {
	m := c.Matters
	if m == nil {
		m = map[int64]int{}
	}
	return unreadJSON{UserID: c.UserID, UnreadCount: c.Total, Matters: m}
}

// publishUnread is the counters' publisher: UnreadCountUpdated to the user.
func (s *Service) publishUnread(c unread.Counts) {
	s.broadcast(evUnreadCountUpdated, []string{userChannel(c.UserID)}, newUnreadJSON(c), "")
}

// receiptJSON is a read receipt: the PUT /read answer and MessageReceived.
type receiptJSON struct {
	MessageID      int64   `json:"message_id"`
	ReaderID       int64   `json:"reader_id"`
	ReadAt         *string `json:"read_at"` // null when the reader is the sender
	ClientMatterID int64   `json:"client_matter_id"`
}

// writeTimeout bounds a write; writes run detached from the client's
// connection so a client that hangs up cannot cancel a commit half-way
// between "persisted" and "broadcast".
const writeTimeout = 10 * time.Second

func writeContext(c *gin.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.Request.Context()), writeTimeout)
}

// routeID parses the :id path parameter; false means 404 was answered.
func routeID(c *gin.Context, what string) (int64, bool) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		abortMessage(c, http.StatusNotFound, what+" not found.")
		return 0, false
	}
	return id, true
}

// storeFailed answers a store error, 404 with notFound's words for
// persistence.ErrNotFound and 503 for any other, and says whether err was
// one.
func (s *Service) storeFailed(c *gin.Context, err error, notFound string) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, persistence.ErrNotFound):
		abortMessage(c, http.StatusNotFound, notFound)
	default:
		s.unavailable(c, err)
	}
	return true
}

// requireMember answers 403 unless userID is a member of matterID (503 if
// the store fails); false means it answered.
func (s *Service) requireMember(ctx context.Context, c *gin.Context, matterID, userID int64) bool {
	member, err := s.st.IsMember(ctx, matterID, userID)
	if err != nil {
		s.unavailable(c, err)
		return false
	}
	if !member {
		abortMessage(c, http.StatusForbidden, msgForbidden)
		return false
	}
	return true
}

// membersWith returns the members of matterID, and answers 403 unless
// userID is one of them (503 if the store fails); false means it answered.
func (s *Service) membersWith(ctx context.Context, c *gin.Context, matterID, userID int64) ([]int64, bool) {
	members, err := s.st.MemberIDs(ctx, matterID)
	if err != nil {
		s.unavailable(c, err)
		return nil, false
	}
	if !slices.Contains(members, userID) {
		abortMessage(c, http.StatusForbidden, msgForbidden)
		return nil, false
	}
	return members, true
}

// messageBody validates the message field: required, a string, non-blank
// once trimmed, at most MaxMessageLength characters (runes).
func (s *Service) messageBody(in input, v *validation) string {
	body := in.requiredString(v, "message")
	if n := utf8.RuneCountInString(body); n > s.cfg.MaxMessageLength {
		v.add("message", fmt.Sprintf("The message field must not be greater than %d characters.", s.cfg.MaxMessageLength))
	}
	return body
}

// existingMatter validates client_matter_id: required, an integer, an existing
// matter. err is a database failure.
func (s *Service) existingMatter(ctx context.Context, in input, v *validation) (int64, error) {
	id, ok := in.requiredInteger(v, "client_matter_id")
	if !ok {
		return 0, nil
	}
	if id <= 0 {
		v.add("client_matter_id", "The selected client matter id is invalid.")
		return 0, nil
	}
	_, err := s.st.MatterByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		v.add("client_matter_id", "The selected client matter id is invalid.")
		return 0, nil
	}
	return id, err
}

func others(members []int64, except int64) []int64 {
	out := make([]int64, 0, len(members))
	for _, m := range members {
		if m != except {
			out = append(out, m)
		}
	}
	return out
}

// messageChannels are the matter's channel and every other member's user channel.
func messageChannels(matterID int64, recipients []int64) []string {
	ch := make([]string, 0, len(recipients)+1)
	ch = append(ch, matterChannel(matterID))
	for _, id := range recipients {
		ch = append(ch, userChannel(id))
	}
	return ch
}

// maxClientMessageID is the longest client_message_id, in characters.
const maxClientMessageID = 64

// clientMessageID validates the optional client_message_id: absent or null,
// else a string of 1 to 64 characters, taken as is (an opaque key: not
// trimmed, and an empty string is refused rather than taken for absent).
func clientMessageID(in input, v *validation) string {
	const field = "client_message_id"
	raw, ok := in[field]
	if !ok || raw == nil {
		return ""
	}
	s, isStr := raw.(string)
	switch {
	case !isStr:
		v.add(field, "The client message id field must be a string.")
	case s == "":
		v.add(field, "The client message id field must be at least 1 character.")
	case !textOK(v, field, s):
	case utf8.RuneCountInString(s) > maxClientMessageID:
		v.add(field, fmt.Sprintf("The client message id field must not be greater than %d characters.", maxClientMessageID))
	default:
		return s
	}
	return ""
}

// sendMessage is POST /api/messages/send {message, client_matter_id,
// client_message_id?} → 201, or 200 with the message stored first when the
// sender already sent this client_message_id (nothing is stored or
// broadcast again). Order: validate (422), then the group commit checks the
// matter (422) and membership (403) in the transaction that stores the
// message; after the commit, MessageSent to the matter and to every other
// member, then their unread counters.
func (s *Service) sendMessage(c *gin.Context) {
	in, ok := readInput(c)
	if !ok {
		return
	}
	me := userOf(c)
	var v validation
	body := s.messageBody(in, &v)
	matterID, ok := in.requiredInteger(&v, "client_matter_id")
	if ok && matterID <= 0 {
		v.add("client_matter_id", "The selected client matter id is invalid.")
		ok = false
	}
	cid := clientMessageID(in, &v)
	if v.failed() {
		if ok {
			// Laravel lists every field's errors: check the matter too.
			if _, err := s.st.MatterByID(c.Request.Context(), matterID); errors.Is(err, persistence.ErrNotFound) {
				v.add("client_matter_id", "The selected client matter id is invalid.")
			} else if err != nil {
				s.unavailable(c, err)
				return
			}
		}
		v.render(c)
		return
	}
	// The group commit stores the message with whatever other sends are
	// waiting; the hook runs once it committed, in commit order, so each
	// matter's MessageSent events go out in id order.
	except := excludedSocket(c)
	r := s.sender.Send(persistence.Send{MatterID: matterID, SenderID: me.ID, Body: body, ClientMessageID: cid, At: time.Now()},
		func(r persistence.SendResult) {
			if r.Repeat {
				return
			}
			recipients := others(r.Members, r.Message.SenderID)
			mj := newMessageJSON(r.Message)
			mj.PreviousID = &r.PreviousID
			s.broadcast(evMessageSent, messageChannels(r.Message.MatterID, recipients), gin.H{"message": mj}, except)
			s.countAndPush(recipients, r.Message)
		})
	switch {
	case errors.Is(r.Err, persistence.ErrNotFound):
		// No such matter (or the sender went away since authenticating).
		v.add("client_matter_id", "The selected client matter id is invalid.")
		v.render(c)
		return
	case errors.Is(r.Err, persistence.ErrForbidden):
		abortMessage(c, http.StatusForbidden, msgForbidden)
		return
	case errors.Is(r.Err, persistence.ErrConflict):
		v.add("client_message_id", "The client message id has already been used for a message in another matter.")
		v.render(c)
		return
	case r.Err != nil:
		s.unavailable(c, r.Err)
		return
	}
	status := http.StatusCreated
	if r.Repeat {
		status = http.StatusOK
	}
	mj := viewedBy(r.Message, me.ID, nil)
	mj.PreviousID = &r.PreviousID
	c.JSON(status, gin.H{"data": mj})
}

// Paging limits for GET /api/messages.
const (
	defaultPageSize = 20
	maxPageSize     = 100
)

// listMessages is GET /api/messages?client_matter_id=&page=&limit=&after_id=&before_id=
// in Laravel's paginator shape.
//
// Ordering: without a cursor, newest first (Laravel's latest()), paged by
// page. after_id=N returns the messages after N oldest first, so a client
// that was offline fetches exactly what it missed by repeating with the last
// id it got until data is empty. before_id=N returns the messages before N
// newest first (scrolling back). With both, the messages strictly between,
// oldest first. With a cursor, total counts the messages past it, page must
// be 1, and last_page says how many more requests of this limit remain.
func (s *Service) listMessages(c *gin.Context) {
	in := queryInput(c)
	ctx := c.Request.Context()
	var v validation
	matterID, err := s.existingMatter(ctx, in, &v)
	if err != nil {
		s.unavailable(c, err)
		return
	}
	page := optionalInt(in, &v, "page", 1, 1, 0)
	limit := optionalInt(in, &v, "limit", defaultPageSize, 1, maxPageSize)
	afterID := optionalInt(in, &v, "after_id", 0, 1, 0)
	beforeID := optionalInt(in, &v, "before_id", 0, 1, 0)
	if page > 1 && (afterID > 0 || beforeID > 0) {
		v.add("page", "The page field cannot be combined with after_id or before_id.")
	}
	if v.failed() {
		v.render(c)
		return
	}
	if !s.requireMember(ctx, c, matterID, userOf(c).ID) {
		return
	}
	msgs, total, err := s.st.ListMessages(ctx, persistence.MessageQuery{
		MatterID: matterID, Page: int(page), Limit: int(limit), AfterID: afterID, BeforeID: beforeID,
	})
	if err != nil {
		s.unavailable(c, err)
		return
	}
	data, err := s.viewAll(ctx, msgs, userOf(c).ID)
	if err != nil {
		s.unavailable(c, err)
		return
	}
	lastPage := max(1, (int64(total)+limit-1)/limit)
	var from, to *int64
	if len(data) > 0 {
		f := (page-1)*limit + 1
		t := f + int64(len(data)) - 1
		from, to = &f, &t
	}
	c.JSON(http.StatusOK, gin.H{
		"data": data, "current_page": page, "per_page": limit, "total": total,
		"last_page": lastPage, "from": from, "to": to,
	})
}

// optionalInt reads an optional integer field with bounds (hi 0 = none).
func optionalInt(in input, v *validation, field string, def, lo, hi int64) int64 {
	n, present, ok := in.integer(v, field)
	if !present {
		return def
	}
	if !ok {
		return def
	}
	if n < lo {
		v.add(field, fmt.Sprintf("The %s field must be at least %d.", words(field), lo))
		return def
	}
	if hi > 0 && n > hi {
		v.add(field, fmt.Sprintf("The %s field must not be greater than %d.", words(field), hi))
		return def
	}
	return n
}

// routeMessage loads the message named by the :id path parameter; false
// means 404 or 503 was answered.
func (s *Service) routeMessage(ctx context.Context, c *gin.Context) (persistence.Message, bool) {
	id, ok := routeID(c, "Message")
	if !ok {
		return persistence.Message{}, false
	}
	msg, err := s.st.MessageByID(ctx, id)
	return msg, !s.storeFailed(c, err, "Message not found.")
}

// ownMessage is the handler of a change only the message's sender may
// make: change runs under the write deadline with the caller and the
// message the path names (see routeMessage), 403 for anyone but its sender.
func (s *Service) ownMessage(change func(ctx context.Context, c *gin.Context, me persistence.User, msg persistence.Message)) gin.HandlerFunc {
	return func(c *gin.Context) {
		me := userOf(c)
		ctx, cancel := writeContext(c)
		defer cancel()
		msg, ok := s.routeMessage(ctx, c)
		if !ok {
			return
		}
		if msg.SenderID != me.ID {
			abortMessage(c, http.StatusForbidden, msgForbidden)
			return
		}
		change(ctx, c, me, msg)
	}
}

// markRead is PUT /api/messages/{id}/read. The first read by a member stores
// a receipt, sends MessageReceived to the sender's user channel and the
// matter channel, and updates the reader's unread count; repeating it
// answers the same read_at and broadcasts nothing. A sender reading their own
// message is a 200 no-op with read_at null: own messages are never unread,
// so there is nothing to record and no receipt to send. So is reading a
// deleted message: its deletion took it out of every unread count.
func (s *Service) markRead(c *gin.Context) {
	me := userOf(c)
	ctx, cancel := writeContext(c)
	defer cancel()
	msg, ok := s.routeMessage(ctx, c)
	if !ok || !s.requireMember(ctx, c, msg.MatterID, me.ID) {
		return
	}
	rj := receiptJSON{MessageID: msg.ID, ReaderID: me.ID, ClientMatterID: msg.MatterID}
	if msg.SenderID == me.ID || msg.DeletedAt != nil {
		c.JSON(http.StatusOK, gin.H{"data": rj})
		return
	}
	r, created, err := s.st.MarkRead(ctx, msg.ID, me.ID, time.Now())
	if errors.Is(err, persistence.ErrDeleted) {
		c.JSON(http.StatusOK, gin.H{"data": rj}) // deleted since the check above
		return
	}
	if s.storeFailed(c, err, "Message not found.") {
		return
	}
	rj.ReadAt = timePtrJSON(&r.ReadAt)
	if created {
		s.broadcast(evMessageReceived, []string{userChannel(msg.SenderID), matterChannel(msg.MatterID)}, rj, excludedSocket(c))
		s.counters.Read(me.ID, msg.MatterID, r.ReadSeq, 1)
	}
	c.JSON(http.StatusOK, gin.H{"data": rj})
}

// readUpToJSON is the PUT /api/matters/{id}/read answer and MessagesRead.
type readUpToJSON struct {
	ClientMatterID int64  `json:"client_matter_id"`
	ReaderID       int64  `json:"reader_id"`
	UpToID         int64  `json:"up_to_id"`
	ReadAt         string `json:"read_at"`
	Count          int    `json:"count"` // messages this request marked read
}

// markMatterRead is PUT /api/matters/{id}/read {up_to_id}: the caller has
// read every message from others in the matter up to up_to_id (what a
// client does when a conversation is opened). One statement marks them; if
// any was unread, one MessagesRead goes to the matter channel and to the
// user channels of their senders, and the caller's counter gets one update.
// Repeating it marks nothing and broadcasts nothing.
func (s *Service) markMatterRead(c *gin.Context) {
	me := userOf(c)
	matterID, ok := routeID(c, "Matter")
	if !ok {
		return
	}
	ctx, cancel := writeContext(c)
	defer cancel()
	// Laravel's order: the route's model (404), authorization (403), then
	// the body (422).
	if _, err := s.st.MatterByID(ctx, matterID); s.storeFailed(c, err, "Matter not found.") {
		return
	}
	if !s.requireMember(ctx, c, matterID, me.ID) {
		return
	}
	var upTo int64
	if !validInput(c, readInput, func(in input, v *validation) {
		var ok bool
		if upTo, ok = in.requiredInteger(v, "up_to_id"); ok && upTo <= 0 {
			v.add("up_to_id", "The up to id field must be at least 1.")
		}
	}) {
		return
	}
	// up_to_id must name a message of this matter: a client marks read
	// what it showed, and an id it made up (or one of another matter)
	// would mark messages nobody showed it.
	if msg, err := s.st.MessageByID(ctx, upTo); errors.Is(err, persistence.ErrNotFound) || (err == nil && msg.MatterID != matterID) {
		var v validation
		v.add("up_to_id", "The selected up to id is invalid.")
		v.render(c)
		return
	} else if err != nil {
		s.unavailable(c, err)
		return
	}
	r, err := s.st.MarkReadUpTo(ctx, matterID, me.ID, upTo, time.Now())
	if errors.Is(err, persistence.ErrNotFound) {
		abortMessage(c, http.StatusForbidden, msgForbidden) // left the matter since
		return
	}
	if err != nil {
		s.unavailable(c, err)
		return
	}
	rj := readUpToJSON{ClientMatterID: matterID, ReaderID: me.ID, UpToID: upTo, ReadAt: timeJSON(r.ReadAt), Count: r.Marked}
	if r.Marked > 0 {
		ch := []string{matterChannel(matterID)}
		for _, id := range r.SenderIDs {
			ch = append(ch, userChannel(id))
		}
		s.broadcast(evMessagesRead, ch, rj, excludedSocket(c))
		s.counters.Read(me.ID, matterID, r.ReadSeq, r.Marked)
	}
	c.JSON(http.StatusOK, gin.H{"data": rj})
}

// editMessage is PUT /api/messages/{id} {message}: the sender (still a
// member) edits; MessageUpdated goes where MessageSent went. A deleted
// message cannot be edited (409). See ownMessage.
func (s *Service) editMessage(ctx context.Context, c *gin.Context, me persistence.User, msg persistence.Message) {
	if msg.DeletedAt != nil {
		abortMessage(c, http.StatusConflict, msgDeleted)
		return
	}
	var body string
	if !validInput(c, readInput, func(in input, v *validation) { body = s.messageBody(in, v) }) {
		return
	}
	members, ok := s.membersWith(ctx, c, msg.MatterID, me.ID)
	if !ok {
		return
	}
	updated, err := s.st.UpdateMessage(ctx, msg.ID, body, time.Now())
	if errors.Is(err, persistence.ErrDeleted) {
		abortMessage(c, http.StatusConflict, msgDeleted) // deleted since the check above
		return
	}
	if s.storeFailed(c, err, "Message not found.") {
		return
	}
	mj := newMessageJSON(updated)
	s.broadcast(evMessageUpdated, messageChannels(msg.MatterID, others(members, me.ID)), gin.H{"message": mj}, excludedSocket(c))
	// The editor's answer has the read state GET /api/messages shows; the
	// edit is committed, so a failure to read receipts only leaves them out.
	answer := viewedBy(updated, me.ID, nil)
	if views, err := s.viewAll(ctx, []persistence.Message{updated}, me.ID); err == nil {
		answer = views[0]
	}
	c.JSON(http.StatusOK, gin.H{"data": answer})
}

// unreadCount is GET /api/messages/unread-count, answered by the user's
// unread counter (which equals the database).
func (s *Service) unreadCount(c *gin.Context) {
	counts, err := s.counters.Get(userOf(c).ID)
	if err != nil {
		s.unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, newUnreadJSON(counts))
}

type matterJSON struct {
	ID          int64                    `json:"id"`
	Title       string                   `json:"title"`
	CreatedAt   string                   `json:"created_at"`
	UnreadCount int                      `json:"unread_count"`
	LastMessage *messageJSON             `json:"last_message"` // null: no message yet
	Members     []persistence.MemberName `json:"members"`      // {id, name}, ascending id
}

// listMatters is GET /api/matters: the caller's matters, the one with the
// newest message first (a matter without messages counts from its
// creation), each with its unread count, last message as the caller sees
// it (deleted or not) and members. Three queries whatever the number of
// matters, plus the caller's unread counter.
func (s *Service) listMatters(c *gin.Context) {
	me := userOf(c)
	ctx := c.Request.Context()
	matters, err := s.st.MatterSummaries(ctx, me.ID)
	if err != nil {
		s.unavailable(c, err)
		return
	}
	var lasts []persistence.Message
	for _, m := range matters {
		if m.LastMessage != nil {
			lasts = append(lasts, *m.LastMessage)
		}
	}
	views, err := s.viewAll(ctx, lasts, me.ID)
	if err != nil {
		s.unavailable(c, err)
		return
	}
	counts, err := s.counters.Get(me.ID)
	if err == nil && slices.ContainsFunc(matters, func(m persistence.MatterSummary) bool { _, ok := counts.Matters[m.ID]; return !ok }) {
		// Joined since the counter loaded (an admin command in another
		// process): have it reload rather than report a stale zero.
		s.counters.Reload(me.ID)
		counts, err = s.counters.Get(me.ID)
	}
	if err != nil {
		s.unavailable(c, err)
		return
	}
	data := make([]matterJSON, len(matters))
	for i, m := range matters {
		data[i] = matterJSON{ID: m.ID, Title: m.Title, CreatedAt: timeJSON(m.CreatedAt), UnreadCount: counts.Matters[m.ID], Members: m.Members}
		if m.LastMessage != nil {
			data[i].LastMessage = &views[0]
			views = views[1:]
		}
	}
	c.JSON(http.StatusOK, gin.H{"data": data})
}
