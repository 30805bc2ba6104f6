#!/usr/bin/env python3
"""Check a WebAssembly module's imports (no dependencies beyond the standard library).

    python3 scripts/wasm_imports.py MODULE.wasm [--forbid env] [--min-code-bytes N]

Prints the imports grouped by module, the exports, and the size of the code section. Fails
(exit 1) when any import comes from a forbidden module (default: `env`, which is where
wasm32-unknown-unknown puts every unresolved extern symbol, e.g. a C dependency or a libc call)
or when the code section is smaller than --min-code-bytes (a probe the optimiser reduced to
nothing proves nothing). Exit 2 means the file is not a module this script can read.
"""

import argparse
import sys
from collections import OrderedDict

SECTION_NAMES = {
    0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory",
    6: "global", 7: "export", 8: "start", 9: "element", 10: "code", 11: "data",
    12: "datacount", 13: "tag",
}
IMPORT_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}


class Malformed(Exception):
    pass


class Reader:
    def __init__(self, data, pos=0, end=None):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def byte(self):
        if self.pos >= self.end:
            raise Malformed(f"unexpected end at offset {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def leb(self, signed=False, max_bits=64):
        result, shift = 0, 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if signed and b & 0x40:
                    result -= 1 << shift
                return result
            if shift > max_bits + 7:
                raise Malformed(f"LEB128 too long at offset {self.pos}")

    def bytes(self, n):
        if self.pos + n > self.end:
            raise Malformed(f"{n} bytes past the end at offset {self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def name(self):
        raw = self.bytes(self.leb())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Malformed(f"name is not UTF-8: {e}") from e

    def limits(self):
        flags = self.leb()
        self.leb()  # minimum
        if flags & 0x01:
            self.leb()  # maximum
        if flags & 0x08:
            self.leb()  # custom page size (log2), a newer proposal

    def reftype(self):
        t = self.byte()
        if t in (0x63, 0x64):  # (ref null? heaptype) from the typed-references proposals
            self.leb(signed=True, max_bits=33)


def parse(data):
    if len(data) < 8 or data[:4] != b"\0asm":
        raise Malformed("not a WebAssembly module (bad magic)")
    if data[4:8] != b"\x01\0\0\0":
        raise Malformed("not a core WebAssembly module of version 1 (a component?)")
    r = Reader(data, 8)
    imports, exports, sizes = [], [], OrderedDict()
    while r.pos < r.end:
        sid = r.byte()
        size = r.leb()
        start = r.pos
        if start + size > r.end:
            raise Malformed(f"section {sid} runs past the end of the file")
        name = SECTION_NAMES.get(sid, f"unknown({sid})")
        sizes[name] = sizes.get(name, 0) + size
        s = Reader(data, start, start + size)
        if sid == 2:
            for _ in range(s.leb()):
                module, field = s.name(), s.name()
                kind = s.byte()
                if kind == 0:
                    s.leb()
                elif kind == 1:
                    s.reftype()
                    s.limits()
                elif kind == 2:
                    s.limits()
                elif kind == 3:
                    s.reftype()  # a value type; reftype() also reads the typed-reference forms
                    s.byte()  # mutability
                elif kind == 4:
                    s.byte()
                    s.leb()
                else:
                    raise Malformed(f"unknown import kind {kind} for {module}.{field}")
                imports.append((module, field, IMPORT_KINDS.get(kind, str(kind))))
        elif sid == 7:
            for _ in range(s.leb()):
                field = s.name()
                kind = s.byte()
                s.leb()
                exports.append((field, IMPORT_KINDS.get(kind, str(kind))))
        r.pos = start + size
    return imports, exports, sizes


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("module")
    ap.add_argument("--forbid", action="append", default=None,
                    help="import module name that must not appear (repeatable; default: env)")
    ap.add_argument("--min-code-bytes", type=int, default=0)
    args = ap.parse_args(argv)
    forbidden = args.forbid or ["env"]

    try:
        with open(args.module, "rb") as f:
            data = f.read()
        imports, exports, sizes = parse(data)
    except (OSError, Malformed) as e:
        print(f"wasm_imports: {args.module}: {e}", file=sys.stderr)
        return 2

    by_module = OrderedDict()
    for module, field, kind in imports:
        by_module.setdefault(module, []).append(f"{field} ({kind})")
    code = sizes.get("code", 0)
    print(f"{args.module}: {len(data)} bytes, code section {code} bytes, "
          f"{len(imports)} imports, {len(exports)} exports")
    for module, fields in by_module.items():
        listed = ", ".join(fields[:8]) + (f", ... and {len(fields) - 8} more" if len(fields) > 8 else "")
        print(f"  import module {module!r} ({len(fields)}): {listed}")
    if not imports:
        print("  no imports")
    names = [f for f, _ in exports]
    shown = ", ".join(names[:12]) + (f", ... and {len(names) - 12} more" if len(names) > 12 else "")
    print(f"  exports: {shown or '(none)'}")

    failed = False
    for module in forbidden:
        if module in by_module:
            print(f"FAIL: imports from forbidden module {module!r}: "
                  f"{', '.join(by_module[module])}", file=sys.stderr)
            failed = True
    if code < args.min_code_bytes:
        print(f"FAIL: code section is {code} bytes, expected at least {args.min_code_bytes} "
              f"(did the optimiser drop the code under test?)", file=sys.stderr)
        failed = True
    if not failed:
        print(f"OK: no imports from {', '.join(repr(m) for m in forbidden)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
