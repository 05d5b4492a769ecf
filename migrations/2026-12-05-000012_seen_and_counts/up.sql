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
-- Adding the columns only touches the catalog; the recount below rewrites
-- the inbox rows of users with unread notifications (one row per user).
ALTER TABLE notifications ADD COLUMN seen_at timestamptz;

ALTER TABLE user_inbox
    ADD COLUMN unseen_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN by_category jsonb NOT NULL DEFAULT '{}';

-- Every count recounted from the rows, as they count from now on: unread
-- while neither read nor archived, unless the category is one the user
-- mutes now (muting becomes retroactive: a notification stored while its
-- category was muted counts once it is unmuted, one in a category muted
-- since no longer does). Nothing was seen yet: unseen = unread. Reads the
-- unread notifications through notifications_unread.
CREATE TEMPORARY TABLE recounted ON COMMIT DROP AS
SELECT user_id,
       sum(n)::bigint AS unread,
       coalesce(
           jsonb_object_agg(category, jsonb_build_object('unread', n, 'unseen', n))
               FILTER (WHERE category IS NOT NULL),
           '{}'::jsonb
       ) AS by_category
FROM (
    SELECT n.user_id, n.category, count(*) AS n
    FROM notifications AS n
    LEFT JOIN user_preferences AS p ON p.user_id = n.user_id
    WHERE n.seq IS NOT NULL AND n.read_at IS NULL AND n.archived_at IS NULL
      AND (n.category IS NULL OR p.user_id IS NULL OR NOT n.category = ANY(p.muted_categories))
    GROUP BY n.user_id, n.category
) AS per_category
GROUP BY user_id;

UPDATE user_inbox AS u
SET unread_count = r.unread, unseen_count = r.unread, by_category = r.by_category
FROM recounted AS r
WHERE u.user_id = r.user_id;

UPDATE user_inbox AS u
SET unread_count = 0
WHERE unread_count <> 0 AND NOT EXISTS (SELECT 1 FROM recounted AS r WHERE r.user_id = u.user_id);

-- Unseen ones are among the unread ones.
ALTER TABLE user_inbox
    ADD CONSTRAINT user_inbox_unseen_count CHECK (unseen_count BETWEEN 0 AND unread_count);
