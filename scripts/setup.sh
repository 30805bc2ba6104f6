#!/usr/bin/env bash
# Installs what building and testing Sacred Bridge needs, on a fresh machine or a warm one.
#
# Idempotent: every item is checked first and skipped when already present at the right
# version, so a warm run takes a second or two. Tools go under $SACRED_BRIDGE_TOOLS
# (default ~/.cache/sacred-bridge/tools), never into the repository.
#
#   bash scripts/setup.sh            # what scripts/test.sh runs first
#
# Prints one line per item: what it found, what it did.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# ---- Rust toolchain: wasm32 target, rustfmt, clippy --------------------------------------
command -v cargo >/dev/null || die "cargo not found: this machine needs a Rust toolchain (rustup)"
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "rust target wasm32-unknown-unknown: present"
else
    say "rust target wasm32-unknown-unknown: installing"
    rustup target add wasm32-unknown-unknown
fi
for component in rustfmt clippy; do
    if rustup component list --installed | grep -q "^${component}"; then
        say "rust component $component: present"
    else
        say "rust component $component: installing"
        rustup component add "$component"
    fi
done

# ---- wasm-bindgen-cli, at exactly the wasm-bindgen version in Cargo.lock -----------------
# The CLI (and its wasm-bindgen-test-runner) must match the library version byte for byte.
# Cargo.lock is the source of truth; the fallback is the version the workspace pins.
WASM_BINDGEN_FALLBACK=0.2.130
wasm_bindgen_version() {
    if [[ -f Cargo.lock ]]; then
        awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/^version = "|"$/, ""); print; exit }' \
            Cargo.lock
    fi
}
WB_VERSION="$(wasm_bindgen_version)"
WB_VERSION="${WB_VERSION:-$WASM_BINDGEN_FALLBACK}"
installed_wb=""
if [[ -x "$TOOLS/bin/wasm-bindgen" && -x "$TOOLS/bin/wasm-bindgen-test-runner" ]]; then
    installed_wb="$("$TOOLS/bin/wasm-bindgen" --version 2>/dev/null | awk '{ print $2 }')" || true
fi
if [[ "$installed_wb" == "$WB_VERSION" ]]; then
    say "wasm-bindgen-cli $WB_VERSION: present in $TOOLS/bin"
else
    say "wasm-bindgen-cli $WB_VERSION: installing into $TOOLS (found: ${installed_wb:-none}; about 3-5 min)"
    # Not --locked: the CLI's own lockfile names a crate version the registry no longer has.
    # The profile overrides trade a little runtime speed for a much shorter build.
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
        cargo install wasm-bindgen-cli --version "$WB_VERSION" --root "$TOOLS" --force
    got="$("$TOOLS/bin/wasm-bindgen" --version | awk '{ print $2 }')"
    [[ "$got" == "$WB_VERSION" ]] || die "installed wasm-bindgen reports $got, wanted $WB_VERSION"
    say "wasm-bindgen-cli $WB_VERSION: installed"
fi

# ---- Node.js: runs the wasm32 tests (wasm-bindgen-test-runner) ----------------------------
# The machine image ships Node 20, which is all the test runner needs.
command -v node >/dev/null || die "node not found: wasm-bindgen-test-runner needs Node.js"
say "node $(node --version): present"

# ---- python3: scripts/wasm_imports.py (standard library only) ----------------------------
command -v python3 >/dev/null || die "python3 not found: scripts/wasm_imports.py needs it"
say "python3 $(python3 -c 'import platform; print(platform.python_version())'): present"

# ---- Later additions (not installed yet; each follows the same check-then-install shape) --
# - Node 22, wrangler, binaryen (wasm-opt), worker-build: the edge worker section below.
# - Chromium for browser tests: `apt-get update && apt-get install -y chromium chromium-driver`,
#   skipped when /usr/bin/chromium and /usr/bin/chromedriver exist.

# ==== edge worker (issue 4): Node 22, wrangler + binaryen from npm, worker-build ============
# Paths and the offline variables are in scripts/edge-env.sh (also sourced by test.sh and by
# wrangler's build command). Each item is checked first and skipped when already right.
source scripts/edge-env.sh

# Node 22 from the npm registry (wrangler 4.16x needs Node >= 22.12; the image has Node 20).
node22_version=""
[[ -x "$EDGE_NODE22" ]] && node22_version="$("$EDGE_NODE22" --version 2>/dev/null)" || true
if [[ "$node22_version" == v22.* ]]; then
    say "node $node22_version (for wrangler): present in $EDGE_NODE22_DIR"
else
    say "node 22 (for wrangler): installing $EDGE_NODE_PKG@22 into $EDGE_NODE22_DIR"
    command -v npm >/dev/null || die "npm not found: it installs Node 22 and wrangler"
    npm install --prefix "$EDGE_NODE22_DIR" --no-audit --no-fund "$EDGE_NODE_PKG@22"
    node22_version="$("$EDGE_NODE22" --version)"
    [[ "$node22_version" == v22.* ]] || die "installed node reports $node22_version, wanted v22"
    say "node $node22_version: installed"
fi

# npm tools pinned by package.json / package-lock.json: `npm ci` when node_modules is missing
# or was installed from another lockfile (the lockfile's hash is kept in node_modules).
lock_hash="$(sha256sum package-lock.json | awk '{ print $1 }')"
stamp=node_modules/.sacred-bridge-lock.sha256
if [[ -f "$stamp" && "$(cat "$stamp")" == "$lock_hash" && -x node_modules/.bin/wrangler \
      && -x node_modules/.bin/wasm-opt ]]; then
    say "npm packages (wrangler, binaryen): present, match package-lock.json"
else
    say "npm packages (wrangler, binaryen): npm ci (node_modules missing or stale)"
    npm ci --no-audit --no-fund
    printf '%s\n' "$lock_hash" >"$stamp"
    say "npm packages: installed (wrangler $(node_modules/.bin/wrangler --version 2>/dev/null | tail -n 1))"
fi

# worker-build (wraps wasm-bindgen + esbuild + wasm-opt for the Worker), at exactly this version.
installed_wbuild=""
if [[ -x "$EDGE_TOOLS/bin/worker-build" ]]; then
    installed_wbuild="$("$EDGE_TOOLS/bin/worker-build" --version 2>/dev/null | awk '{ print $NF }')" || true
fi
if [[ "$installed_wbuild" == "$WORKER_BUILD_VERSION" ]]; then
    say "worker-build $WORKER_BUILD_VERSION: present in $EDGE_TOOLS/bin"
else
    say "worker-build $WORKER_BUILD_VERSION: installing into $EDGE_TOOLS (found: ${installed_wbuild:-none}; about 5-8 min)"
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
        cargo install --locked "worker-build@$WORKER_BUILD_VERSION" --root "$EDGE_TOOLS" --force
    say "worker-build $WORKER_BUILD_VERSION: installed"
fi
# ==== end of the edge worker section ======================================================

# ==== browser (issue 5): Chromium + chromedriver from apt, playwright-core from npm ========
# wasm-bindgen-test runs in headless Chromium through chromedriver; the Playwright tests drive
# the same /usr/bin/chromium (playwright-core never downloads a browser). Never Debian's
# binaryen: its wasm-opt 108 breaks the bundle (npm binaryen above is used instead).
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    say "chromium + chromedriver: present ($(/usr/bin/chromium --version 2>/dev/null | head -n 1 | awk '{ print $2 }'))"
else
    say "chromium + chromedriver: installing from apt (about 40 s)"
    command -v apt-get >/dev/null || die "apt-get not found: install chromium and chromedriver by hand"
    sudo_cmd=()
    [[ "$(id -u)" -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium chromium-driver
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] || die "chromium / chromedriver missing after apt-get install"
    say "chromium + chromedriver: installed"
fi
# playwright-core is pinned in package.json; `npm ci` above installs it with the other tools.
if [[ -f node_modules/playwright-core/package.json ]]; then
    say "playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version'): present"
else
    say "playwright-core: npm ci (missing from node_modules)"
    npm ci --no-audit --no-fund
fi
# ==== end of the browser section ==========================================================

# ==== MCP (issue 11): the official MCP SDKs the tests drive `sacred-bridge mcp` with =========
# Python: `mcp` at exactly MCP_PY_VERSION in a venv under the tool cache (tests/tests/mcp.rs
# runs tests/mcp/client.py with it). TypeScript: @modelcontextprotocol/sdk, pinned in
# package.json and installed by `npm ci` above (tests/mcp/client.mjs).
MCP_PY_VERSION=2.3.0
MCP_VENV="${SACRED_BRIDGE_MCP_VENV:-$HOME/.cache/sacred-bridge/mcp-venv}"
installed_mcp=""
if [[ -x "$MCP_VENV/bin/python" ]]; then
    installed_mcp="$("$MCP_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null)" || true
fi
if [[ "$installed_mcp" == "$MCP_PY_VERSION" ]]; then
    say "python mcp $MCP_PY_VERSION: present in $MCP_VENV"
else
    say "python mcp $MCP_PY_VERSION: installing into $MCP_VENV (found: ${installed_mcp:-none})"
    python3 -m venv "$MCP_VENV" || die "python3 -m venv failed: install python3-venv"
    "$MCP_VENV/bin/pip" install --quiet --disable-pip-version-check "mcp==$MCP_PY_VERSION"
    say "python mcp $MCP_PY_VERSION: installed"
fi
if [[ -f node_modules/@modelcontextprotocol/sdk/package.json ]]; then
    say "@modelcontextprotocol/sdk $(node -p 'require("./node_modules/@modelcontextprotocol/sdk/package.json").version'): present"
else
    say "@modelcontextprotocol/sdk: npm ci (missing from node_modules)"
    npm ci --no-audit --no-fund
fi
# ==== end of the MCP section ==============================================================

say "done"
