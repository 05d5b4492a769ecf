#!/usr/bin/env bash
# check-vendor.sh: vendor/actix-http must be exactly actix-http $VERSION as
# published on crates.io plus vendor/actix-http/herald.patch (make check-vendor,
# run by make test). Rebuilds that copy from the published .crate the way
# vendor/actix-http/HERALD.md says it was made, and fails with the diff if the
# vendored tree differs: an edit outside herald.patch cannot hide there.
# Also fails if Cargo.toml's [patch.crates-io] no longer points at the copy or
# Cargo.lock resolves another actix-http, so an upgrade cannot leave this stale.
#
# Needs: curl (only when the .crate is not in Cargo's cache; static.crates.io),
# sha256sum or shasum, tar, awk, patch, diff, python3 >= 3.11 (tomllib).
set -euo pipefail

# Upgrading actix-http: change both (the checksum is the registry index's
# `cksum` of the release, the same as `sha256sum` of the downloaded .crate).
VERSION=3.20.0
SHA256=d20a22850ea7fecad12c5f8cd97d246c3af1f04ef400033977c2f13425c45816

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENDOR="$ROOT/vendor/actix-http"
CRATE="actix-http-$VERSION.crate"
URL="https://static.crates.io/crates/actix-http/$CRATE"

die() { echo "check-vendor: FAILED: $*" >&2; exit 1; }

# 1. The workspace really uses this copy, and Cargo resolves it at $VERSION.
python3 - "$ROOT" "$VERSION" <<'PY' || die "Cargo.toml/Cargo.lock do not use vendor/actix-http $VERSION"
import sys
from pathlib import Path

if sys.version_info < (3, 11):
    sys.exit("check-vendor: python3 >= 3.11 needed (tomllib)")
import tomllib

root, version = Path(sys.argv[1]), sys.argv[2]
problems = []
manifest = tomllib.loads((root / "Cargo.toml").read_text())
entry = manifest.get("patch", {}).get("crates-io", {}).get("actix-http")
if entry != {"path": "vendor/actix-http"}:
    problems.append(
        "Cargo.toml: [patch.crates-io] actix-http must be "
        f'{{ path = "vendor/actix-http" }}, found {entry!r}'
    )
lock = tomllib.loads((root / "Cargo.lock").read_text())
found = [p for p in lock.get("package", []) if p.get("name") == "actix-http"]
# A path package has no `source` in Cargo.lock; one from the registry has one,
# which would mean the [patch] is not used (say, actix-web now needs a newer
# actix-http than the vendored one).
if [(p.get("version"), p.get("source")) for p in found] != [(version, None)]:
    got = ", ".join(f"{p.get('version')} from {p.get('source', 'a path')}" for p in found)
    problems.append(
        f"Cargo.lock: expected one actix-http {version} from vendor/actix-http, "
        f"found: {got or 'none'} (upgrading? see vendor/actix-http/HERALD.md)"
    )
for p in problems:
    print(f"check-vendor: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY

tmp="$(mktemp -d "${TMPDIR:-/tmp}/check-vendor.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"; else shasum -a 256 "$1"; fi | awk '{print $1}'
}

# 2. The published .crate: Cargo's download cache if it has it (a [patch]ed
# crate is usually not there), else the registry's static host.
crate=""
for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$CRATE"; do
  [[ -f $f ]] && { crate="$f"; break; }
done
if [[ -z $crate ]]; then
  crate="$tmp/$CRATE"
  curl -fsSL --proto '=https' --retry 3 -o "$crate" "$URL" || die "cannot download $URL"
fi
got="$(sha256 "$crate")"
[[ $got == "$SHA256" ]] || die "$crate: sha256 $got, expected $SHA256"
tar -xzf "$crate" -C "$tmp"
pub="$tmp/actix-http-$VERSION"

# 3. The vendoring steps of HERALD.md: src/, LICENSE-*, README.md, and
# Cargo.toml without its [[example]], [[test]], [[bench]] and
# [dev-dependencies.*] tables. In the published (normalized) Cargo.toml every
# table starts with a `[` in column 0 and runs to the next one, blank line
# included, so dropping those tables whole is deterministic.
exp="$tmp/expected"
mkdir "$exp"
cp -R "$pub/src" "$pub"/LICENSE-* "$pub/README.md" "$exp/"
awk '
  /^\[/ { skip = ($0 ~ /^\[\[(example|test|bench)\]\]$/ || $0 ~ /^\[dev-dependencies(\.[^]]+)?\]$/) }
  !skip
' "$pub/Cargo.toml" > "$exp/Cargo.toml"

# 4. herald.patch, with no fuzz: its context lines must be upstream's exactly.
if ! out="$(patch -p1 --batch --fuzz=0 --no-backup-if-mismatch -d "$exp" < "$VENDOR/herald.patch" 2>&1)"; then
  printf '%s\n' "$out" >&2
  die "vendor/actix-http/herald.patch does not apply to actix-http $VERSION"
fi

# 5. Compare with the vendored tree (its two Herald files aside).
mkdir -p "$tmp/vendor"
cp -R "$VENDOR" "$tmp/vendor/actix-http"
rm -f "$tmp/vendor/actix-http/HERALD.md" "$tmp/vendor/actix-http/herald.patch"
if ! (cd "$tmp" && diff -ru "expected" "vendor/actix-http") > "$tmp/diff"; then
  echo "check-vendor: vendor/actix-http differs from actix-http $VERSION + herald.patch" >&2
  echo "(--- expected: published crate, vendoring steps, herald.patch; +++ the vendored tree)" >&2
  head -n 200 "$tmp/diff" >&2
  n="$(wc -l < "$tmp/diff")"
  (( n <= 200 )) || echo "... ($n lines of diff in all)" >&2
  die "put every change to actix-http in herald.patch (vendor/actix-http/HERALD.md)"
fi
echo "check-vendor: ok (vendor/actix-http = actix-http $VERSION, sha256 ${SHA256:0:12}..., + herald.patch; Cargo.toml and Cargo.lock use it)"
