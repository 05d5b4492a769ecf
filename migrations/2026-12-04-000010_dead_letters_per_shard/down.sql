ALTER TABLE dead_letters
    DROP CONSTRAINT dead_letters_entry,
    ADD CONSTRAINT dead_letters_entry UNIQUE (priority, entry_id);
ALTER TABLE dead_letters DROP COLUMN shard;
