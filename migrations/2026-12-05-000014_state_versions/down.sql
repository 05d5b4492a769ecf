DROP INDEX notifications_state;
ALTER TABLE notifications DROP COLUMN state_version;
