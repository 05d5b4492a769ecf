-- Erasure jobs: a producer asks Herald to forget a user
-- (`DELETE /v1/users/{user_id}`); a stream-worker carries it out. The
-- user's id is held only while the job runs: a finished job keeps its
-- id, times and how much it erased, nothing that names the user.
CREATE TABLE erasures (
    id uuid PRIMARY KEY,
    -- The id of the user being erased; NULL once the job is done. (Not
    -- `user_id`: this is a small shared table, not one distributed by user.)
    erasing text,
    -- The tenant of the key that asked: a tenant's key sees only its own jobs.
    tenant text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- The highest stream entry id of the user's that the job deleted: the
    -- job ends once no entry up to it is still pending in the consumer
    -- group (one a worker read before the delete is stored, then erased).
    drained_through text,
    -- Passes run so far (one per `worker.timers_interval_ms` while entries
    -- of the user are still being processed).
    passes integer NOT NULL DEFAULT 0,
    notifications_erased bigint NOT NULL DEFAULT 0,
    entries_dropped bigint NOT NULL DEFAULT 0,
    CHECK ((erasing IS NULL) = (finished_at IS NOT NULL))
);

-- One running job per user: asking again answers the running one.
CREATE UNIQUE INDEX erasures_running ON erasures (erasing) WHERE finished_at IS NULL;
