#!/usr/bin/env bash
# The apply bench (100k remote document writes into a replica, in push batches, cut and
# persisted after each) natively and compiled to wasm32 in Node, in one run, and the ratio.
#
#   bash scripts/bench-wasm.sh
#
# Both sides run bridge-core/benches/apply_wasm.rs in the release profile: natively its
# `main`, on wasm32 its `#[wasm_bindgen_test]` under wasm-bindgen-test-runner (timed with
# `performance.now()`). Both builds finish before either is timed. Recorded in BENCHMARKS.md.
#
# Environment: CARGO_TARGET_DIR, SACRED_BRIDGE_TOOLS (where scripts/setup.sh installs the
# wasm-bindgen-test-runner that matches Cargo.lock).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS="${SACRED_BRIDGE_TOOLS:-$HOME/.cache/sacred-bridge/tools}"
RUNNER="$TOOLS/bin/wasm-bindgen-test-runner"
if [[ ! -x "$RUNNER" ]]; then
    echo "bench-wasm: $RUNNER is missing; run scripts/setup.sh first" >&2
    exit 1
fi
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$RUNNER"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

bench=(cargo test --release -p bridge-core --bench apply_wasm)
"${bench[@]}" --no-run
"${bench[@]}" --target wasm32-unknown-unknown --no-run

OUT="$(mktemp -d "${TMPDIR:-/tmp}/bench-wasm.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
printf 'machine: %s, %s cores; node %s\n' "$(uname -m)" "$(nproc)" "$(node --version)"
"${bench[@]}" 2>/dev/null | tee "$OUT/native"
"${bench[@]}" --target wasm32-unknown-unknown -- --nocapture 2>/dev/null \
    | grep '^apply_100k' | tee "$OUT/wasm"

median() { sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' "$1"; }
native="$(median "$OUT/native")"
wasm="$(median "$OUT/wasm")"
if [[ -z "$native" || -z "$wasm" ]]; then
    echo "bench-wasm: a run printed no median" >&2
    exit 1
fi
awk -v n="$native" -v w="$wasm" 'BEGIN {
    r = w / n
    printf "wasm32 / native (median time): %.2fx; target: within 2x: %s\n", r, (r <= 2 ? "met" : "NOT met")
}'
