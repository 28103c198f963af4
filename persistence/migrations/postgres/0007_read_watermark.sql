-- Read state as a watermark. Marking a matter read up to a message used to
-- insert one message_reads row per message it covered, so its cost grew with
-- the backlog it cleared. Now:
--
-- read_positions: per (matter, user) the watermark up_to: every message from
-- others in the matter with an id at or below it is read or deleted. It
-- replaces members.read_up_to (see below) and, unlike it, outlives a
-- membership (so a former member's reads keep showing, and come back with
-- the member).
-- read_ranges: one row per move of a watermark: the messages from others with
-- from_id < id <= to_id, not deleted, were read at read_at (the time of that
-- move), unless a message_reads row of the same (message, user) says
-- otherwise (it was read on its own, before). A user's ranges in a matter
-- never overlap and never pass their up_to.
-- message_reads keeps the reads of single messages (PUT /api/messages/{id}/read
-- above the watermark) and whatever below could not be turned into ranges.
--
-- The existing receipts are converted: each member's watermark goes as far as
-- every message from others is read (at least members.read_up_to), and below
-- it each run of two or more consecutive messages from others read at the
-- same time (what a read up to a message wrote) becomes one range; every
-- other receipt stays as it is. Former members' receipts stay as they are.
SET LOCAL work_mem = '256MB';

CREATE TABLE read_positions (
    matter_id BIGINT NOT NULL REFERENCES matters (id) ON DELETE CASCADE,
    user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    up_to     BIGINT NOT NULL,
    PRIMARY KEY (matter_id, user_id)
);
-- ON DELETE CASCADE from users needs this to avoid a full scan.
CREATE INDEX read_positions_user_id_idx ON read_positions (user_id);

CREATE TABLE read_ranges (
    matter_id BIGINT      NOT NULL,
    user_id   BIGINT      NOT NULL,
    from_id   BIGINT      NOT NULL,
    to_id     BIGINT      NOT NULL,
    read_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (matter_id, user_id, to_id),
    FOREIGN KEY (matter_id, user_id) REFERENCES read_positions (matter_id, user_id) ON DELETE CASCADE
);

INSERT INTO read_positions (matter_id, user_id, up_to)
SELECT matter_id, user_id, up_to FROM (
    SELECT f.matter_id, f.user_id, COALESCE(CASE
            WHEN f.first_unread IS NULL THEN (SELECT MAX(x.id) FROM messages x WHERE x.matter_id = f.matter_id)
            ELSE (SELECT MAX(x.id) FROM messages x WHERE x.matter_id = f.matter_id AND x.id < f.first_unread)
        END, 0) AS up_to
    FROM (
        SELECT mm.matter_id, mm.user_id,
            (SELECT m.id FROM messages m
                WHERE m.matter_id = mm.matter_id AND m.id > mm.read_up_to AND m.sender_id <> mm.user_id AND m.deleted_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message_id = m.id AND r.user_id = mm.user_id)
                ORDER BY m.id LIMIT 1) AS first_unread
        FROM members mm
    ) f
) p
WHERE up_to > 0;

-- Below a watermark every message from others is read, so its receipts in id
-- order are those messages in id order: a run is a stretch of equal read_at.
CREATE TEMPORARY TABLE parley_read_runs ON COMMIT DROP AS
WITH pairs AS (
    SELECT p.matter_id, p.user_id, m.id, r.read_at,
        LAG(r.read_at) OVER w AS prev_at, LEAD(r.read_at) OVER w AS next_at
    FROM read_positions p
    JOIN messages m ON m.matter_id = p.matter_id AND m.id <= p.up_to AND m.sender_id <> p.user_id AND m.deleted_at IS NULL
    JOIN message_reads r ON r.message_id = m.id AND r.user_id = p.user_id
    WINDOW w AS (PARTITION BY p.matter_id, p.user_id ORDER BY m.id)
), runs AS (
    -- Receipts in a run of two or more, numbered by where their run starts.
    SELECT matter_id, user_id, id, read_at,
        SUM(CASE WHEN prev_at IS NOT NULL AND prev_at = read_at THEN 0 ELSE 1 END)
            OVER (PARTITION BY matter_id, user_id ORDER BY id) AS run
    FROM pairs
    WHERE read_at = prev_at OR read_at = next_at
)
SELECT matter_id, user_id, read_at, MIN(id) AS first_id, MAX(id) AS last_id
FROM runs GROUP BY matter_id, user_id, run, read_at;

INSERT INTO read_ranges (matter_id, user_id, from_id, to_id, read_at)
SELECT matter_id, user_id, first_id - 1, last_id, read_at FROM parley_read_runs;

DELETE FROM message_reads WHERE (message_id, user_id) IN (
    SELECT m.id, x.user_id FROM parley_read_runs x
    JOIN messages m ON m.matter_id = x.matter_id AND m.id BETWEEN x.first_id AND x.last_id
        AND m.sender_id <> x.user_id AND m.deleted_at IS NULL);

-- members.read_up_to is no longer read or written. It stays so that nodes
-- of the previous release, sharing the database while a cluster is switched
-- over, keep working instead of failing on a missing column: what they write
-- (receipt rows) reads right here, though their own unread counts miss the
-- reads stored as ranges until they stop.

-- A read up to a message subtracts the reader's single reads in the range it
-- covers: their receipts by (user, message).
CREATE INDEX message_reads_user_id_message_id_idx ON message_reads (user_id, message_id);
DROP INDEX message_reads_user_id_idx;

ANALYZE read_positions, read_ranges, message_reads;
