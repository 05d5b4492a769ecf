#!/usr/bin/env bash
# pgbouncer.sh: prints the path of a PgBouncer that can pool Herald in
# transaction mode (make test runs it; the pooler test starts that binary).
#
# Herald's queries are prepared statements (tokio-postgres, diesel's
# statement cache). PgBouncer pools them in transaction mode from 1.21 on
# (max_prepared_statements); Debian 12's package is 1.18. So: a `pgbouncer`
# on PATH when it is 1.21 or newer, else Debian 13's PgBouncer source
# package (its upstream tarball from deb.debian.org, checksum pinned) built
# once into .tools/. Building needs gcc, make, pkg-config, libevent-dev and
# libssl-dev, installed with apt-get when missing and running as root.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VERSION=1.24.1
TARBALL="pgbouncer_${VERSION}.orig.tar.gz"
URL="http://deb.debian.org/debian/pool/main/p/pgbouncer/$TARBALL"
SHA256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
PREFIX="$ROOT/.tools/pgbouncer-$VERSION"
PATH=$PATH:/usr/sbin:/sbin

log() { printf 'pgbouncer.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# 1.21 or newer?
recent_enough() {
  local version
  version=$("$1" --version 2>/dev/null | awk 'NR == 1 { print $2 }') || return 1
  [[ -n $version ]] || return 1
  local major=${version%%.*} rest=${version#*.}
  local minor=${rest%%.*}
  ((major > 1 || (major == 1 && minor >= 21)))
}

if command -v pgbouncer >/dev/null && recent_enough "$(command -v pgbouncer)"; then
  command -v pgbouncer
  exit 0
fi
if [[ -x $PREFIX/bin/pgbouncer ]]; then
  echo "$PREFIX/bin/pgbouncer"
  exit 0
fi

missing=()
command -v gcc >/dev/null || missing+=(gcc)
command -v make >/dev/null || missing+=(make)
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists libevent 2>/dev/null || missing+=(libevent-dev)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null ||
    die "building PgBouncer $VERSION needs ${missing[*]}: install them (sudo apt-get install ${missing[*]})"
  log "installing ${missing[*]} with apt-get..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 </dev/null ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 </dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 </dev/null; } ||
    die "apt-get could not install ${missing[*]}"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "building PgBouncer $VERSION from Debian's source into $PREFIX (once)..."
curl -fsS --retry 3 -o "$work/$TARBALL" "$URL" || die "cannot download $URL"
echo "$SHA256  $work/$TARBALL" | sha256sum -c --quiet - || die "$TARBALL: checksum mismatch"
mkdir "$work/src"
tar xzf "$work/$TARBALL" -C "$work/src" --strip-components=1
(
  cd "$work/src"
  ./configure --prefix="$PREFIX" --without-cares --with-openssl >"$work/configure.log" 2>&1 ||
    { tail -20 "$work/configure.log" >&2; exit 1; }
  make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -20 "$work/make.log" >&2; exit 1; }
  make install >"$work/install.log" 2>&1 || { tail -20 "$work/install.log" >&2; exit 1; }
) || die "the build failed (see above)"
recent_enough "$PREFIX/bin/pgbouncer" || die "built $PREFIX/bin/pgbouncer but it does not run"
echo "$PREFIX/bin/pgbouncer"
