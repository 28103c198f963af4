-- Read state per member (see the PostgreSQL migration of the same number):
-- read_up_to says every message from others at or below it in the matter has
-- a message_reads row for this member; read_seq versions the member's reads
-- for the unread counters.
ALTER TABLE members ADD COLUMN read_up_to INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;

-- Covers the unread count's range over (matter_id, id) with its sender_id filter.
CREATE INDEX messages_matter_id_id_sender_idx ON messages (matter_id, id, sender_id);
DROP INDEX messages_matter_id_id_idx;
