DROP INDEX notifications_category;
CREATE INDEX notifications_category ON notifications (user_id, category, seq)
    WHERE seq IS NOT NULL;
