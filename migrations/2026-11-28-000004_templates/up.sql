-- Templates: every edit is a new version; notifications pin the version
-- they were accepted with, so an edit never breaks what is queued.
CREATE TABLE templates (
    key         text        NOT NULL,
    version     integer     NOT NULL,
    source      jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    PRIMARY KEY (key, version)
);

CREATE TABLE user_preferences (
    user_id           text        PRIMARY KEY,
    locale            text,
    timezone          text,
    muted_categories  text[]      NOT NULL DEFAULT '{}',
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- What the user saw (title/body as rendered), and what to render it again from.
ALTER TABLE notifications ADD COLUMN locale text;
ALTER TABLE notifications ADD COLUMN template_key text;
ALTER TABLE notifications ADD COLUMN template_version integer;
ALTER TABLE notifications ADD COLUMN params jsonb;
-- Muted by the user's preferences when stored: history only, never unread, never pushed.
ALTER TABLE notifications ADD COLUMN muted boolean NOT NULL DEFAULT false;

DROP INDEX notifications_unread;
CREATE INDEX notifications_unread ON notifications (user_id, seq)
    WHERE read_at IS NULL AND archived_at IS NULL AND seq IS NOT NULL AND NOT muted;
