-- Idempotent sends: a client may name each send (its offline queue's id for
-- the message), and a repeat of the name by the same sender stores nothing.
-- NULLs are distinct in a unique index, so messages without one never clash.
ALTER TABLE messages ADD COLUMN client_message_id TEXT;
CREATE UNIQUE INDEX messages_sender_id_client_message_id_key ON messages (sender_id, client_message_id);
-- The unique index leads with sender_id, so it also serves the foreign key's
-- ON DELETE CASCADE from users: the older single-column index only costs
-- every insert another index update.
DROP INDEX messages_sender_id_idx;
