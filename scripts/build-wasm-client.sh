#!/usr/bin/env bash
# Builds the browser package into wasm-client/pkg (an npm-style package: package.json, the
# ES module glue, TypeScript typings, the .wasm) and prints its size raw and gzipped.
#
#   bash scripts/build-wasm-client.sh           # size-optimised ([profile.wasm-release])
#   bash scripts/build-wasm-client.sh --dev     # debug build, no wasm-opt (fast, for tests)
#   bash scripts/build-wasm-client.sh --check   # only: is wasm-client/dist built from these sources?
#   bash scripts/build-wasm-client.sh --names   # size-optimised, keeping function names, for
#                                               # `python3 scripts/wasm-size.py` (not copied to dist)
#
# The size-optimised build also refreshes wasm-client/dist (the .js glue and the .wasm, and
# BUILT_FROM, the fingerprint of the sources: scripts/wasm_client_stamp.py). That copy is
# committed: the native host embeds it, so the inspector works from the binary alone, and a
# plain `cargo build` needs no wasm tools. Commit wasm-client/dist after rebuilding it.
#
# Needs: the wasm32 target and wasm-bindgen-cli at Cargo.lock's version (scripts/setup.sh),
# and npm binaryen's wasm-opt (node_modules/.bin, from `npm ci`; Debian's binaryen 108
# breaks the bundle, so it is never used).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

profile=wasm-release
names=
[[ "${1:-}" == "--dev" ]] && profile=dev
[[ "${1:-}" == "--names" ]] && names=--debuginfo
if [[ "${1:-}" == "--check" ]]; then
    exec python3 scripts/wasm_client_stamp.py --check
fi
out=wasm-client/pkg

cargo build -p wasm-client --target wasm32-unknown-unknown --profile "$profile"
target_dir="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
dir="$profile"
[[ "$profile" == dev ]] && dir=debug
wasm="$target_dir/wasm32-unknown-unknown/$dir/wasm_client.wasm"

rm -rf "$out"
wasm-bindgen --target web --out-dir "$out" "$wasm"
if [[ "$profile" != dev ]]; then
    opt=node_modules/.bin/wasm-opt
    [[ -x "$opt" ]] || { echo "build-wasm-client: $opt missing; run scripts/setup.sh (npm ci)" >&2; exit 1; }
    # merge-similar-functions first: B-tree and other generic code monomorphised for many
    # types differs in constants only; --converge repeats -Oz while it still shrinks.
    "$opt" --merge-similar-functions -Oz --converge --strip-producers ${names:+"$names"} \
        --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-mutable-globals --enable-reference-types --enable-multivalue \
        "$out/wasm_client_bg.wasm" -o "$out/wasm_client_bg.wasm"
fi
cp wasm-client/js/package.json "$out/package.json"
cp wasm-client/README.md "$out/README.md"
if [[ "$profile" != dev && -z "$names" ]]; then
    dist=wasm-client/dist
    mkdir -p "$dist"
    cp "$out/wasm_client.js" "$out/wasm_client_bg.wasm" "$dist/"
    printf '%s\n' "$(python3 scripts/wasm_client_stamp.py)" >"$dist/BUILT_FROM"
fi

raw=$(wc -c <"$out/wasm_client_bg.wasm")
gz=$(gzip -9 -c "$out/wasm_client_bg.wasm" | wc -c)
js_gz=$(gzip -9 -c "$out/wasm_client.js" | wc -c)
printf 'build-wasm-client: %s (%s)\n' "$out" "$profile"
awk -v r="$raw" -v g="$gz" 'BEGIN { printf "  wasm_client_bg.wasm  %7d bytes raw  %7d bytes gzip (%.1f KB)\n", r, g, g / 1024 }'
printf '  wasm_client.js       %7d bytes gzip\n' "$js_gz"
