#!/usr/bin/env python3
"""What a host's counts and conflict pages cost on a large space (BENCHMARKS.md, "Counts and
conflict pages at a million documents"). By hand only.

    python3 scripts/bench_counts.py make BINARY DB [N]   # N documents (default 1,000,000) into DB
    python3 scripts/bench_counts.py measure BINARY DB    # start → /healthz, then request times

`make` writes the large benchmarks' documents into space `big` through `sacred-bridge import`
(a local-mode host on DB, stopped afterwards). `measure` starts `BINARY serve --mode local` on
DB, times it to its first `/healthz`, then times 7 requests each of `/metrics`, `/v1/status`
and `/v1/spaces/big/conflicts`, and prints the medians. To compare two builds, `make` one
database, copy it, and measure each build on its own copy, alternately (a newer build
migrates the file it opens).
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    t = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as r:
        r.read()
    return time.monotonic() - t


def start(binary, db):
    port = free_port()
    log = open(db + ".bench.log", "w")
    cmd = [binary, "serve", "--mode", "local", "--ws-port", "0", "--api-port", str(port), "--db", db]
    t = time.monotonic()
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = t + 120
    while True:
        try:
            get(port, "/healthz")
            return p, port, time.monotonic() - t
        except OSError:
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                sys.exit(f"the host did not answer /healthz; see {db}.bench.log")
            time.sleep(0.002)


def stop(p):
    p.terminate()
    p.wait(timeout=60)


def make(binary, db, n):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "docs.ndjson")
        with open(path, "w") as f:
            for i in range(n):
                value = {"title": f"Item number {i}", "done": i % 2 == 0, "tags": ["a", "b"], "n": i}
                f.write(json.dumps({"collection": "items", "id": f"d{i:07}", "value": value}) + "\n")
        p, port, _ = start(binary, db)
        try:
            subprocess.run(
                [binary, "import", path, "--space", "big", "--api", f"http://127.0.0.1:{port}"],
                check=True,
            )
        finally:
            stop(p)


def measure(binary, db):
    p, port, started = start(binary, db)
    try:
        time.sleep(0.5)
        times = {
            path: [get(port, path) for _ in range(7)]
            for path in ("/metrics", "/v1/status", "/v1/spaces/big/conflicts")
        }
    finally:
        stop(p)
    parts = [f"start -> /healthz {started * 1000:.0f} ms"]
    parts += [f"{path} median {statistics.median(ts) * 1000:.1f} ms" for path, ts in times.items()]
    print(f"{os.path.basename(binary)} on {os.path.basename(db)}: " + "; ".join(parts))


def main():
    args = sys.argv[1:]
    if len(args) >= 3 and args[0] == "make":
        make(args[1], args[2], int(args[3]) if len(args) > 3 else 1_000_000)
    elif len(args) == 3 and args[0] == "measure":
        measure(args[1], args[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
