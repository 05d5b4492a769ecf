-- Seen, and counts per category.
--
-- A notification is seen once the user opened the feed up to it (seen_at)
-- or read it (read_at): unseen ones are the unread ones with neither. So
-- nothing was seen before this migration but what was read, and no
-- notification needs rewriting: seen_at starts NULL everywhere.
--
-- user_inbox keeps the counts beside unread_count, moved by the same
-- statements under the same row lock: unseen_count, and by_category, a
-- JSON object {"<category>": {"unread": n, "unseen": m}} without empty
-- entries (unindexed columns: updates stay HOT).
--
-- Adding the columns only touches the catalog; the backfill rewrites the
-- inbox rows of users with unread notifications (one row per user) and
-- reads their unread ones through notifications_unread.
ALTER TABLE notifications ADD COLUMN seen_at timestamptz;

ALTER TABLE user_inbox
    ADD COLUMN unseen_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN by_category jsonb NOT NULL DEFAULT '{}';

UPDATE user_inbox SET unseen_count = unread_count WHERE unread_count <> 0;

UPDATE user_inbox AS u
SET by_category = c.by_category
FROM (
    SELECT user_id,
           jsonb_object_agg(category, jsonb_build_object('unread', n, 'unseen', n)) AS by_category
    FROM (
        SELECT user_id, category, count(*) AS n
        FROM notifications
        WHERE seq IS NOT NULL AND read_at IS NULL AND archived_at IS NULL
          AND NOT muted AND category IS NOT NULL
        GROUP BY user_id, category
    ) AS per_category
    GROUP BY user_id
) AS c
WHERE u.user_id = c.user_id;

-- Unseen ones are among the unread ones.
ALTER TABLE user_inbox
    ADD CONSTRAINT user_inbox_unseen_count CHECK (unseen_count BETWEEN 0 AND unread_count);
