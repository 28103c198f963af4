-- The admin API's users: an optional external id (the id of the user in the
-- application that manages them, e.g. the Laravel app's users.id), unique
-- when set, and a deletion time. Deleted users are anonymised in place, never
-- removed, so their messages stay readable and their id is never reused.
-- A user created without a password has password_hash '' and cannot log in.
ALTER TABLE users
    ADD COLUMN external_id TEXT,
    ADD COLUMN deleted_at  TIMESTAMPTZ;
CREATE UNIQUE INDEX users_external_id_key ON users (external_id);
