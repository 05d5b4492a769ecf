#!/usr/bin/env bash
# fuzz.sh: runs each cargo-fuzz target in fuzz/ (libFuzzer, coverage
# guided) for a bounded time, starting from and adding to its committed
# corpus in fuzz/corpus/<target>. A crash, a panic or a failed assertion
# stops it with the input saved in fuzz/artifacts/<target>/ and exits
# non-zero. `make fuzz`; not part of `make test` (it builds another
# instrumented copy of the crates).
#
#   FUZZ_SECS     seconds per target (default 60)
#   FUZZ_TARGETS  which targets (default: all of them)
#
# cargo-fuzz is installed (pinned) with `cargo install` on first use. The
# toolchain is stable: no sanitizer (`-s none`; the fuzzed code is safe
# Rust, and panics and assertions are what is looked for), and
# RUSTC_BOOTSTRAP=1 for the one unstable flag cargo-fuzz passes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PIN="0.13.2"
SECS="${FUZZ_SECS:-60}"

if ! cargo fuzz --version 2>/dev/null | grep -q "$PIN"; then
  echo "fuzz.sh: installing cargo-fuzz $PIN (once)" >&2
  cargo install --quiet --locked cargo-fuzz --version "$PIN"
fi

cd "$ROOT/fuzz"
targets=(${FUZZ_TARGETS:-$(cargo fuzz list)})
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "fuzz.sh: $target for ${SECS}s" >&2
  cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time="$SECS" -max_len=16384 -timeout=10 -print_final_stats=1
done
echo "fuzz.sh: no crash in ${targets[*]}; to keep what the run added, minimise before committing: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz cmin -s none <target> corpus/<target>)" >&2
