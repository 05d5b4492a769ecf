-- Every round that stores notifications updates its users' inbox rows
-- (last_seq, unread_count, version: no indexed column), and a user's first
-- round inserts the row and updates it at once. With full pages such an
-- update cannot stay on the row's page: the new version goes to another
-- page and gets a second entry in user_inbox_pkey, which every later lock
-- of these users then walks. Room on each page keeps updates HOT (same
-- page, no index entry). Applies to pages written from now on; takes a
-- SHARE UPDATE EXCLUSIVE lock only (reads and writes go on).
ALTER TABLE user_inbox SET (fillfactor = 70);
