-- The admin API's users (see the PostgreSQL migration of the same number):
-- an optional external id, unique when set (a UNIQUE index allows many
-- NULLs), and a deletion time; deleted users are anonymised in place, and a
-- user without a password has password_hash ''.
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN deleted_at DATETIME;
CREATE UNIQUE INDEX users_external_id_key ON users (external_id);
