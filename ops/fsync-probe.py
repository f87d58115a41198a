#!/usr/bin/env python3
"""What a durable write costs on the disk under DIR (default: the current directory).

Two write patterns, each followed by fdatasync, N times, alternated twice:
  - one sequential append of 2 KB (what a write-ahead log would do per commit);
  - a 320-byte header at offset 0 and five 4 KB pages at random offsets (what a redb commit
    of one small batch writes: its header and the changed pages of four tables, as seen
    with strace on the service).
The file is preallocated (written, not sparse) so a sync carries no block allocation.
Usage: ops/fsync-probe.py [DIR] [N]
"""
import os
import random
import sys
import time

directory = sys.argv[1] if len(sys.argv) > 1 else "."
n = int(sys.argv[2]) if len(sys.argv) > 2 else 400
path = os.path.join(directory, "fsync-probe.tmp")
fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
try:
    size = 64 << 20
    chunk = b"\0" * (1 << 20)
    for off in range(0, size, len(chunk)):
        os.pwrite(fd, chunk, off)
    os.fsync(fd)
    page = b"p" * 4096
    rng = random.Random(7)

    def append(base):
        return lambda i: os.pwrite(fd, b"a" * 2048, base + i * 2048)

    def scattered(_i):
        os.pwrite(fd, b"h" * 320, 0)
        for _ in range(5):
            os.pwrite(fd, page, rng.randrange(1, size // 4096) * 4096)

    def run(name, write):
        ts = []
        for i in range(n):
            t = time.perf_counter()
            write(i)
            os.fdatasync(fd)
            ts.append(time.perf_counter() - t)
        ts.sort()
        q = lambda p: ts[min(n - 1, int(n * p))] * 1e3
        print(f"{name:34} p50 {q(0.5):.3f}  p90 {q(0.9):.3f}  p99 {q(0.99):.3f} ms")

    for r in range(2):
        run("append 2 KB + fdatasync", append((16 << 20) + r * (8 << 20)))
        run("header + 5 random pages + fdatasync", scattered)
finally:
    os.close(fd)
    os.unlink(path)
