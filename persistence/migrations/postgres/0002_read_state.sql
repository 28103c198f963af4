-- Read state per member, so unread counts and "read up to" touch only the
-- messages after what a member has read instead of the whole matter.
--
-- read_up_to: every message from others in the matter with an id at or below
-- it has a message_reads row for this member (0 = nothing is known). Only
-- PUT /api/matters/{id}/read moves it, in the transaction that inserts
-- those rows.
-- read_seq: bumped by every read that inserted rows, under the member row's
-- lock; the unread counters use it to tell a read they loaded from one they
-- are told about.
ALTER TABLE members
    ADD COLUMN read_up_to BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN read_seq   BIGINT NOT NULL DEFAULT 0;

-- The unread count and the list paths range over (matter_id, id) and filter
-- on sender_id: carrying sender_id in the index keeps them index-only.
CREATE INDEX messages_matter_id_id_sender_idx ON messages (matter_id, id) INCLUDE (sender_id);
DROP INDEX messages_matter_id_id_idx;
