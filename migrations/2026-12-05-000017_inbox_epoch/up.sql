-- Which inbox a device's `since` counts in. A user's inbox row is created
-- with a random `epoch` (below 2^53, exact in JavaScript); an erased user's
-- next inbox starts again at seq 1 with another one. `hello` carries it and
-- a device resumes with `?since=S&epoch=E`: another epoch than the user's
-- means S counts in an inbox that is gone, so the gateway resumes it from
-- the start (and the client drops what it held). Rows created before this
-- migration keep 0: "not known", which never resets anything. No rewrite.
ALTER TABLE user_inbox ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE user_inbox ALTER COLUMN epoch
    SET DEFAULT (1 + floor(random() * 9007199254740990))::bigint;
