#!/usr/bin/env python3
"""Post a JSON-lines file to a running `omnistream run`, in order, BATCH lines a request, on
CONNECTIONS keep-alive connections, and print one line of key=value: the events the service
answered as accepted/duplicate/rejected and the wall time from the first request to the last
answer. Every answer the service gives comes after the group commit (the events are durable).
A 429 or 503 is retried after a tenth of its Retry-After (counted as retries). Standard library only."""
import http.client
import json
import sys
import threading
import time


def chunks(path, batch):
    with open(path, "rb") as f:
        buf = []
        for line in f:
            if line.strip():
                buf.append(line)
                if len(buf) == batch:
                    yield b"".join(buf), len(buf)
                    buf = []
        if buf:
            yield b"".join(buf), len(buf)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: post.py FILE HOST:PORT [BATCH=1000] [CONNECTIONS=4] [DEADLINE_S=600]")
    path, addr = sys.argv[1], sys.argv[2]
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    conns = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    deadline = time.monotonic() + (float(sys.argv[5]) if len(sys.argv) > 5 else 600)
    host, port = addr.rsplit(":", 1)
    # read the file before the clock starts, as Flink's source reads it while timed: the
    # service's own decode is inside the timing, only the driver's file reading is not
    bodies = list(chunks(path, batch))
    lock = threading.Lock()
    nxt = [0]
    totals = {"events": 0, "accepted": 0, "duplicates": 0, "rejected": 0, "retries": 0, "errors": 0}

    def worker():
        c = http.client.HTTPConnection(host, int(port), timeout=120)
        while time.monotonic() < deadline:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(bodies):
                break
            body, n = bodies[i]
            while time.monotonic() < deadline:
                c.request("POST", "/v1/events", body, {"Content-Type": "application/x-ndjson"})
                r = c.getresponse()
                data = r.read()
                if r.status in (429, 503):
                    with lock:
                        totals["retries"] += 1
                    time.sleep(float(r.getheader("Retry-After", "1")) / 10)
                    continue
                with lock:
                    totals["events"] += n
                    if r.status == 200:
                        a = json.loads(data)
                        for k in ("accepted", "duplicates", "rejected"):
                            totals[k] += a.get(k, 0)
                    else:
                        totals["errors"] += 1
                break
        c.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = time.monotonic() - t0
    done = nxt[0] >= len(bodies)
    print("omnistream_http batch=%d connections=%d seconds=%.3f events_per_s=%.0f complete=%s %s"
          % (batch, conns, secs, totals["events"] / secs, done,
             " ".join("%s=%d" % kv for kv in totals.items())))


if __name__ == "__main__":
    main()
