ALTER TABLE user_inbox DROP COLUMN epoch;
