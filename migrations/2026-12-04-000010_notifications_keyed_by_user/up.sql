-- Every row of a user's data is keyed by the user: the primary key of
-- notifications leads with user_id, like user_inbox's and
-- user_preferences', so the per-user tables can be distributed by user_id
-- (Citus: one distribution column, co-located tables) without a
-- uniqueness PostgreSQL could no longer check across nodes. A
-- notification id names one notification of one user: every lookup by id
-- also names the user.
--
-- Rebuilds the primary key: the table is locked against reads and writes
-- until the migration commits. On a large table, run it in a quiet hour.
ALTER TABLE notifications
    DROP CONSTRAINT notifications_pkey,
    ADD CONSTRAINT notifications_pkey PRIMARY KEY (user_id, id);

-- The previous release's processes look notifications up by id alone
-- (its workers' duplicate check, its gateways' read-state updates): this
-- plain index keeps those lookups off a sequential scan while they still
-- run during the upgrade. Nothing of this release uses it; the next
-- release's migration drops it.
CREATE INDEX notifications_id_previous_release ON notifications (id);
