-- Soft delete: a deleted message keeps its row, its id and its place in the
-- history, with deleted_at set and its text removed, so clients can show
-- "message deleted" where it was.
ALTER TABLE messages ADD COLUMN deleted_at TIMESTAMPTZ;

-- Unread counts and "read up to" skip deleted messages: carrying deleted_at
-- in the covering index keeps them index-only scans.
CREATE INDEX messages_matter_id_id_cover_idx ON messages (matter_id, id) INCLUDE (sender_id, deleted_at);
DROP INDEX messages_matter_id_id_sender_idx;

-- members.read_up_to (0002) keeps its promise with deletion in the picture:
-- every message from others at or below it is read or deleted. Deleting a
-- message gives each member who had not read it a receipt at the deletion
-- time (see DeleteMessage), so a read racing the deletion either wins that
-- row or finds it taken, and the message leaves each unread count once.
