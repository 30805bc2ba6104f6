#!/usr/bin/env bash
# THE test command of Sacred Bridge: what README.md names and .ci/run calls.
#
#   bash scripts/test.sh
#
# Installs what it needs (scripts/setup.sh), then: format check, clippy with -D warnings on
# every target natively and for wasm32, every native test (the deterministic simulation runs
# SIM_SEEDS seeds, 500 unless set), the wasm32 import check of a module that links the core,
# and the core's tests compiled to wasm32 and run in Node. Each step prints its time; a
# summary closes the run. A failing step does not hide the others: all run (after setup),
# and the script exits non-zero if any failed.
#
# Environment: SIM_SEEDS (default 500), SIM_SEED (replay one seed), CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
export SIM_SEEDS="${SIM_SEEDS:-500}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sacred-bridge-test.XXXXXX")"
trap 'rm -rf "$LOG_DIR"' EXIT

STEP_NAMES=()
STEP_RESULTS=()
STEP_SECONDS=()
FAILED=0

# step NAME COMMAND...: runs COMMAND with errexit on, logs its output, records result and time.
step() {
    local name="$1"
    shift
    printf '\n==> %s: %s\n' "$name" "$*"
    local start=$SECONDS rc
    set +e
    (set -euo pipefail; "$@") 2>&1 | tee "$LOG_DIR/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    local took=$((SECONDS - start))
    STEP_NAMES+=("$name")
    STEP_SECONDS+=("$took")
    if [[ $rc -eq 0 ]]; then
        STEP_RESULTS+=("ok")
        printf '<== %s: ok in %ss\n' "$name" "$took"
    else
        STEP_RESULTS+=("FAILED (exit $rc)")
        FAILED=$((FAILED + 1))
        printf '<== %s: FAILED (exit %s) after %ss\n' "$name" "$rc" "$took"
    fi
    return 0
}

summary() {
    printf '\n==== scripts/test.sh summary (SIM_SEEDS=%s) ====\n' "$SIM_SEEDS"
    local i total=0
    for i in "${!STEP_NAMES[@]}"; do
        printf '  %-14s %-18s %5ss\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" "${STEP_SECONDS[$i]}"
        total=$((total + STEP_SECONDS[i]))
    done
    printf '  %-14s %-18s %5ss\n' "total" "" "$total"
    # Test counts from every cargo test run above (native and wasm32).
    local passed failed
    passed=$(cat "$LOG_DIR"/*.log | sed -n 's/^test result: .*[^0-9]\([0-9][0-9]*\) passed; \([0-9][0-9]*\) failed.*/\1/p' \
        | awk '{ s += $1 } END { print s + 0 }')
    failed=$(cat "$LOG_DIR"/*.log | sed -n 's/^test result: .* \([0-9][0-9]*\) failed.*/\1/p' \
        | awk '{ s += $1 } END { print s + 0 }')
    if [[ $FAILED -eq 0 ]]; then
        printf 'ALL STEPS PASSED\n'
    else
        printf '%s STEP(S) FAILED: see the output of each above\n' "$FAILED"
    fi
    printf 'tests: %s passed, %s failed\n' "$passed" "$failed"
}

# ---- the steps -----------------------------------------------------------------------------

# wasm32 crates whose clippy runs for that target too (all targets: wasm-client has browser tests).
WASM_CRATES=(bridge-core wasm-client)

clippy_wasm() {
    local crate
    for crate in "${WASM_CRATES[@]}"; do
        cargo clippy -p "$crate" --target wasm32-unknown-unknown --all-targets -- -D warnings
    done
    # The edge worker's library as the Worker runs it (its tests run natively).
    cargo clippy -p edge-worker --target wasm32-unknown-unknown -- -D warnings
}

# Builds a wasm32 module that links the engine (bridge-core/examples/wasm_probe.rs) and checks
# that it imports nothing from `env`.
wasm_imports() {
    cargo build -p bridge-core --example wasm_probe --release --target wasm32-unknown-unknown
    local target_dir
    target_dir="$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    python3 scripts/wasm_imports.py --forbid env --min-code-bytes 100000 \
        "$target_dir/wasm32-unknown-unknown/release/examples/wasm_probe.wasm"
}

# The core's unit tests and tests/wasm.rs, compiled to wasm32, run in Node. The other
# integration tests are native-only (files, threads, long property runs).
wasm_tests() {
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$TOOLS/bin/wasm-bindgen-test-runner" \
        cargo test -p bridge-core --features sim --target wasm32-unknown-unknown --lib --test wasm
}

# The edge worker on the real workerd runtime: build the bundle once (worker-build, offline),
# then the end-to-end tests under wrangler's dev server (tests/tests/edge.rs; plain `cargo test`
# skips them because they need this build). Prints the round-trip benchmark too.
edge_tests() {
    bash scripts/edge-build.sh
    SACRED_BRIDGE_EDGE_BUILT=1 cargo test -p tests --test edge -- --ignored --nocapture
}

# The browser package, size-optimised, into wasm-client/pkg; prints its size raw and gzip.
# First checks that the copy the native host embeds (wasm-client/dist, committed) was built
# from these sources; the build refreshes it either way, so the tests below run the current
# package, and the step fails until the refreshed copy is committed.
build_wasm_client() {
    local rc=0
    python3 scripts/wasm_client_stamp.py --check || rc=$?
    bash scripts/build-wasm-client.sh
    return "$rc"
}

# Runs a command with TMPDIR pointing at a fresh folder, removed afterwards: Chromium leaves
# a profile of ~15 MB per run there.
with_browser_tmp() {
    local tmp rc=0
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/sacred-bridge-chromium.XXXXXX")"
    TMPDIR="$tmp" "$@" || rc=$?
    rm -rf "$tmp"
    return "$rc"
}

# wasm-client/tests/browser.rs in headless Chromium (chromedriver; flags in webdriver.json):
# IndexedDB across re-open, one transaction per burst, the Web Lock, the codec in the page.
browser_tests() {
    CHROMEDRIVER=/usr/bin/chromedriver \
    WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/wasm-client/webdriver.json" \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$TOOLS/bin/wasm-bindgen-test-runner" \
        with_browser_tmp cargo test -p wasm-client --target wasm32-unknown-unknown --test browser
}

# Playwright (playwright-core, /usr/bin/chromium) end to end: the package built above, two
# browser profiles and a cloud-mode native host, and the inspector embedded in the binary
# (a host run alone from a temporary folder; the monitor view of a hybrid link going down
# and up) (wasm-client/e2e/); then the same package
# through the edge relay under wrangler's dev server (tests/tests/edge_browser.rs; the bundle is the
# one test-edge built, or is built here).
browser_e2e() {
    cargo build -p native-host --bin sacred-bridge
    with_browser_tmp node --test wasm-client/e2e/
    local built=0
    [[ -f edge-worker/build/worker/shim.mjs ]] && built=1
    SACRED_BRIDGE_EDGE_BUILT=$built cargo test -p tests --test edge_browser -- --ignored
}

main() {
    printf '==> setup\n'
    local setup_start=$SECONDS
    bash scripts/setup.sh
    STEP_NAMES+=("setup")
    STEP_RESULTS+=("ok")
    STEP_SECONDS+=("$((SECONDS - setup_start))")

    step fmt cargo fmt --all -- --check
    step clippy cargo clippy --workspace --all-targets -- -D warnings
    step clippy-wasm32 clippy_wasm
    step test cargo test --workspace
    step wasm-imports wasm_imports
    step test-wasm32 wasm_tests
    step test-edge edge_tests
    step build-wasm-client build_wasm_client
    step test-browser browser_tests
    step e2e-browser browser_e2e

    summary
    [[ $FAILED -eq 0 ]]
}

# One line, read whole before it runs: editing this file during a run cannot change the run.
main "$@"; exit "$?"
