#!/usr/bin/env bash
# bench.sh: what `make bench` runs. Builds release binaries, makes sure
# PostgreSQL and Redis answer (dev-deps.sh), starts the three services like
# `make run` does (release builds, logs to .dev/bench-*.log), runs
# herald-bench, writes bench/results/latest.{json,md}, and stops what it started.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
# BENCH_BIN: binaries built elsewhere (say, a copy of an earlier build, to
# compare two versions on the same machine in alternating runs); no build then.
BIN="${BENCH_BIN:-$ROOT/target/release}"
mkdir -p .dev bench/results

# Its own database and prefix, whatever `make` exported for `make run`.
export HERALD__DATABASE__URL="${HERALD_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/herald_bench?sslmode=disable}"
export HERALD__REDIS__URL="${HERALD_BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
export HERALD__REDIS__KEY_PREFIX=bench
export HERALD__HTTP__HOST=127.0.0.1
export HERALD__AUTH__JWT_SECRET="${HERALD__AUTH__JWT_SECRET:-bench-secret-bench-secret-bench-secret}"
export HERALD__LOG__LEVEL="${HERALD__LOG__LEVEL:-warn}"
# The worker's backlog gauges (which herald-bench reads) refresh with the
# trimmer; every second instead of every 5 s.
export HERALD__WORKER__TRIM_INTERVAL_MS=1000
# The load generator is one client address opening thousands of sockets as
# fast as it can: the per-address limits (meant for the internet) are off.
# The producer key gets its own high rate below, so its check still runs.
export HERALD__GATEWAY__HANDSHAKES_PER_ADDRESS_PER_SEC=0
export HERALD__GATEWAY__MAX_CONNECTIONS_PER_ADDRESS=0
INGEST_PORT=18081 WORKER_PORT=18082 GATEWAY_PORT=18083

# --redis cluster: the same scenarios against a local Redis Cluster of three
# masters (ports 17001-17003, started here, stopped at the end) with
# `--shards N` stream shards (default 8). herald-bench's redis-server CPU then
# sums the three nodes. Both options are bench.sh's own.
redis_mode=single shards=8 args=()
while (($#)); do
  case "$1" in
    --redis) redis_mode="$2"; shift 2 ;;
    --shards) shards="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]}"
cluster_pids=()
stop_cluster() {
  if ((${#cluster_pids[@]})); then kill -TERM "${cluster_pids[@]}" 2>/dev/null || true; wait "${cluster_pids[@]}" 2>/dev/null || true; fi
  rm -rf "$ROOT/.dev/bench-cluster"
}
start_cluster() {
  local dir="$ROOT/.dev/bench-cluster" nodes=()
  rm -rf "$dir" && mkdir -p "$dir"
  for port in 17001 17002 17003; do
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "nodes-$port.conf" --save "" --appendonly no \
      --dir "$dir" >"$dir/$port.log" 2>&1 & cluster_pids+=($!)
    nodes+=("127.0.0.1:$port")
  done
  for port in 17001 17002 17003; do
    for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log"
  for _ in $(seq 1 100); do
    redis-cli -p 17001 cluster info | grep -q cluster_state:ok && break; sleep 0.1
  done
  export HERALD__REDIS__URL="redis-cluster://127.0.0.1:17001?node=127.0.0.1:17002&node=127.0.0.1:17003"
  export HERALD__REDIS__STREAM_SHARDS="$shards"
  echo "bench: Redis Cluster of 3 masters (17001-17003), $shards stream shards" >&2
}
case "$redis_mode" in
  single) ;;
  cluster) trap stop_cluster EXIT; start_cluster ;;
  *) echo "--redis must be single or cluster" >&2; exit 2 ;;
esac

[[ -n "${BENCH_BIN:-}" ]] || cargo build --release --bins
# A fresh, empty database every run: a table grown by earlier runs (millions
# of rows past shared_buffers) would make runs incomparable, and a clean
# machine starts empty too.
HERALD_DEV_DEPS_RECREATE_DB=1 scripts/dev-deps.sh up
"$BIN/stream-worker" migrate
"$BIN/ingest-api" keys revoke bench >/dev/null 2>&1 || true
export HERALD_BENCH_API_KEY="$("$BIN/ingest-api" keys create --name bench --rate 1000000/s --burst 1000000)"

# One socket per WebSocket connection: raise the open-files limit as far as
# this machine allows, before the services start (they inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pids=()
stop_all() {
  trap - INT TERM EXIT
  if ((${#pids[@]})); then kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; fi
  stop_cluster
}
trap stop_all INT TERM EXIT
HERALD__HTTP__PORT=$INGEST_PORT "$BIN/ingest-api" 2>.dev/bench-ingest.log & pids+=($!)
HERALD__HTTP__PORT=$WORKER_PORT HERALD__WORKER__CONSUMER_NAME=bench-worker "$BIN/stream-worker" 2>.dev/bench-worker.log & pids+=($!)
HERALD__HTTP__PORT=$GATEWAY_PORT "$BIN/ws-gateway" 2>.dev/bench-gateway.log & pids+=($!)
# A process holds at most its open-files limit of sockets: for 50,000
# connections on a machine that caps it lower, more gateway replicas (as
# Kubernetes would run them, at most 4 more: with a lower limit the run
# holds fewer sockets), only when the `connections` scenario runs.
wants_connections=1
if [[ " $* " == *" --scenario "* ]]; then
  wants_connections=0
  for ((a = 1; a < $#; a++)); do
    next=$((a + 1))
    if [[ "${!a}" == --scenario && "${!next}" == connections ]]; then
      wants_connections=1
    fi
  done
fi
fd_limit="$(ulimit -n)"
extra=0
if ((wants_connections)) && [[ "$fd_limit" != unlimited ]] && ((fd_limit > 1000)); then
  extra=$(( (50000 + fd_limit - 501) / (fd_limit - 500) - 1 ))
  extra=$(( extra > 4 ? 4 : extra ))
fi
extra_args=() extra_ports=()
for ((i = 1; i <= extra; i++)); do
  port=$((GATEWAY_PORT + 100 * i))
  HERALD__HTTP__PORT=$port "$BIN/ws-gateway" 2>".dev/bench-gateway-$i.log" & pids+=($!)
  extra_args+=(--extra-gateway "http://127.0.0.1:$port=$!" --pid "ws-gateway-$((i + 1))=$!")
  extra_ports+=("$port")
done
for port in $INGEST_PORT $WORKER_PORT $GATEWAY_PORT "${extra_ports[@]}"; do
  for _ in $(seq 1 150); do curl -fsS -m 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
done

"$BIN/herald-bench" --ingest "http://127.0.0.1:$INGEST_PORT" --gateway "http://127.0.0.1:$GATEWAY_PORT" \
  --worker "http://127.0.0.1:$WORKER_PORT" \
  --gateway-pid "${pids[2]}" --pid "ingest-api=${pids[0]}" --pid "stream-worker=${pids[1]}" --pid "ws-gateway=${pids[2]}" \
  "${extra_args[@]}" \
  --seconds "${BENCH_SECONDS:-20}" --out bench/results "$@"
