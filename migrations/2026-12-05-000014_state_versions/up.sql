-- Each notification remembers the user's state version of its last change
-- (read, unread, seen, archived, unarchived, snoozed, back, expired), so a
-- device coming back with `since_version=V` gets exactly the items changed
-- since V, as they are now, without refetching pages. 0: never changed
-- since it was stored (or changed before this migration): such rows are
-- not in the index, so storing costs nothing more.
--
-- Adding the column with a constant default only touches the catalog; the
-- index starts empty (no row has a version yet) but CREATE INDEX still
-- reads the table and blocks writes to it until the migration commits.
ALTER TABLE notifications ADD COLUMN state_version bigint NOT NULL DEFAULT 0;

CREATE INDEX notifications_state ON notifications (user_id, state_version)
    WHERE state_version > 0;
