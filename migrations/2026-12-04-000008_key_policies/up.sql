-- What each API key may do, whom it may address and how fast.
--   scopes: notify, preferences, templates, dlq, admin. Keys created before
--     scopes existed keep what they could do: producer keys notify and set
--     preferences, admin keys do everything. `scope` stays written (admin
--     or producer) for processes of the previous release during a rolling
--     upgrade.
--   tenant: when set, the key addresses only user ids `<tenant>:...`.
--   rate_per_sec / burst: the key's GCRA limit in notifications (a batch
--     counts its items); NULL: the configured default; rate 0: unlimited.
ALTER TABLE api_keys
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{notify,preferences}',
    ADD COLUMN tenant text,
    ADD COLUMN rate_per_sec double precision CHECK (rate_per_sec >= 0),
    ADD COLUMN burst integer CHECK (burst >= 1);
UPDATE api_keys SET scopes = '{notify,preferences,templates,dlq,admin}' WHERE scope = 'admin';
