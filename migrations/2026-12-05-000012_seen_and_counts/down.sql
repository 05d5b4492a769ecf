ALTER TABLE user_inbox DROP CONSTRAINT user_inbox_unseen_count, DROP COLUMN by_category, DROP COLUMN unseen_count;
ALTER TABLE notifications DROP COLUMN seen_at;
