-- Parley's initial schema. Times are DATETIME columns holding text in
-- "2006-01-02 15:04:05.999999999-07:00" form (the driver's _time_format=sqlite),
-- always UTC, so they sort as text and scan back into time.Time.
-- AUTOINCREMENT keeps ids from being reused after deletes, like PostgreSQL
-- identities; message ids double as paging cursors.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT     NOT NULL,
    -- Stored lowercased by the store (Go's ToLower, which unlike SQLite's
    -- lower() is not ASCII-only).
    email         TEXT     NOT NULL UNIQUE,
    password_hash TEXT     NOT NULL,
    created_at    DATETIME NOT NULL
);

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_hash  TEXT     NOT NULL,
    expires_at   DATETIME,
    last_used_at DATETIME,
    created_at   DATETIME NOT NULL
);
CREATE INDEX tokens_user_id_idx ON tokens (user_id);

CREATE TABLE matters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    title      TEXT     NOT NULL,
    created_at DATETIME NOT NULL
);

CREATE TABLE members (
    matter_id INTEGER  NOT NULL REFERENCES matters (id) ON DELETE CASCADE,
    user_id   INTEGER  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at DATETIME NOT NULL,
    PRIMARY KEY (matter_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_user_id_idx ON members (user_id);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    matter_id  INTEGER  NOT NULL REFERENCES matters (id) ON DELETE CASCADE,
    sender_id  INTEGER  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body       TEXT     NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    edited_at  DATETIME
);
CREATE INDEX messages_matter_id_id_idx ON messages (matter_id, id);
-- ON DELETE CASCADE from users needs this to avoid a full scan.
CREATE INDEX messages_sender_id_idx ON messages (sender_id);

CREATE TABLE message_reads (
    message_id INTEGER  NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    INTEGER  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    read_at    DATETIME NOT NULL,
    PRIMARY KEY (message_id, user_id)
) WITHOUT ROWID;
CREATE INDEX message_reads_user_id_idx ON message_reads (user_id);
