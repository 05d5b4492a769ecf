-- User ids and categories are opaque identifiers: compare them as bytes.
-- With the database's linguistic collation every index comparison went
-- through strcoll (the top of a PostgreSQL profile under load); "C" makes
-- it a memcmp and orders ids the same way Rust sorts them.
ALTER TABLE user_inbox ALTER COLUMN user_id TYPE text COLLATE "C";
ALTER TABLE user_preferences ALTER COLUMN user_id TYPE text COLLATE "C";
ALTER TABLE notifications
    ALTER COLUMN user_id TYPE text COLLATE "C",
    ALTER COLUMN category TYPE text COLLATE "C";
-- ALTER TYPE drops the planner's statistics of these columns.
ANALYZE user_inbox, user_preferences, notifications;
