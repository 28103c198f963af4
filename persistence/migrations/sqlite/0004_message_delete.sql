-- Soft delete (see the PostgreSQL migration of the same number): deleted_at
-- set and the text removed; the row keeps its place in the history.
ALTER TABLE messages ADD COLUMN deleted_at DATETIME;

-- Covers the unread count's range over (matter_id, id) with its sender_id
-- and deleted_at filters.
CREATE INDEX messages_matter_id_id_cover_idx ON messages (matter_id, id, sender_id, deleted_at);
DROP INDEX messages_matter_id_id_sender_idx;
