#!/usr/bin/env bash
# deny.sh: cargo-deny over the dependency tree (make test): licenses,
# sources and bans always; advisories when the RustSec database can be
# fetched, else skipped with a warning (offline machines). Installs
# cargo-deny (pinned) into cargo's bin folder on first use, about 2.5 min.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VERSION=0.20.2
cd "$ROOT"

deny=$(command -v cargo-deny || true)
if [[ -z $deny || $("$deny" --version 2>/dev/null) != "cargo-deny $VERSION" ]]; then
  echo "deny.sh: installing cargo-deny $VERSION (once)..." >&2
  cargo install cargo-deny --locked --version "$VERSION" --quiet
  deny=$(command -v cargo-deny || echo "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deny")
fi

"$deny" --log-level error check licenses sources bans
if timeout 15 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  "$deny" --log-level error check advisories
else
  echo "deny.sh: WARNING: the RustSec advisory database cannot be fetched (offline?); advisories NOT checked" >&2
fi
