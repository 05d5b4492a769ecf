ALTER TABLE user_inbox DROP COLUMN trimmed_through;
