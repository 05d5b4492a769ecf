DROP INDEX notifications_unread;
CREATE INDEX notifications_unread ON notifications (user_id, seq)
    WHERE read_at IS NULL AND archived_at IS NULL AND seq IS NOT NULL;
ALTER TABLE notifications DROP COLUMN muted;
ALTER TABLE notifications DROP COLUMN params;
ALTER TABLE notifications DROP COLUMN template_version;
ALTER TABLE notifications DROP COLUMN template_key;
ALTER TABLE notifications DROP COLUMN locale;
DROP TABLE user_preferences;
DROP TABLE templates;
