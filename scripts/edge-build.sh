#!/usr/bin/env bash
# Builds the edge worker (edge-worker/build/: worker/shim.mjs, index.js, index_bg.wasm) with
# worker-build, offline: wasm-bindgen, wasm-opt and esbuild come from scripts/setup.sh's
# installs, never from a download. wrangler.toml's [build] command runs this; so do the tests.
#
#   bash scripts/edge-build.sh           # release build (what `wrangler deploy` ships)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/edge-env.sh

missing=()
for bin in "$EDGE_TOOLS/bin/worker-build" "$WASM_BINDGEN_BIN" "$WASM_OPT_BIN" "$ESBUILD_BIN"; do
    [[ -x "$bin" ]] || missing+=("$bin")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    printf 'edge-build: missing %s\nedge-build: run `bash scripts/setup.sh` first\n' "${missing[*]}" >&2
    exit 1
fi
exec "$EDGE_TOOLS/bin/worker-build" --profile wasm-release edge-worker
