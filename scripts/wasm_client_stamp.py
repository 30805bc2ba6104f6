#!/usr/bin/env python3
"""Fingerprint of everything the browser package is built from.

The native host embeds the committed build in wasm-client/dist/ (see ARCHITECTURE.md,
"The web inspector"). scripts/build-wasm-client.sh writes this fingerprint to
wasm-client/dist/BUILT_FROM next to the build; `--check` (run by scripts/test.sh) fails when
the committed copy was built from other sources than the working tree's.

The inputs: the sources and manifests of bridge-core and wasm-client, the resolved
dependency graph of wasm-client for wasm32 (names and versions, without local paths, so the
same sources give the same fingerprint on any machine), the [profile.wasm-release] section
of Cargo.toml, the build script, and the pinned binaryen (wasm-opt). Not the compiler
version: a newer rustc that builds the same sources differently does not make the committed
package wrong.

    python3 scripts/wasm_client_stamp.py           # print the fingerprint
    python3 scripts/wasm_client_stamp.py --check   # compare with wasm-client/dist/BUILT_FROM
"""
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = ROOT / "wasm-client" / "dist" / "BUILT_FROM"
SOURCE_DIRS = ["bridge-core/src", "wasm-client/src"]
SOURCE_FILES = [
    "bridge-core/Cargo.toml",
    "wasm-client/Cargo.toml",
    "scripts/build-wasm-client.sh",
]


def dependency_graph() -> str:
    run = subprocess.run(
        ["cargo", "tree", "-p", "wasm-client", "--target", "wasm32-unknown-unknown",
         "--edges", "normal,build", "--prefix", "none", "--format", "{p}", "--locked"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if run.returncode != 0:
        sys.exit(f"wasm_client_stamp: `cargo tree` failed:\n{run.stderr}")
    out = run.stdout
    lines = set()
    for line in out.splitlines():
        line = re.sub(r" \((/|\*|proc-macro).*$", "", line.strip())
        line = line.replace(" (*)", "")
        if line:
            lines.add(line)
    return "\n".join(sorted(lines))


def wasm_release_profile() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    m = re.search(r"^\[profile\.wasm-release\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
    if not m:
        sys.exit("wasm_client_stamp: Cargo.toml has no [profile.wasm-release]")
    return "\n".join(l for l in m.group(1).splitlines() if l and not l.startswith("#"))


def binaryen() -> str:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    return lock.get("packages", {}).get("node_modules/binaryen", {}).get("version", "?")


def fingerprint() -> str:
    h = hashlib.sha256()
    files = list(SOURCE_FILES)
    for d in SOURCE_DIRS:
        files += sorted(str(p.relative_to(ROOT)) for p in (ROOT / d).rglob("*") if p.is_file())
    for f in files:
        h.update(f.encode() + b"\0" + (ROOT / f).read_bytes() + b"\0")
    for part in (dependency_graph(), wasm_release_profile(), binaryen()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def main() -> None:
    fp = fingerprint()
    if "--check" not in sys.argv[1:]:
        print(fp)
        return
    committed = STAMP.read_text().split()[0] if STAMP.exists() else "(missing)"
    if committed != fp:
        sys.exit(
            "wasm-client/dist is stale: it was built from other sources than these "
            f"(committed {committed[:12]}, sources {fp[:12]}). The host embeds that copy: "
            "run `bash scripts/build-wasm-client.sh` and commit wasm-client/dist."
        )
    print(f"wasm-client/dist matches the sources ({fp[:12]})")


if __name__ == "__main__":
    main()
