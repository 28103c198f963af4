-- Push notifications: devices and mutes (see the PostgreSQL migration of the
-- same number).
CREATE TABLE devices (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform   TEXT     NOT NULL,
    token      TEXT     NOT NULL,
    p256dh     TEXT     NOT NULL DEFAULT '',
    auth       TEXT     NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    UNIQUE (platform, token)
);
CREATE INDEX devices_user_id_idx ON devices (user_id);

ALTER TABLE members ADD COLUMN muted BOOLEAN NOT NULL DEFAULT FALSE;
