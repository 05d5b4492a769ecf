ALTER TABLE api_keys
    DROP COLUMN scopes,
    DROP COLUMN tenant,
    DROP COLUMN rate_per_sec,
    DROP COLUMN burst;
