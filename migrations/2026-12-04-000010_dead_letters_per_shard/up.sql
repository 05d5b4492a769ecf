-- A stream entry id is unique within one stream only: with several stream
-- shards (redis.stream_shards), one priority's lanes of two shards can
-- hand out the same entry id, and the dead letter of one was taken for a
-- redelivery of the other's and dropped. The shard an entry was read from
-- is part of its identity; rows recorded before are from the first shard.
--
-- A worker of the previous release names (priority, entry_id) as its
-- conflict target, which no longer exists: until it is replaced, recording
-- a dead letter fails for it and its round is retried (nothing is lost).
ALTER TABLE dead_letters ADD COLUMN shard integer NOT NULL DEFAULT 0
    CHECK (shard >= 0);
ALTER TABLE dead_letters
    DROP CONSTRAINT dead_letters_entry,
    ADD CONSTRAINT dead_letters_entry UNIQUE (shard, priority, entry_id);
