ALTER TABLE api_keys DROP COLUMN scope;
DROP TABLE dead_letters;
DELETE FROM notifications WHERE expired;
ALTER TABLE notifications DROP CONSTRAINT notifications_seq_unless_expired;
ALTER TABLE notifications ALTER COLUMN seq SET NOT NULL;
ALTER TABLE notifications DROP COLUMN expired;
ALTER TABLE notifications DROP COLUMN expires_at;
