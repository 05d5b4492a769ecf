#!/usr/bin/env bash
# dev-deps.sh: make sure the PostgreSQL and Redis that Herald needs are reachable.
#
#   scripts/dev-deps.sh up      find them, or start project-local ones under .dev/
#   scripts/dev-deps.sh down    stop only what `up` started (listed in .dev/started)
#   scripts/dev-deps.sh status  say what answers
#
# Reads HERALD__DATABASE__URL and HERALD__REDIS__URL, the same variables the
# service reads, so the servers found or started are the ones it will use.
# HERALD_DEV_DEPS_RECREATE_DB=1 drops the URL's database first and creates
# it empty (the benchmark's scratch database; refused unless it is on this
# machine and named herald_bench...; needs PostgreSQL 13+ for WITH (FORCE)).
# `up` and `down` write only to stderr: callers may use stdout for themselves.
set -euo pipefail
# useradd, runuser and friends live in sbin, which non-login shells may lack.
PATH=$PATH:/usr/sbin:/sbin

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DEV="$ROOT/.dev"
STARTED="$DEV/started"
PG_URL="${HERALD__DATABASE__URL:-postgres://postgres@127.0.0.1:5432/herald}"
REDIS_URL="${HERALD__REDIS__URL:-redis://127.0.0.1:6379}"
# initdb and pg_ctl refuse to run as root, so as root the cluster belongs to this user.
PG_OS_USER=herald-dev
WAIT_SECS=30
INSTALL_HINT="sudo apt-get install -y postgresql redis-server"

log() { printf 'dev-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }
is_local_host() { [[ $1 == 127.0.0.1 || $1 == localhost ]]; }
show_log_tail() { [[ -r $1 ]] && { log "last lines of $1:"; tail -n 20 "$1" >&2; }; return 0; }

# Percent-decoding, so that user names, passwords and database names that
# the URL had to escape reach psql as the server knows them.
urldecode() {
  local s=${1//\\/\\\\}
  printf '%b' "${s//%/\\x}"
}

# parse_url URL DEFAULT_PORT: sets U_SCHEME U_USER U_PASS U_HOST U_PORT U_PATH.
parse_url() {
  local url=$1 rest authority auth hostport
  [[ $url == *://* ]] || die "not a URL: '$url'"
  U_SCHEME=${url%%://*}
  rest=${url#*://}
  rest=${rest%%\#*}
  rest=${rest%%\?*}
  authority=${rest%%/*}
  U_PATH=""
  [[ $rest == */* ]] && U_PATH=${rest#*/}
  U_USER="" U_PASS=""
  if [[ $authority == *@* ]]; then
    # The last '@' separates credentials from the host: passwords may contain one.
    auth=${authority%@*}
    hostport=${authority##*@}
    U_USER=${auth%%:*}
    [[ $auth == *:* ]] && U_PASS=${auth#*:}
  else
    hostport=$authority
  fi
  if [[ $hostport == \[* ]]; then
    U_HOST=${hostport%%]*}
    U_HOST=${U_HOST#\[}
    U_PORT=${hostport#*]}
    U_PORT=${U_PORT#:}
  else
    U_HOST=${hostport%%:*}
    U_PORT=""
    [[ $hostport == *:* ]] && U_PORT=${hostport#*:}
  fi
  [[ -n $U_HOST ]] || die "no host in '${url%%@*}...': dev-deps.sh needs a TCP host such as 127.0.0.1"
  [[ -n $U_PORT ]] || U_PORT=$2
  [[ $U_PORT =~ ^[0-9]+$ ]] || die "bad port '$U_PORT' in a ${U_SCHEME} URL"
  U_USER=$(urldecode "$U_USER")
  U_PASS=$(urldecode "$U_PASS")
  U_PATH=$(urldecode "$U_PATH")
}

parse_urls() {
  parse_url "$PG_URL" 5432
  PG_HOST=$U_HOST PG_PORT=$U_PORT PG_USER=${U_USER:-postgres} PG_PASS=$U_PASS
  # Like libpq, an empty database name means the user's own.
  PG_DB=${U_PATH:-$PG_USER}
  parse_url "$REDIS_URL" 6379
  REDIS_HOST=$U_HOST REDIS_PORT=$U_PORT REDIS_USER=$U_USER REDIS_PASS=$U_PASS
  REDIS_TLS=0
  [[ $U_SCHEME == rediss ]] && REDIS_TLS=1
  return 0
}

# A bare TCP connect is the fallback probe when the client tools are absent:
# it cannot tell a database from any other listener, but it is all bash has.
tcp_open() {
  # shellcheck disable=SC2016 # expanded by the inner bash, on purpose
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# ---------------------------------------------------------------- .dev/started
# One line per server that `up` started: "<service> <port> <path>", where path
# is the data dir (postgres) or pidfile (redis). `down` acts on these lines only.

started_get() { # SERVICE -> prints "PORT PATH"
  [[ -f $STARTED ]] || return 1
  local svc port rest
  while read -r svc port rest; do
    if [[ $svc == "$1" ]]; then
      printf '%s %s\n' "$port" "$rest"
      return 0
    fi
  done <"$STARTED"
  return 1
}

started_del() {
  [[ -f $STARTED ]] || return 0
  local tmp
  tmp=$(mktemp "$DEV/.started.XXXXXX")
  grep -v "^$1 " "$STARTED" >"$tmp" || true
  chmod 0644 "$tmp"
  mv "$tmp" "$STARTED"
}

started_set() { # SERVICE PORT PATH
  started_del "$1"
  printf '%s %s %s\n' "$1" "$2" "$3" >>"$STARTED"
}

# Did `up` start the server now listening on this port?
started_here() { # SERVICE PORT
  local line
  line=$(started_get "$1") || return 1
  [[ ${line%% *} == "$2" ]]
}

prepare_dev_dir() {
  # 0755 so that the unprivileged cluster owner can traverse it whatever the umask.
  [[ -d $DEV ]] || mkdir -m 0755 "$DEV"
  # Serialise concurrent `make run` / `make test`. Every command below that may
  # leave a daemon behind gets `9>&-`, or the daemon would hold this lock forever.
  if command -v flock >/dev/null; then
    exec 9>"$DEV/.lock"
    flock -w 120 9 || die "another dev-deps.sh is still running (lock $DEV/.lock)"
  fi
}

# ------------------------------------------------------------------ packages

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "$* missing and this is not a Debian/Ubuntu system: install PostgreSQL and Redis yourself"
  log "installing $* with apt-get..."
  if [[ $APT_UPDATED == 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2 9>&- || log "warning: apt-get update failed; trying the install anyway"
    APT_UPDATED=1
  fi
  # The packages' postinst scripts try to start system services, which fails in
  # containers without systemd and makes apt-get exit non-zero. That is harmless:
  # the callers check for the binaries themselves.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null >&2 9>&- ||
    log "warning: apt-get reported errors installing $* (often only a service that could not start); continuing"
}

need_install() { # WHAT
  if is_root; then
    return 0
  fi
  die "$1 is not installed and only root may install it. Run: $INSTALL_HINT"
}

# ---------------------------------------------------------------- PostgreSQL

# Debian keeps initdb and pg_ctl out of PATH, in /usr/lib/postgresql/<major>/bin.
# Prefer the major an existing data dir was made with (a newer initdb cannot
# start it), then the newest installed, then PATH (Fedora, Arch, Homebrew).
PG_BINDIR=""
find_pg_bindir() { # [DATA_DIR]
  local d v best=""
  if [[ -n ${1:-} && -f $1/PG_VERSION ]]; then
    v=$(<"$1/PG_VERSION")
    d=/usr/lib/postgresql/$v/bin
    if [[ -x $d/pg_ctl && -x $d/initdb ]]; then
      PG_BINDIR=$d
      return 0
    fi
  fi
  while read -r d; do
    [[ -x $d/pg_ctl && -x $d/initdb ]] && best=$d
  done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V)
  if [[ -z $best ]] && command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    best=$(dirname "$(command -v pg_ctl)")
  fi
  [[ -n $best ]] || return 1
  PG_BINDIR=$best
}

pg_tool() { # NAME -> path of a client tool, from PATH or the versioned bin dir
  if command -v "$1" >/dev/null; then
    command -v "$1"
    return 0
  fi
  [[ -n $PG_BINDIR ]] || find_pg_bindir || true
  if [[ -n $PG_BINDIR && -x $PG_BINDIR/$1 ]]; then
    printf '%s\n' "$PG_BINDIR/$1"
    return 0
  fi
  # Client tools may live in a versioned dir even without initdb (client-only installs).
  local d
  d=$(compgen -G "/usr/lib/postgresql/*/bin/$1" | sort -V | tail -n 1) || true
  [[ -n $d ]] || return 1
  printf '%s\n' "$d"
}

pg_state() { # HOST PORT -> 0 accepting, 1 up but not yet accepting, 2 nothing
  local isready rc=0
  if isready=$(pg_tool pg_isready); then
    # An existing role and database, or each probe logs a FATAL in the server log.
    "$isready" -q -h "$1" -p "$2" -t 3 -U postgres -d postgres || rc=$?
    case $rc in
      0) return 0 ;;
      1) return 1 ;;
      *) return 2 ;;
    esac
  fi
  tcp_open "$1" "$2" || return 2
}

wait_pg() { # HOST PORT
  local deadline=$((SECONDS + WAIT_SECS))
  until pg_state "$1" "$2"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

run_as() { # USER CMD... (cd / because the caller's cwd may be closed to USER)
  if [[ $1 == "$(id -un)" ]]; then
    shift
    "$@"
  elif ! is_root; then
    die "need to be root or $1 to run $2"
  elif command -v runuser >/dev/null; then
    local u=$1
    shift
    (cd / && runuser -u "$u" -- "$@")
  else
    local u=$1
    shift
    # shellcheck disable=SC2016 # expanded by the inner shell, on purpose
    (cd / && su -s /bin/sh "$u" -c 'exec "$0" "$@"' "$@")
  fi
}

ensure_pg_os_user() {
  is_root || return 0
  getent passwd "$PG_OS_USER" >/dev/null && return 0
  log "creating system user $PG_OS_USER to own the local PostgreSQL cluster"
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$PG_OS_USER"
}

# Sets PG_DATA and PG_LOG. Normally .dev/postgres and .dev/postgres.log; but as
# root the cluster runs as $PG_OS_USER, who cannot reach a repo under a closed
# directory such as /root. Then the cluster lives in /tmp, reached through
# symlinks in .dev, and is lost on reboot (it is disposable dev data anyway).
resolve_pg_dirs() {
  PG_DATA=$DEV/postgres
  PG_LOG=$DEV/postgres.log
  is_root || return 0
  if [[ ! -L $PG_DATA ]] && run_as "$PG_OS_USER" test -x "$DEV"; then
    return 0
  fi
  local base
  base=/tmp/herald-dev-$(cksum <<<"$ROOT" | cut -d ' ' -f 1)
  if [[ -L $base ]] || { [[ -e $base ]] && [[ $(stat -c %U "$base") != "$PG_OS_USER" ]]; }; then
    die "$base exists but is not a directory owned by $PG_OS_USER; remove it and retry"
  fi
  install -d -m 0700 -o "$PG_OS_USER" -g "$PG_OS_USER" "$base"
  PG_DATA=$base/postgres
  PG_LOG=$base/postgres.log
  ln -sfn "$PG_DATA" "$DEV/postgres"
  ln -sfn "$PG_LOG" "$DEV/postgres.log"
  log "$ROOT is not reachable by $PG_OS_USER: keeping the cluster in $base (linked from .dev/)"
}

# Settings rewritten on every start, so a changed port in the URL is honoured.
write_pg_conf() { # PORT
  local sockdir=$PG_DATA
  # A Unix socket path must fit in ~107 bytes; a deep repo path would not.
  ((${#sockdir} < 90)) || sockdir=/tmp
  {
    echo "# Written by scripts/dev-deps.sh on every start; edits are lost."
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $1"
    # Not /var/run/postgresql: it may not exist, and belongs to the system cluster.
    echo "unix_socket_directories = '${sockdir//\'/\'\'}'"
    # Disposable dev/test data: trade crash safety for speed.
    echo "fsync = off"
    echo "synchronous_commit = off"
    echo "full_page_writes = off"
  } >"$PG_DATA/herald-dev.conf"
  if ! grep -q "herald-dev.conf" "$PG_DATA/postgresql.conf"; then
    echo "include_if_exists = 'herald-dev.conf'" >>"$PG_DATA/postgresql.conf"
  fi
  if is_root; then chown "$PG_OS_USER:" "$PG_DATA/herald-dev.conf"; fi
}

start_local_pg() {
  ensure_pg_os_user
  resolve_pg_dirs
  find_pg_bindir "$PG_DATA" || die "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH). Run: $INSTALL_HINT"
  local owner
  owner=$(id -un)
  if is_root; then owner=$PG_OS_USER; fi

  mkdir -p "$PG_DATA"
  touch "$PG_LOG"
  if is_root; then
    [[ $(stat -c %U "$PG_DATA") == "$owner" ]] || chown -R "$owner:" "$PG_DATA"
    chown "$owner:" "$PG_LOG"
  fi
  chmod 0700 "$PG_DATA"

  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    # Only an interrupted initdb leaves a non-empty data dir without PG_VERSION,
    # and initdb refuses non-empty dirs: clear it so the next run can recover.
    if [[ -n $(ls -A "$PG_DATA") ]]; then
      log "clearing half-initialised $PG_DATA"
      find "$PG_DATA" -mindepth 1 -delete
    fi
    log "initialising a PostgreSQL cluster in $PG_DATA ($PG_BINDIR)"
    # C locale: containers often lack generated locales, and tests must not
    # depend on the developer's collation. Trust auth: local, loopback-only, dev.
    run_as "$owner" "$PG_BINDIR/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --locale=C \
      </dev/null >>"$PG_LOG" 2>&1 || {
      show_log_tail "$PG_LOG"
      die "initdb failed"
    }
  fi

  if run_as "$owner" "$PG_BINDIR/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    die "the project-local PostgreSQL in $PG_DATA is running but not on port $PG_PORT; run 'scripts/dev-deps.sh down' (or: pg_ctl -D $PG_DATA stop) first"
  fi

  if tcp_open 127.0.0.1 "$PG_PORT"; then
    die "127.0.0.1:$PG_PORT is taken by something that does not answer as PostgreSQL; pick another port in HERALD__DATABASE__URL"
  fi
  write_pg_conf "$PG_PORT"
  run_as "$owner" "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_SECS" -s start \
    </dev/null >&2 9>&- || {
    show_log_tail "$PG_LOG"
    die "PostgreSQL did not start on 127.0.0.1:$PG_PORT"
  }
  # Recorded at once, so `down` can stop it even if a later step fails.
  started_set postgres "$PG_PORT" "$PG_DATA"
  wait_pg 127.0.0.1 "$PG_PORT" || {
    show_log_tail "$PG_LOG"
    die "PostgreSQL started but does not accept connections on 127.0.0.1:$PG_PORT"
  }
}

PSQL=""
psql_c() { # USER PASSWORD DB SQL
  local user=$1 pass=$2 db=$3 sql=$4
  if [[ -n $pass ]]; then
    PGPASSWORD=$pass PGCONNECT_TIMEOUT=5 "$PSQL" -X -q -t -A -v ON_ERROR_STOP=1 \
      -h "$PG_HOST" -p "$PG_PORT" -U "$user" -d "$db" -c "$sql"
  else
    PGCONNECT_TIMEOUT=5 "$PSQL" -X -q -t -A -v ON_ERROR_STOP=1 \
      -h "$PG_HOST" -p "$PG_PORT" -U "$user" -d "$db" -c "$sql"
  fi
}

sql_ident() { printf '"%s"' "${1//\"/\"\"}"; }
sql_lit() { printf "'%s'" "${1//\'/\'\'}"; }

ensure_pg_database() { # OURS(0|1)
  local ours=$1 user=$PG_USER pass=$PG_PASS maint=postgres out owner_clause=""
  if ! PSQL=$(pg_tool psql); then
    if is_root; then
      apt_install postgresql-client
      PSQL=$(pg_tool psql) || die "psql still missing after installing postgresql-client"
    else
      die "psql is not installed. Run: sudo apt-get install -y postgresql-client"
    fi
  fi

  if [[ $ours == 1 ]]; then
    # Our cluster trusts loopback logins, so administer it as its superuser and
    # give the URL's user a role if it is another one.
    user=postgres pass=""
    if [[ $PG_USER != postgres ]]; then
      out=$(psql_c postgres "" postgres "SELECT 1 FROM pg_roles WHERE rolname = $(sql_lit "$PG_USER")" 2>&1) ||
        die "cannot query the local PostgreSQL on port $PG_PORT: $out"
      if [[ $out != 1 ]]; then
        psql_c postgres "" postgres "CREATE ROLE $(sql_ident "$PG_USER") LOGIN SUPERUSER" >/dev/null ||
          die "could not create role '$PG_USER'"
      fi
      owner_clause=" OWNER $(sql_ident "$PG_USER")"
    fi
  fi

  psql_c "$user" "$pass" postgres 'SELECT 1' >/dev/null 2>&1 || maint=template1
  if [[ ${HERALD_DEV_DEPS_RECREATE_DB:-0} == 1 ]]; then
    [[ $PG_DB == herald_bench* ]] && is_local_host "$PG_HOST" ||
      die "HERALD_DEV_DEPS_RECREATE_DB drops only a local scratch database named herald_bench*, not '$PG_DB' at $PG_HOST"
    out=$(psql_c "$user" "$pass" "$maint" "DROP DATABASE IF EXISTS $(sql_ident "$PG_DB") WITH (FORCE)" 2>&1) ||
      die "could not drop database '$PG_DB': $out"
  fi
  out=$(psql_c "$user" "$pass" "$maint" "SELECT 1 FROM pg_database WHERE datname = $(sql_lit "$PG_DB")" 2>&1) || {
    log "cannot log in to PostgreSQL at $PG_HOST:$PG_PORT as '$user': $out"
    log "hint: Debian's packaged cluster wants a password over TCP; e.g."
    log "  sudo -u postgres psql -c \"ALTER USER postgres PASSWORD 'postgres'\""
    log "  export HERALD__DATABASE__URL=postgres://postgres:postgres@127.0.0.1:5432/herald"
    die "PostgreSQL answers but the credentials in HERALD__DATABASE__URL are refused"
  }
  [[ $out == 1 ]] && return 0
  if ! out=$(psql_c "$user" "$pass" "$maint" "CREATE DATABASE $(sql_ident "$PG_DB")$owner_clause" 2>&1); then
    # Another process may have created it meanwhile; only its absence is an error.
    [[ $(psql_c "$user" "$pass" "$maint" "SELECT 1 FROM pg_database WHERE datname = $(sql_lit "$PG_DB")" 2>/dev/null) == 1 ]] ||
      die "could not create database '$PG_DB' at $PG_HOST:$PG_PORT: $out"
  else
    PG_DB_CREATED=1
  fi
}

up_postgres() {
  local rc=0 how ours=0
  PG_DB_CREATED=0
  pg_state "$PG_HOST" "$PG_PORT" || rc=$?
  if ((rc != 2)); then
    how=found
  else
    is_local_host "$PG_HOST" ||
      die "nothing answers at $PG_HOST:$PG_PORT (HERALD__DATABASE__URL), and dev-deps.sh only starts servers on 127.0.0.1/localhost"
    if ! find_pg_bindir; then
      need_install PostgreSQL
      apt_install postgresql
      find_pg_bindir || die "PostgreSQL binaries still missing after apt-get install postgresql"
    fi
    # Debian's postinst may just have created and started a cluster on 5432.
    rc=0
    pg_state "$PG_HOST" "$PG_PORT" || rc=$?
    if ((rc != 2)); then
      how="found (started by the postgresql package)"
    else
      start_local_pg
      how="started (.dev/postgres, log .dev/postgres.log)"
    fi
  fi
  wait_pg "$PG_HOST" "$PG_PORT" || die "PostgreSQL at $PG_HOST:$PG_PORT answers but is not accepting connections"
  if is_local_host "$PG_HOST" && started_here postgres "$PG_PORT"; then
    ours=1
    [[ $how == found ]] && how="found (project-local, started earlier)"
  fi
  ensure_pg_database "$ours"
  local db_note="database '$PG_DB' exists"
  [[ $PG_DB_CREATED == 1 ]] && db_note="database '$PG_DB' created"
  log "postgres $PG_HOST:$PG_PORT: $how; $db_note"
}

# --------------------------------------------------------------------- Redis

redis_state() { # HOST PORT -> 0 answering, 1 loading, 2 nothing
  local out args
  if [[ $REDIS_TLS == 0 ]] && command -v redis-cli >/dev/null; then
    args=(-h "$1" -p "$2")
    if [[ -n $REDIS_USER ]]; then args+=(--user "$REDIS_USER"); fi
    # An empty REDISCLI_AUTH still sends AUTH, which a password-less server rejects.
    if [[ -n $REDIS_PASS ]]; then
      out=$(REDISCLI_AUTH=$REDIS_PASS timeout 5 redis-cli "${args[@]}" ping 2>&1 </dev/null) || true
    else
      out=$(timeout 5 redis-cli "${args[@]}" ping 2>&1 </dev/null) || true
    fi
    case $out in
      PONG) return 0 ;;
      # A Redis that wants other credentials is still a Redis: leave it to the service.
      *NOAUTH* | *WRONGPASS*) return 0 ;;
      *LOADING*) return 1 ;;
      *) return 2 ;;
    esac
  fi
  tcp_open "$1" "$2" || return 2
}

wait_redis() { # HOST PORT [PIDFILE]
  local deadline=$((SECONDS + WAIT_SECS)) pid
  until redis_state "$1" "$2"; do
    if [[ -n ${3:-} && -s $3 ]]; then
      pid=$(<"$3")
      kill -0 "$pid" 2>/dev/null || return 1
    fi
    ((SECONDS < deadline)) || return 1
    sleep 0.3
  done
}

is_redis_pid() { # PID
  local comm=""
  if [[ -r /proc/$1/comm ]]; then
    comm=$(<"/proc/$1/comm")
  else
    comm=$(ps -p "$1" -o comm= 2>/dev/null) || true
  fi
  [[ $comm == redis-server* ]]
}

redis_conf_str() { # quoted for redis.conf, which understands C-style escapes
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

start_local_redis() {
  local dir=$DEV/redis pidfile=$DEV/redis.pid logfile=$DEV/redis.log conf=$DEV/redis.conf pid
  if [[ -s $pidfile ]]; then
    pid=$(<"$pidfile")
    if kill -0 "$pid" 2>/dev/null && is_redis_pid "$pid"; then
      die "the project-local Redis (pid $pid) is running but not on port $REDIS_PORT; run 'scripts/dev-deps.sh down' first"
    fi
    rm -f "$pidfile"
  fi
  # redis-server daemonizes before it binds, so a taken port would only show as
  # a 30 s timeout: catch the common case up front.
  if tcp_open 127.0.0.1 "$REDIS_PORT"; then
    die "127.0.0.1:$REDIS_PORT is taken by something that does not answer as Redis; pick another port in HERALD__REDIS__URL"
  fi
  mkdir -p "$dir"
  # A config file rather than flags: its quoting survives paths with spaces.
  {
    echo "# Written by scripts/dev-deps.sh on every start; edits are lost."
    echo "bind 127.0.0.1"
    echo "port $REDIS_PORT"
    echo "daemonize yes"
    # Cache and queue data for dev and tests only: never persist it.
    echo 'save ""'
    echo "appendonly no"
    echo "dir $(redis_conf_str "$dir")"
    echo "pidfile $(redis_conf_str "$pidfile")"
    echo "logfile $(redis_conf_str "$logfile")"
  } >"$conf"
  redis-server "$conf" </dev/null >>"$logfile" 2>&1 9>&- || {
    show_log_tail "$logfile"
    die "redis-server failed to start"
  }
  if ! wait_redis 127.0.0.1 "$REDIS_PORT" "$pidfile"; then
    show_log_tail "$logfile"
    # Record it anyway if it is alive, so `down` can clean up after us.
    if [[ -s $pidfile ]] && is_redis_pid "$(<"$pidfile")"; then started_set redis "$REDIS_PORT" "$pidfile"; fi
    die "Redis did not answer on 127.0.0.1:$REDIS_PORT within ${WAIT_SECS}s"
  fi
  started_set redis "$REDIS_PORT" "$pidfile"
}

up_redis() {
  local rc=0 how
  redis_state "$REDIS_HOST" "$REDIS_PORT" || rc=$?
  if ((rc != 2)); then
    how=found
  else
    is_local_host "$REDIS_HOST" ||
      die "nothing answers at $REDIS_HOST:$REDIS_PORT (HERALD__REDIS__URL), and dev-deps.sh only starts servers on 127.0.0.1/localhost"
    if ! command -v redis-server >/dev/null; then
      need_install Redis
      apt_install redis-server
      command -v redis-server >/dev/null || die "redis-server still missing after apt-get install redis-server"
    fi
    # Debian's postinst may have started the packaged service on 6379.
    rc=0
    redis_state "$REDIS_HOST" "$REDIS_PORT" || rc=$?
    if ((rc != 2)); then
      how="found (started by the redis-server package)"
    else
      start_local_redis
      how="started (.dev/redis, log .dev/redis.log)"
    fi
  fi
  wait_redis "$REDIS_HOST" "$REDIS_PORT" || die "Redis at $REDIS_HOST:$REDIS_PORT is still loading after ${WAIT_SECS}s"
  if [[ $how == found ]] && is_local_host "$REDIS_HOST" && started_here redis "$REDIS_PORT"; then
    how="found (project-local, started earlier)"
  fi
  log "redis $REDIS_HOST:$REDIS_PORT: $how"
}

# ------------------------------------------------------------------ commands

cmd_up() {
  exec 1>&2
  parse_urls
  prepare_dev_dir
  up_postgres
  up_redis
}

down_postgres() { # PORT DATA_DIR
  local port=$1 data=$2 owner rc=0
  if [[ ! -f $data/PG_VERSION ]]; then
    log "postgres :$port: data dir $data is gone; forgetting it"
    started_del postgres
    return 0
  fi
  find_pg_bindir "$data" || die "cannot find pg_ctl to stop the PostgreSQL in $data"
  owner=$(stat -c %U "$data")
  run_as "$owner" "$PG_BINDIR/pg_ctl" -D "$data" status >/dev/null 2>&1 || rc=$?
  case $rc in
    0)
      run_as "$owner" "$PG_BINDIR/pg_ctl" -D "$data" -m fast -w -t 60 -s stop </dev/null >&2 ||
        die "pg_ctl stop failed for $data"
      log "postgres 127.0.0.1:$port: stopped (data kept in $data)"
      ;;
    3) log "postgres 127.0.0.1:$port: was not running" ;;
    *) die "pg_ctl status failed for $data (exit $rc)" ;;
  esac
  started_del postgres
}

down_redis() { # PORT PIDFILE
  local port=$1 pidfile=$2 pid deadline
  if [[ ! -s $pidfile ]]; then
    log "redis 127.0.0.1:$port: no pidfile $pidfile; assuming it is gone"
    started_del redis
    return 0
  fi
  pid=$(<"$pidfile")
  # The pid may have been reused since: only signal it if it is still a redis-server.
  if ! kill -0 "$pid" 2>/dev/null || ! is_redis_pid "$pid"; then
    log "redis 127.0.0.1:$port: was not running"
    rm -f "$pidfile"
    started_del redis
    return 0
  fi
  # SIGTERM is a clean shutdown; with `save ""` it writes nothing, like SHUTDOWN NOSAVE,
  # and needs no password.
  kill -TERM "$pid"
  deadline=$((SECONDS + WAIT_SECS))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || die "redis pid $pid did not exit within ${WAIT_SECS}s"
    sleep 0.2
  done
  rm -f "$pidfile"
  log "redis 127.0.0.1:$port: stopped"
  started_del redis
}

cmd_down() {
  exec 1>&2
  if [[ ! -s $STARTED ]]; then
    log "nothing to stop: dev-deps.sh has not started any server"
    return 0
  fi
  prepare_dev_dir
  local line
  if line=$(started_get postgres); then down_postgres "${line%% *}" "${line#* }"; fi
  if line=$(started_get redis); then down_redis "${line%% *}" "${line#* }"; fi
  return 0
}

cmd_status() {
  parse_urls
  local rc=0 all=0 who
  pg_state "$PG_HOST" "$PG_PORT" || rc=$?
  who=""
  if is_local_host "$PG_HOST" && started_here postgres "$PG_PORT"; then who=" (started by dev-deps.sh)"; fi
  case $rc in
    0) echo "postgres $PG_HOST:$PG_PORT: answering$who" ;;
    1) echo "postgres $PG_HOST:$PG_PORT: up, not yet accepting connections$who" ;;
    *) echo "postgres $PG_HOST:$PG_PORT: not answering" && all=1 ;;
  esac
  rc=0
  redis_state "$REDIS_HOST" "$REDIS_PORT" || rc=$?
  who=""
  if is_local_host "$REDIS_HOST" && started_here redis "$REDIS_PORT"; then who=" (started by dev-deps.sh)"; fi
  case $rc in
    0) echo "redis $REDIS_HOST:$REDIS_PORT: answering$who" ;;
    1) echo "redis $REDIS_HOST:$REDIS_PORT: loading$who" ;;
    *) echo "redis $REDIS_HOST:$REDIS_PORT: not answering" && all=1 ;;
  esac
  return "$all"
}

usage() {
  sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) usage ;;
esac
