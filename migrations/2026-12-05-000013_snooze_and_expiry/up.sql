-- Snoozed notifications leave the list and the counts until snoozed_until;
-- a notification whose expires_at passes after it was stored leaves them
-- for good (expired = true; it keeps its seq). Both are timers the worker
-- finds through these partial indexes: only rows with a timer pending are
-- in them (a notification without a TTL costs no index entry).
--
-- Each CREATE INDEX reads the whole table and blocks writes to it (not
-- reads) until the migration commits: on a large table, run it in a quiet
-- hour (docs/operations.md, "Migrations"). Notifications delivered before
-- this migration whose expires_at has passed expire at the worker's first
-- pass, in chunks, each with its frame.
ALTER TABLE notifications ADD COLUMN snoozed_until timestamptz;

-- A notification without seq (expired before it was stored) is expired;
-- an expired one may now have a seq (it expired after delivery).
ALTER TABLE notifications
    DROP CONSTRAINT notifications_seq_unless_expired,
    ADD CONSTRAINT notifications_seq_unless_expired CHECK (seq IS NOT NULL OR expired);

CREATE INDEX notifications_snoozed ON notifications (snoozed_until)
    WHERE snoozed_until IS NOT NULL;
CREATE INDEX notifications_expiring ON notifications (expires_at)
    WHERE expires_at IS NOT NULL AND NOT expired;
