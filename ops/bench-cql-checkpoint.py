#!/usr/bin/env python3
"""How long one periodic checkpoint takes on the CQL store (issue #6).

Starts `omnistream run` (release) on a fresh keyspace of a running CQL node with
`checkpoint-every-events` just under EVENTS, posts the first EVENTS events of FILE in requests
of 5,000, then times from the last answer until /v1/stats counts the checkpoint as written.
With several binaries (BIN=path[,path...]) they alternate ROUNDS times, so a noisy machine
hurts them alike.

    CQL=127.0.0.1:9042 [BIN=a,b] [ROUNDS=2] python3 ops/bench-cql-checkpoint.py FILE [EVENTS]

Needs the release binary (cargo build --release -p omnistream) and a node (ops/cassandra/).
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

BATCH = 5000


def call(addr, method, path, body=None):
    req = urllib.request.Request(f"http://{addr}{path}", data=body, method=method)
    req.add_header("Content-Type", "application/x-ndjson")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


def one(binary, cql, lines, events, tag):
    keyspace = f"bench_ckpt_{tag}_{os.getpid()}"
    env = dict(os.environ)
    env.update({
        "OMNISTREAM_STORE": "cql",
        "OMNISTREAM_CQL__CONTACT_POINTS": json.dumps([cql]),
        "OMNISTREAM_CQL__KEYSPACE": keyspace,
        "OMNISTREAM_CQL__READ_CONSISTENCY": "ONE",
        "OMNISTREAM_CQL__WRITE_CONSISTENCY": "ONE",
        "OMNISTREAM_CHECKPOINT_EVERY_EVENTS": str(events - BATCH),
        "OMNISTREAM_LOG": "error",
    })
    subprocess.run([binary, "migrate"], env=env, check=True, capture_output=True)
    p = subprocess.Popen([binary, "run", "--listen", "127.0.0.1:0"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        addr = p.stdout.readline().strip().rsplit("//", 1)[1]
        t0 = time.monotonic()
        for i in range(0, events, BATCH):
            call(addr, "POST", "/v1/events", b"\n".join(lines[i:i + BATCH]))
        posted = time.monotonic()
        last_ts = json.loads(lines[events - 1])["ts"]
        n = 0
        while True:
            st = call(addr, "GET", "/v1/stats")["shard"]
            if st["checkpoints"] >= 1:
                break
            if time.monotonic() - posted > 300:
                raise SystemExit("no checkpoint within 300 s")
            # a trickle of traffic, one new click every 50 ms, as a live feed has: builds
            # before the shard polled its checkpoint writer took a finished one in only
            # with a commit
            n += 1
            click = {"id": f"00000000-0000-7000-8000-{n:012d}", "type": "click",
                     "ts": last_ts, "channel": "mall", "member": {"openid": "bench-trickle"},
                     "target": "home"}
            call(addr, "POST", "/v1/events", json.dumps(click).encode())
            time.sleep(0.05)
        done = time.monotonic()
        return posted - t0, done - posted, st["checkpoint_seconds"]
    finally:
        p.terminate()
        p.wait(timeout=120)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    path = sys.argv[1]
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    cql = os.environ.get("CQL", "127.0.0.1:9042")
    bins = os.environ.get("BIN", "target/release/omnistream").split(",")
    rounds = int(os.environ.get("ROUNDS", "2"))
    lines = []
    with open(path, "rb") as f:
        for line in f:
            lines.append(line.rstrip(b"\n"))
            if len(lines) == events:
                break
    for r in range(rounds):
        for k, b in enumerate(bins):
            load = open("/proc/loadavg").read().split()[0]
            post, ckpt, take = one(b, cql, lines, events, f"{r}_{k}")
            print(f"round {r + 1} {b}: posted {events} events in {post:.1f} s; checkpoint "
                  f"written {ckpt:.1f} s after the last answer (taken in {take:.2f} s); "
                  f"load {load}", flush=True)


if __name__ == "__main__":
    main()
