DROP INDEX notifications_stored_at;
ALTER TABLE user_inbox DROP COLUMN trimmed_through;
