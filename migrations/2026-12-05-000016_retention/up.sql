-- Retention: notifications stored more than `retention.days` ago are
-- deleted by the workers, user by user, oldest first, a chunk per
-- transaction (never a whole-table DELETE, never a long lock).
--
-- The index finds the users with old notifications; a user's old ones are
-- then a prefix of their sequence (stored_at grows with seq), deleted
-- through notifications_user_seq. `trimmed_through` is the highest seq
-- deleted so: every notification of the user up to it is gone, so a
-- device that was away drops the ones it holds (the `hello` frame says it).
--
-- The CREATE INDEX reads the whole table and blocks writes to it (not
-- reads) until the migration commits: on a large table, create it first
-- with CREATE INDEX CONCURRENTLY (docs/operations.md, "Migrations").
ALTER TABLE user_inbox ADD COLUMN trimmed_through bigint NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS notifications_stored_at ON notifications (stored_at);
