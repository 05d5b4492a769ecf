DROP INDEX notifications_category;
DROP INDEX notifications_unread;
ALTER TABLE notifications DROP COLUMN archived_at;
