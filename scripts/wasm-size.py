#!/usr/bin/env python3
"""What each part of the browser package's .wasm costs: code bytes by crate and module.

    bash scripts/build-wasm-client.sh --names      # the same build, function names kept
    python3 scripts/wasm-size.py wasm-client/pkg/wasm_client_bg.wasm [PART]

Reads the function bodies and the `name` section (no tools needed) and sums each function's
size (bytes of its body in the code section) under one part: a crate, a module of the
project's crates, or a kind of code spread over crates (B-tree code monomorphised for each
key/value type, formatting and panics, the JavaScript bindings). Data segments (strings,
tables) are one row. Names are what the linker wrote, so generic code inlined into a caller
counts for the caller. With PART, lists that part's largest functions.

Sizes are raw bytes; gzip shrinks each part by a different ratio, so the table says where the
bytes are, and scripts/build-wasm-client.sh (without --names) gives the gzip figure.
"""

import collections
import re
import sys


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def parse(path):
    """(function index, body size) for each defined function, index → name, data bytes."""
    b = open(path, "rb").read()
    if b[:4] != b"\0asm":
        sys.exit(f"{path}: not a wasm module")
    i, imports, bodies, names, data = 8, 0, [], {}, 0
    while i < len(b):
        sid = b[i]
        n, i = leb(b, i + 1)
        end = i + n
        if sid == 0:
            ln, j = leb(b, i)
            if b[j : j + ln] == b"name":
                j += ln
                while j < end:
                    sub = b[j]
                    sl, j = leb(b, j + 1)
                    if sub == 1:
                        cnt, k = leb(b, j)
                        for _ in range(cnt):
                            idx, k = leb(b, k)
                            nl, k = leb(b, k)
                            names[idx] = b[k : k + nl].decode("utf-8", "replace")
                            k += nl
                    j += sl
        elif sid == 2:  # imports: functions come first in the index space
            cnt, j = leb(b, i)
            for _ in range(cnt):
                for _ in range(2):
                    ln, j = leb(b, j)
                    j += ln
                kind = b[j]
                j += 1
                if kind == 0:
                    _, j = leb(b, j)
                    imports += 1
                elif kind in (1, 2):
                    j += kind == 1
                    flags, j = leb(b, j)
                    _, j = leb(b, j)
                    if flags & 1:
                        _, j = leb(b, j)
                elif kind == 3:
                    j += 2
                else:
                    sys.exit(f"{path}: unknown import kind {kind}")
        elif sid == 10:
            cnt, j = leb(b, i)
            for k in range(cnt):
                size, body = leb(b, j)
                bodies.append((imports + k, size + body - j))
                j = body + size
        elif sid == 11:
            data = n
        i = end
    return bodies, names, data


RULES = [
    (r"collections::btree", "B-tree code (BTreeMap/BTreeSet, per key/value type)"),
    (r"\bserde_json::|\bzmij::", "serde_json"),
    (r"\b(sha2|hmac|digest|block_buffer)::", "HMAC-SHA256 (token verification)"),
    (r"\b(wasm_bindgen|js_sys|web_sys|wasm_bindgen_futures)::|^__wbg|^__wbindgen|^__externref"
     r"| shim$", "JavaScript bindings (wasm-bindgen, js-sys, web-sys, export shims)"),
    (r"\bidb::", "idb (IndexedDB wrapper)"),
    (r"\bdlmalloc|^__rdl_|^__rust_(alloc|dealloc|realloc)", "allocator (dlmalloc)"),
    (r"slice::sort", "slice sorting (per element type)"),
    (r"core::fmt|::fmt::|Display>::fmt|Debug>::fmt|escape_debug|panick|panic_|flt2dec|"
     r"fmt::num", "formatting and panics (core::fmt)"),
]


def part(name):
    name = re.sub(r"\[[0-9a-f]{16}\]", "", name)
    for pattern, label in RULES:
        if re.search(pattern, name):
            return label
    m = re.search(r"\b(bridge_core|wasm_client)::([a-z_]+)", name)
    if m:
        return f"{m.group(1)}::{m.group(2)}"
    if re.search(r"\bserde(_core)?::", name):
        return "serde (other)"
    if re.search(r"\b(futures_\w+|tokio|slab)::", name):
        return "futures / tokio (idb's channels)"
    return "std, core, alloc (other)"


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    bodies, names, data = parse(sys.argv[1])
    if not names:
        sys.exit(f"{sys.argv[1]}: no function names; build with --names")
    size, count, members = collections.Counter(), collections.Counter(), {}
    for idx, n in bodies:
        p = part(names.get(idx, "?"))
        size[p] += n
        count[p] += 1
        members.setdefault(p, []).append((n, names.get(idx, "?")))
    total = sum(size.values()) + data
    if len(sys.argv) == 3:
        for n, name in sorted(members.get(sys.argv[2], []), reverse=True)[:60]:
            print(f"{n:7d}  {name[:160]}")
        return
    print(f"{'bytes':>7} {'share':>6} {'funcs':>5}  part")
    for p, n in size.most_common():
        print(f"{n:7d} {100 * n / total:5.1f}% {count[p]:5d}  {p}")
    print(f"{data:7d} {100 * data / total:5.1f}% {'':5}  data segments (strings, tables)")
    print(f"{total:7d} 100.0% {len(bodies):5d}  code and data")


if __name__ == "__main__":
    main()
