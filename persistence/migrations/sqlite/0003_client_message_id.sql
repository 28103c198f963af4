-- Idempotent sends (see the PostgreSQL migration of the same number): a
-- repeat of (sender_id, client_message_id) stores nothing; NULLs never clash.
ALTER TABLE messages ADD COLUMN client_message_id TEXT;
CREATE UNIQUE INDEX messages_sender_id_client_message_id_key ON messages (sender_id, client_message_id);
-- The unique index leads with sender_id and serves the cascade from users.
DROP INDEX messages_sender_id_idx;
