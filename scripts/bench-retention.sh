#!/usr/bin/env bash
# bench-retention.sh: what `make bench-retention` runs. Retention on a big
# table: fills a scratch database (herald_bench_retention) with
# RETENTION_USERS x RETENTION_PER_USER notifications (20,000 x 495 by
# default) plus one user holding RETENTION_WHALE (100,000), stored over the
# last ~100 days (so about 13% are past the default 90-day period, and all
# of the big user's), with consistent counts; then starts a release
# stream-worker with retention running every second and measures until
# every old notification is gone: rows deleted per second, and how long
# each chunk held its user's lock (the worker's debug log of each chunk).
# Checks at the end: exactly the old rows went, and every user's kept
# counts equal a recount from the rows left.
# Writes bench/results/retention.json. Not part of `make bench` (the fill
# alone takes minutes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
BIN="${BENCH_BIN:-$ROOT/target/release}"
USERS="${RETENTION_USERS:-20000}"
PER_USER="${RETENTION_PER_USER:-495}"
WHALE="${RETENTION_WHALE:-100000}"
mkdir -p .dev bench/results

export HERALD__DATABASE__URL="postgres://postgres@127.0.0.1:5432/herald_bench_retention?sslmode=disable"
export HERALD__REDIS__URL="${HERALD_BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
export HERALD__REDIS__KEY_PREFIX=bench-retention
export HERALD__HTTP__HOST=127.0.0.1
export HERALD__HTTP__PORT=18092
PSQL=(psql -X -q -v ON_ERROR_STOP=1 "${HERALD__DATABASE__URL%%\?*}")

[[ -n "${BENCH_BIN:-}" ]] || cargo build --release --bins
HERALD_DEV_DEPS_RECREATE_DB=1 scripts/dev-deps.sh up
"$BIN/stream-worker" migrate

echo "bench-retention: filling $USERS users x $PER_USER + one of $WHALE..." >&2
fill_started=$(date +%s)
"${PSQL[@]}" <<SQL
-- Built after the fill, as CREATE INDEX is much faster than 10 M inserts
-- into each index: the table's own definitions, kept aside and run again.
CREATE TEMPORARY TABLE definitions AS
  SELECT 'ALTER TABLE notifications ADD CONSTRAINT ' || conname || ' ' || pg_get_constraintdef(oid) AS sql
  FROM pg_constraint WHERE conrelid = 'notifications'::regclass AND contype IN ('p', 'u')
  UNION ALL
  SELECT indexdef FROM pg_indexes
  WHERE tablename = 'notifications'
    AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'notifications'::regclass);
DO \$\$ DECLARE r record; BEGIN
  FOR r IN SELECT conname FROM pg_constraint WHERE conrelid = 'notifications'::regclass AND contype IN ('p', 'u') LOOP
    EXECUTE 'ALTER TABLE notifications DROP CONSTRAINT ' || r.conname;
  END LOOP;
  FOR r IN SELECT indexname FROM pg_indexes WHERE tablename = 'notifications' LOOP
    EXECUTE 'DROP INDEX ' || r.indexname;
  END LOOP;
END \$\$;
-- Every second one read; five categories; stored one per 5 hours, the
-- newest 2.5 hours ago (so none is near the cutoff while the run lasts);
-- the big user's one per minute, all 100+ days ago.
-- Ids are UUIDv7 of their time, as ingest-api stamps them.
CREATE FUNCTION pg_temp.v7(at timestamptz) RETURNS uuid LANGUAGE sql AS \$f\$
  SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
          || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid
\$f\$;
INSERT INTO notifications (id, user_id, seq, title, body, priority, category, created_at, stored_at, read_at)
SELECT pg_temp.v7(t), 'user-' || u, s, 'title ' || s, 'body of notification ' || s, 'normal',
       (ARRAY['orders', 'social', 'billing', 'security', 'news'])[1 + s % 5], t, t,
       CASE WHEN s % 2 = 0 THEN t END
FROM generate_series(1, $USERS) AS u, generate_series(1, $PER_USER) AS s,
     LATERAL (SELECT now() - interval '150 minutes' - ($PER_USER - s) * interval '5 hours' AS t) AS at;
INSERT INTO notifications (id, user_id, seq, title, body, priority, category, created_at, stored_at, read_at)
SELECT pg_temp.v7(t), 'whale', s, 'title ' || s, 'body of notification ' || s, 'normal',
       (ARRAY['orders', 'social', 'billing', 'security', 'news'])[1 + s % 5], t, t,
       CASE WHEN s % 2 = 0 THEN t END
FROM generate_series(1, $WHALE) AS s,
     LATERAL (SELECT now() - interval '100 days' - ($WHALE - s) * interval '1 minute' AS t) AS at;
DO \$\$ DECLARE r record; BEGIN
  FOR r IN SELECT sql FROM definitions LOOP EXECUTE r.sql; END LOOP;
END \$\$;
INSERT INTO user_inbox (user_id, last_seq, unread_count, unseen_count, by_category, version)
SELECT user_id, max(last_seq), sum(unread), sum(unread), jsonb_object_agg(category, jsonb_build_object('unread', unread, 'unseen', unread)) FILTER (WHERE unread > 0), 1
FROM (SELECT user_id, category, max(seq) AS last_seq, count(*) FILTER (WHERE read_at IS NULL) AS unread
      FROM notifications GROUP BY user_id, category) AS per_category
GROUP BY user_id;
UPDATE user_inbox SET by_category = '{}' WHERE by_category IS NULL;
VACUUM ANALYZE notifications;
VACUUM ANALYZE user_inbox;
SQL
fill_secs=$(( $(date +%s) - fill_started ))
read -r total old <<<"$("${PSQL[@]}" -tA -F' ' -c \
  "SELECT count(*), count(*) FILTER (WHERE stored_at < now() - interval '90 days') FROM notifications")"
echo "bench-retention: $total rows ($old past 90 days) in ${fill_secs}s; retention starts" >&2

log=.dev/bench-retention-worker.log
HERALD__RETENTION__INTERVAL_MS=1000 HERALD__LOG__FORMAT=json \
  RUST_LOG="warn,stream_worker::retention=debug" \
  HERALD__WORKER__CONSUMER_NAME=bench-retention "$BIN/stream-worker" 2>"$log" &
worker=$!
trap 'kill -TERM $worker 2>/dev/null || true; wait $worker 2>/dev/null || true' EXIT
started=$(date +%s.%N)
deleted=0
for _ in $(seq 1 3600); do
  deleted=$(curl -fsS -m 2 "http://127.0.0.1:$HERALD__HTTP__PORT/metrics" 2>/dev/null \
    | awk '/^herald_worker_retention_deleted_notifications_total /{print $2}')
  [[ "${deleted:-0}" -ge "$old" ]] && break
  sleep 0.5
done
ended=$(date +%s.%N)
kill -TERM $worker; wait $worker 2>/dev/null || true
trap - EXIT

read -r left young_expected wrong_counts <<<"$("${PSQL[@]}" -tA -F' ' <<SQL
WITH per_category AS (
  SELECT user_id, category, count(*) AS unread FROM notifications WHERE read_at IS NULL GROUP BY user_id, category
), recount AS (
  SELECT user_id, sum(unread) AS unread,
         jsonb_object_agg(category, jsonb_build_object('unread', unread, 'unseen', unread)) AS by_category
  FROM per_category GROUP BY user_id
)
SELECT (SELECT count(*) FROM notifications), $total - $old,
       (SELECT count(*) FROM user_inbox AS i LEFT JOIN recount AS r USING (user_id)
        WHERE i.unread_count <> coalesce(r.unread, 0)
           OR i.unseen_count <> coalesce(r.unread, 0)
           OR i.by_category <> coalesce(r.by_category, '{}')
           OR i.trimmed_through <> coalesce((SELECT min(seq) - 1 FROM notifications AS n WHERE n.user_id = i.user_id), i.last_seq));
SQL
)"

python3 - "$log" "$started" "$ended" "$total" "$old" "$deleted" "$left" "$young_expected" "$wrong_counts" "$fill_secs" <<'PY'
import json, sys
log, started, ended, total, old, deleted, left, young, wrong, fill_secs = sys.argv[1:]
chunks = []
for line in open(log):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    fields = event.get("fields", event)
    if fields.get("message") == "retention chunk":
        chunks.append((int(fields["micros"]), int(fields["deleted"]), fields.get("user")))
seconds = float(ended) - float(started)
micros = sorted(c[0] for c in chunks)
def pct(p):
    return micros[min(len(micros) - 1, int(p * len(micros)))] / 1000 if micros else None
big = [c for c in chunks if c[1] >= 5000]
result = {
    "rows": int(total), "old_rows": int(old), "deleted": int(deleted or 0),
    "fill_seconds": int(fill_secs), "seconds": round(seconds, 1),
    "deleted_per_second": round(int(deleted or 0) / seconds),
    "chunks": len(chunks),
    "chunk_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": micros[-1] / 1000 if micros else None},
    "full_chunk_ms_max": max((c[0] for c in big), default=0) / 1000,
    "full_chunks": len(big),
    "rows_left": int(left), "rows_left_expected": int(young),
    "users_with_wrong_counts": int(wrong),
}
json.dump(result, open("bench/results/retention.json", "w"), indent=2)
print(json.dumps(result, indent=2))
ok = result["rows_left"] == result["rows_left_expected"] and result["users_with_wrong_counts"] == 0
sys.exit(0 if ok else 1)
PY
