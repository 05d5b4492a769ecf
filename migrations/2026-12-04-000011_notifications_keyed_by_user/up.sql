-- Every key of a user's data contains the user: the primary key of
-- notifications becomes (id, user_id), like user_inbox's and
-- user_preferences' (user_id), so the per-user tables can be distributed
-- by user_id (Citus: one distribution column, co-located tables, every
-- primary key and unique constraint containing it) without a uniqueness
-- PostgreSQL could no longer check across nodes. An id stays unique
-- because ingest makes every one (UUIDv7); what the key checks is that a
-- user's notification is stored once.
--
-- `id` stays first: ids are time-ordered, so the storing worker's inserts
-- still append at the index's right edge, and the previous release's
-- lookups by id alone (during a rolling upgrade) still use the index.
--
-- Rebuilds the primary key: the table is locked against reads and writes
-- until the migration commits (on a large table, run it in a quiet hour;
-- docs/operations.md, "Migrations").
ALTER TABLE notifications
    DROP CONSTRAINT notifications_pkey,
    ADD CONSTRAINT notifications_pkey PRIMARY KEY (id, user_id);
