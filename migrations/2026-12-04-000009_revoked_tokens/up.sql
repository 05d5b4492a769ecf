-- User tokens revoked before their `exp`, by `jti`. Kept until the token
-- would have expired anyway (then nothing could present it): gateways
-- load the rows not yet expired and purge the others.
CREATE TABLE revoked_tokens (
    jti text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
