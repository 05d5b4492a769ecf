-- Producer API keys: only a SHA-256 of each key is kept.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL,
    key_hash    bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
-- A name identifies one active key; a revoked name can be reused.
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

-- One row per user: the sequence counter and the unread state, changed only
-- in the transaction that changes the user's notifications.
CREATE TABLE user_inbox (
    user_id       text   PRIMARY KEY,
    last_seq      bigint NOT NULL DEFAULT 0,
    unread_count  bigint NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    version       bigint NOT NULL DEFAULT 0
);

CREATE TABLE notifications (
    id          uuid        PRIMARY KEY,
    user_id     text        NOT NULL,
    seq         bigint      NOT NULL,
    title       text        NOT NULL,
    body        text        NOT NULL,
    priority    text        NOT NULL CHECK (priority IN ('high', 'normal', 'low')),
    category    text,
    data        jsonb,
    created_at  timestamptz NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz,
    -- The per-user sequence has no duplicates; this index also serves
    -- "everything after seq S" (resume) and "newest first" (inbox).
    CONSTRAINT notifications_user_seq UNIQUE (user_id, seq)
);
