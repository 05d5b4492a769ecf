ALTER TABLE notifications
    ALTER COLUMN user_id TYPE text COLLATE "default",
    ALTER COLUMN category TYPE text COLLATE "default";
ALTER TABLE user_preferences ALTER COLUMN user_id TYPE text COLLATE "default";
ALTER TABLE user_inbox ALTER COLUMN user_id TYPE text COLLATE "default";
