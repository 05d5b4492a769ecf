#!/usr/bin/env bash
# schemathesis.sh: fuzzes each service's HTTP API from its own
# /openapi.json with schemathesis (every operation, every check, a fixed
# seed, a time budget per service), against the debug binaries and real
# PostgreSQL and Redis, and fails on any finding. Part of `make test`
# (which builds the binaries and starts the dependencies first).
#
#   HERALD_FUZZ_SECS   time budget per service (default 40)
#   HERALD_FUZZ_SEED   hypothesis seed (default 1)
#
# schemathesis (and its dependencies) come from PyPI at pinned versions into
# .tools/schemathesis, once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="${HERALD_BIN_DIR:-$ROOT/target/debug}"
VENV="$ROOT/.tools/schemathesis"
PIN="schemathesis==4.32.5"
SECS="${HERALD_FUZZ_SECS:-40}"
SEED="${HERALD_FUZZ_SEED:-1}"
PYTHON="${PYTHON:-python3}"

if [[ ! -x $VENV/bin/schemathesis || "$(cat "$VENV/.pin" 2>/dev/null)" != "$PIN" ]]; then
  echo "schemathesis.sh: installing $PIN into .tools/schemathesis (once)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "$PIN"
  echo "$PIN" > "$VENV/.pin"
fi

PG="${HERALD_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
DB="herald_fuzz_$$"
RUN="$(mktemp -d)"
export HERALD__DATABASE__URL="$PG/$DB"
export HERALD__REDIS__URL="${HERALD_TEST_REDIS:-redis://127.0.0.1:6379}"
export HERALD__REDIS__KEY_PREFIX="fuzz-$$"
export HERALD__HTTP__HOST=127.0.0.1
export HERALD__HTTP__WORKERS=1
export HERALD__AUTH__JWT_SECRET="fuzz-secret-fuzz-secret-fuzz-secret-32"
export HERALD__LOG__LEVEL=error
# The fuzzer is one address sending thousands of requests, many with bad
# credentials on purpose: the limits that would stop it are lifted so every
# request reaches the code under test.
export HERALD__AUTH__FAILURES_PER_ADDRESS_PER_MIN=0
export HERALD__GATEWAY__REST_WRITES_PER_USER_PER_SEC=0
export HERALD__INGEST__KEY_RATE_PER_SEC=0

pids=()
cleanup() {
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -u "$HERALD__REDIS__URL" --scan --pattern "fuzz-$$:*" 2>/dev/null \
    | xargs -r redis-cli -u "$HERALD__REDIS__URL" del >/dev/null 2>&1 || true
  rm -rf "$RUN"
}
trap cleanup EXIT

psql "$PG/postgres" -qc "CREATE DATABASE \"$DB\"" >/dev/null
"$BIN/stream-worker" migrate 2>"$RUN/migrate.log"
API_KEY="$("$BIN/ingest-api" keys create --name fuzz --admin)"
TOKEN="$("$BIN/ws-gateway" token --user fuzz-user --ttl 3600)"

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
INGEST_PORT=$(free_port) WORKER_PORT=$(free_port) GATEWAY_PORT=$(free_port)
HERALD__HTTP__PORT=$INGEST_PORT "$BIN/ingest-api" 2>"$RUN/ingest-api.log" & pids+=($!)
HERALD__HTTP__PORT=$WORKER_PORT "$BIN/stream-worker" 2>"$RUN/stream-worker.log" & pids+=($!)
HERALD__HTTP__PORT=$GATEWAY_PORT "$BIN/ws-gateway" 2>"$RUN/ws-gateway.log" & pids+=($!)
for port in "$INGEST_PORT" "$WORKER_PORT" "$GATEWAY_PORT"; do
  for _ in $(seq 1 150); do
    curl -fsS -m 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
done

failed=()
fuzz() {
  local name=$1 port=$2
  shift 2
  echo "schemathesis.sh: $name (${SECS}s, seed $SEED)" >&2
  if ! "$VENV/bin/schemathesis" --config-file "$ROOT/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
      --seed "$SEED" --max-time "$SECS" --workers 1 \
      --request-timeout 10 --no-color "$@" >"$RUN/$name.txt" 2>&1; then
    cat "$RUN/$name.txt" >&2
    failed+=("$name")
  else
    tail -n 4 "$RUN/$name.txt" >&2
  fi
}
fuzz ingest-api "$INGEST_PORT" -H "x-api-key: $API_KEY"
fuzz ws-gateway "$GATEWAY_PORT" -H "Authorization: Bearer $TOKEN"
fuzz stream-worker "$WORKER_PORT"

for name in ingest-api stream-worker ws-gateway; do
  if grep -qi "panicked" "$RUN/$name.log"; then
    echo "schemathesis.sh: $name panicked:" >&2
    grep -i -A5 "panicked" "$RUN/$name.log" >&2
    failed+=("$name (panic)")
  fi
done
if ((${#failed[@]})); then
  echo "schemathesis.sh: findings in: ${failed[*]}" >&2
  exit 1
fi
echo "schemathesis.sh: no findings" >&2
