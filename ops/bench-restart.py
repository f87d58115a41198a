"""Restart time of `omnistream run`, with and without checkpoints (BENCHMARKS.md).

    python3 ops/bench-restart.py EVENTS.jsonl [N] [BINARY]

Posts the first N events (default 300,000) of a generated stream in requests of 5,000 to a
fresh service on 127.0.0.1 (data in a temporary directory), kills it with SIGKILL, starts it
again and reads /v1/stats (what was restored and replayed, how long); then SIGTERM and a
third start. Once with checkpoints only at shutdown, once every 100,000 events.
Every service it starts is stopped before it returns.

    RESTART_CQL=127.0.0.1:9042 python3 ops/bench-restart.py ...

stores to that CQL node instead (consistency ONE), in a fresh keyspace per variant that it
migrates first and drops at the end.
"""
import json, os, signal, subprocess, sys, tempfile, time, urllib.request, shutil
EVENTS = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 300000
BIN = sys.argv[3] if len(sys.argv) > 3 else "target/release/omnistream"
lines = []
with open(EVENTS, "rb") as f:
    for i, l in enumerate(f):
        if i >= N: break
        lines.append(l)
CQL = os.environ.get("RESTART_CQL")
def cql_env(ks):
    if not CQL: return {}
    return {"OMNISTREAM_STORE": "cql", "OMNISTREAM_CQL__CONTACT_POINTS": json.dumps([CQL]),
            "OMNISTREAM_CQL__KEYSPACE": ks, "OMNISTREAM_CQL__READ_CONSISTENCY": "ONE",
            "OMNISTREAM_CQL__WRITE_CONSISTENCY": "ONE"}
def start(d, env):
    e = dict(os.environ, OMNISTREAM_LOG="warn", **env)
    p = subprocess.Popen([BIN, "run", "--listen", "127.0.0.1:0", "--data-dir", d], stdout=subprocess.PIPE, env=e)
    t0 = time.time()
    addr = p.stdout.readline().decode().strip().rsplit("http://", 1)[1]
    return p, addr, time.time() - t0
def post(addr, body):
    r = urllib.request.Request(f"http://{addr}/v1/events", data=body, method="POST")
    with urllib.request.urlopen(r, timeout=120) as resp:
        assert resp.status == 200
def stats(addr):
    with urllib.request.urlopen(f"http://{addr}/v1/stats", timeout=60) as r:
        return json.load(r)["shard"]
for name, env in [("checkpoint only at shutdown", {"OMNISTREAM_CHECKPOINT_EVERY_EVENTS": "0"}),
                  ("checkpoint every 100000", {"OMNISTREAM_CHECKPOINT_EVERY_EVENTS": "100000"})]:
    d = tempfile.mkdtemp(prefix="omnistream-restart-")
    ks = f"restart_{os.getpid()}_{len(env['OMNISTREAM_CHECKPOINT_EVERY_EVENTS'])}"
    env = dict(env, **cql_env(ks))
    if CQL:
        subprocess.check_call([BIN, "migrate"], env=dict(os.environ, **env), stdout=subprocess.DEVNULL)
    p, addr, _ = start(d, env)
    t0 = time.time()
    for i in range(0, len(lines), 5000):
        post(addr, b"".join(lines[i:i+5000]))
    fill = time.time() - t0
    p.send_signal(signal.SIGKILL); p.wait()
    p, addr, up = start(d, env)
    s = stats(addr)
    print(f"{name}: {N} events posted in {fill:.1f} s; after SIGKILL: listening after {up:.2f} s, "
          f"restored_from {s['restored_from']}, replayed {s['replayed']} in {s['replay_seconds']:.2f} s, rss {int(open(f'/proc/{p.pid}/status').read().split('VmRSS:')[1].split()[0])//1024} MiB")
    p.send_signal(signal.SIGTERM); p.wait()
    t0 = time.time()
    p, addr, up = start(d, env)
    s = stats(addr)
    print(f"  after SIGTERM: listening after {up:.2f} s, restored_from {s['restored_from']}, replayed {s['replayed']} in {s['replay_seconds']:.2f} s")
    p.send_signal(signal.SIGTERM); p.wait()
    if not CQL:
        print(f"  store {subprocess.check_output(['du','-sh',d]).decode().split()[0]}")
    shutil.rmtree(d, ignore_errors=True)
