-- Archived notifications leave the default inbox list and the unread count.
ALTER TABLE notifications ADD COLUMN archived_at timestamptz;

-- The inbox: newest first by seq, optionally only unread, optionally by category.
CREATE INDEX notifications_unread ON notifications (user_id, seq)
    WHERE read_at IS NULL AND archived_at IS NULL AND seq IS NOT NULL;
CREATE INDEX notifications_category ON notifications (user_id, category, seq)
    WHERE seq IS NOT NULL;
