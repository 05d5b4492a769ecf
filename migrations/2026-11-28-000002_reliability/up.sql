-- Expiry: a notification past its expires_at when the worker reaches it is
-- stored for the record but never shown: no seq, not unread, not published.
ALTER TABLE notifications ADD COLUMN expires_at timestamptz;
ALTER TABLE notifications ADD COLUMN expired boolean NOT NULL DEFAULT false;
ALTER TABLE notifications ALTER COLUMN seq DROP NOT NULL;
ALTER TABLE notifications ADD CONSTRAINT notifications_seq_unless_expired
    CHECK ((seq IS NULL) = expired);

-- Entries the worker could never process, for operators to inspect and replay.
CREATE TABLE dead_letters (
    id               uuid        PRIMARY KEY,
    priority         text        NOT NULL CHECK (priority IN ('high', 'normal', 'low')),
    entry_id         text        NOT NULL,
    payload          text        NOT NULL,
    error            text        NOT NULL,
    deliveries       bigint      NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    replayed_at      timestamptz,
    replay_entry_id  text,
    -- The same stream entry dead-lettered twice (a redelivery) is one record.
    CONSTRAINT dead_letters_entry UNIQUE (priority, entry_id)
);
CREATE INDEX dead_letters_not_replayed ON dead_letters (created_at) WHERE replayed_at IS NULL;

-- API keys are for producers, or for operators (admin endpoints) too.
ALTER TABLE api_keys ADD COLUMN scope text NOT NULL DEFAULT 'producer'
    CHECK (scope IN ('producer', 'admin'));
