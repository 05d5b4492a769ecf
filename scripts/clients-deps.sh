#!/usr/bin/env bash
# clients-deps.sh: what the browser side (clients/) needs, on a fresh machine.
#
#   scripts/clients-deps.sh           Node.js >= 20.19 and npm, then `npm ci`
#                                     in clients/ when node_modules is missing
#                                     or older than package-lock.json
#   scripts/clients-deps.sh --browser the same, plus Chromium for the browser
#                                     tests: installed from the distribution's
#                                     packages when running as root, else a
#                                     message saying how (never skipped)
#
# Everything comes from the committed lock file and the distribution; nothing
# is fetched at run time. Writes only to stderr.
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
CLIENTS="$ROOT/clients"
NODE_MIN=20.19

log() { printf 'clients-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

apt_install() {
  is_root && command -v apt-get >/dev/null || return 1
  log "installing $* from the distribution's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 \
    || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2; }
}

version_at_least() { # $1 >= $2, dotted
  [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm || die "Node.js >= $NODE_MIN and npm are needed: sudo apt-get install nodejs npm (or nodejs.org)"
fi
node_version="$(node --version)"
node_version="${node_version#v}"
version_at_least "$node_version" "$NODE_MIN" \
  || die "Node.js $node_version is too old: clients/ needs >= $NODE_MIN (Vite 8)"

stamp="$CLIENTS/node_modules/.package-lock.json"
if [[ ! -f $stamp || $CLIENTS/package-lock.json -nt $stamp ]]; then
  log "npm ci in clients/ (from package-lock.json)"
  (cd "$CLIENTS" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

if [[ ${1:-} == --browser ]]; then
  chromium="${CHROMIUM:-}"
  if [[ -z $chromium ]]; then
    chromium="$(command -v chromium || command -v chromium-browser || true)"
  fi
  if [[ -z $chromium ]]; then
    apt_install chromium || die "the browser tests need Chromium: sudo apt-get install chromium (or set CHROMIUM=/path/to/chrome); run make test as root to have it installed"
    chromium="$(command -v chromium)"
  fi
  "$chromium" --version >/dev/null 2>&1 || die "$chromium does not run"
fi
