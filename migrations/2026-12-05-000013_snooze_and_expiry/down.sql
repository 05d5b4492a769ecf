DROP INDEX notifications_expiring;
DROP INDEX notifications_snoozed;
ALTER TABLE notifications DROP COLUMN snoozed_until;
-- Fails while a notification expired after delivery keeps its seq.
ALTER TABLE notifications
    DROP CONSTRAINT notifications_seq_unless_expired,
    ADD CONSTRAINT notifications_seq_unless_expired CHECK ((seq IS NULL) = expired);
