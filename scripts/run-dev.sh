#!/usr/bin/env bash
# run-dev.sh: the second half of `make run`. Expects PostgreSQL and Redis to
# answer (dev-deps.sh up), the binaries and clients/demo to be built; applies
# migrations, creates a development API key, starts the three services and
# the demo inbox, prints how to use them, and stops everything it started on
# Ctrl-C.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${HERALD_BIN_DIR:-$ROOT/target/debug}"
DEV="$ROOT/.dev"
mkdir -p "$DEV"

INGEST_PORT="${INGEST_PORT:-8081}"
WORKER_PORT="${WORKER_PORT:-8082}"
GATEWAY_PORT="${GATEWAY_PORT:-8083}"
DEMO_PORT="${DEMO_PORT:-8084}"
SAMPLE_USER="${SAMPLE_USER:-alice}"

# One JWT secret per checkout, kept across runs so issued tokens stay valid.
if [[ -z ${HERALD__AUTH__JWT_SECRET:-} ]]; then
  if [[ ! -s $DEV/jwt_secret ]]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DEV/jwt_secret")
  fi
  HERALD__AUTH__JWT_SECRET="$(cat "$DEV/jwt_secret")"
fi
export HERALD__AUTH__JWT_SECRET
export HERALD__HTTP__HOST="${HERALD__HTTP__HOST:-127.0.0.1}"
# The demo inbox is a page on its own origin: the gateway must allow it.
export HERALD__GATEWAY__ALLOWED_ORIGINS="${HERALD__GATEWAY__ALLOWED_ORIGINS:-http://127.0.0.1:$DEMO_PORT,http://localhost:$DEMO_PORT}"
# Seed templates from the repository (loaded by ingest-api at start).
export HERALD__TEMPLATES__DIR="${HERALD__TEMPLATES__DIR:-$ROOT/templates}"

"$BIN/stream-worker" migrate

# A fresh development key each run: the previous one is revoked.
"$BIN/ingest-api" keys revoke dev >/dev/null 2>&1 || true
API_KEY="$("$BIN/ingest-api" keys create --name dev)"
TOKEN="$("$BIN/ws-gateway" token --user "$SAMPLE_USER" --ttl 86400)"

pids=()
stop_all() {
  trap - INT TERM EXIT
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  "$ROOT/scripts/dev-deps.sh" down || true
}
trap stop_all INT TERM EXIT

HERALD__HTTP__PORT=$INGEST_PORT "$BIN/ingest-api" & pids+=($!)
HERALD__HTTP__PORT=$WORKER_PORT HERALD__WORKER__CONSUMER_NAME="${HERALD__WORKER__CONSUMER_NAME:-dev-worker}" "$BIN/stream-worker" & pids+=($!)
HERALD__HTTP__PORT=$GATEWAY_PORT "$BIN/ws-gateway" & pids+=($!)
DEMO="$ROOT/clients/demo"
if [[ -f $DEMO/dist/index.html ]]; then
  (cd "$DEMO" && exec "$ROOT/clients/node_modules/.bin/vite" preview --host 127.0.0.1 \
    --port "$DEMO_PORT" --strictPort --logLevel warn) & pids+=($!)
  DEMO_URL="http://127.0.0.1:$DEMO_PORT/#token=$TOKEN&gateway=http://127.0.0.1:$GATEWAY_PORT"
else
  DEMO_URL="(not built: make clients)"
fi

for port in "$INGEST_PORT" "$WORKER_PORT" "$GATEWAY_PORT"; do
  for _ in $(seq 1 150); do
    curl -fsS -m 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
done

cat <<MSG

Herald is running (Ctrl-C stops everything this command started).

  ingest-api     http://127.0.0.1:$INGEST_PORT   (OpenAPI: /openapi.json)
  stream-worker  http://127.0.0.1:$WORKER_PORT   (health: /healthz, /readyz)
  ws-gateway     ws://127.0.0.1:$GATEWAY_PORT/v1/ws

  API key (shown once):  $API_KEY
  JWT for "$SAMPLE_USER" (24 h):  $TOKEN

Open $SAMPLE_USER's inbox in a browser (the demo; open it in two windows):
  $DEMO_URL

Watch $SAMPLE_USER's notifications from a terminal (any WebSocket client, e.g. websocat):
  websocat "ws://127.0.0.1:$GATEWAY_PORT/v1/ws?token=$TOKEN"

Send $SAMPLE_USER a notification:
  curl -i -X POST http://127.0.0.1:$INGEST_PORT/v1/notifications \\
    -H 'content-type: application/json' -H 'x-api-key: $API_KEY' \\
    -d '{"user_id":"$SAMPLE_USER","title":"Hello","body":"Your first Herald notification"}'

Templates seeded from templates/ (order_shipped: en, de, pl; new_messages: en, ru, ar).
Make $SAMPLE_USER Polish, then send a template:
  curl -X PUT http://127.0.0.1:$INGEST_PORT/v1/users/$SAMPLE_USER/preferences \\
    -H 'content-type: application/json' -H 'x-api-key: $API_KEY' -d '{"locale":"pl"}'
  curl -i -X POST http://127.0.0.1:$INGEST_PORT/v1/notifications \\
    -H 'content-type: application/json' -H 'x-api-key: $API_KEY' \\
    -d '{"user_id":"$SAMPLE_USER","template":"order_shipped","params":{"count":3,"name":"Ada"}}'

MSG

# Stop everything when any service exits.
wait -n "${pids[@]}" || true
echo "a service exited; stopping the others" >&2
