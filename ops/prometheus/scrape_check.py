#!/usr/bin/env python3
"""A real Prometheus scrapes a real omnistream: start the service on a free loopback port
with a temp data dir, post a few events and examples/sample.jsonl, check its /metrics with
`promtool check metrics` (names, units, suffixes: a name Prometheus' conventions refuse fails
here), start Prometheus (Debian package) scraping it with the alert rules of this folder, and
wait until Prometheus reports the service's counters.

usage: scrape_check.py PATH/TO/omnistream      (exit 0 on success; both servers are stopped)
"""
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def main():
    binary = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    work = tempfile.mkdtemp(prefix="omnistream-scrape-")
    procs = []
    try:
        svc = subprocess.Popen([binary, "run", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "data")],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(svc)
        addr = svc.stdout.readline().strip().rsplit("http://", 1)[1]
        events = [
            {"id": "00000000-0000-7000-8000-0000000000%02d" % i, "type": "stock", "ts": "2026-11-11T10:00:00+08:00",
             "sku": "S%d" % i, "location": "wh", "op": "receive", "qty": 5}
            for i in range(3)
        ]
        req = urllib.request.Request("http://%s/v1/events" % addr, data="\n".join(json.dumps(e) for e in events).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        print("ingest:", urllib.request.urlopen(req, timeout=10).read().decode()[:80])
        # the repository's sample too: decisions, points, orders, stock alerts and a dead letter,
        # so the metric families that only appear once used are checked as well
        with open(os.path.join(here, "..", "..", "examples", "sample.jsonl"), "rb") as f:
            req = urllib.request.Request("http://%s/v1/events" % addr, data=f.read(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        accepted = 3 + json.loads(urllib.request.urlopen(req, timeout=10).read())["accepted"]
        metrics = urllib.request.urlopen("http://%s/metrics" % addr, timeout=10).read()
        check = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True)
        if check.returncode != 0:
            print("promtool check metrics refused the service's /metrics (exit %d):\n%s%s"
                  % (check.returncode, check.stdout.decode(), check.stderr.decode()), file=sys.stderr)
            return 1
        print("promtool check metrics: %d lines of /metrics, no complaint" % len(metrics.splitlines()))
        port = free_port()
        cfg = os.path.join(work, "prometheus.yml")
        with open(os.path.join(here, "prometheus.yml")) as f:
            text = f.read().replace("127.0.0.1:8080", addr).replace("scrape_interval: 5s", "scrape_interval: 1s")
        with open(cfg, "w") as f:
            f.write(text)
        shutil.copy(os.path.join(here, "alerts.yml"), work)
        prom = subprocess.Popen(["prometheus", "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(work, "tsdb"),
                                 "--web.listen-address=127.0.0.1:%d" % port],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(prom)
        query = 'http://127.0.0.1:%d/api/v1/query?query=sum(omnistream_events_total%%7Boutcome%%3D%%22accepted%%22%%7D)' % port
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                body = json.loads(urllib.request.urlopen(query, timeout=2).read())
                result = body["data"]["result"]
                if result and float(result[0]["value"][1]) == accepted:
                    rules = json.loads(urllib.request.urlopen("http://127.0.0.1:%d/api/v1/rules" % port, timeout=2).read())
                    n = sum(len(g["rules"]) for g in rules["data"]["groups"])
                    print("prometheus scraped omnistream: %d accepted events; %d alert rules loaded" % (accepted, n))
                    return 0
            except Exception:
                pass
            time.sleep(1)
        print("prometheus never reported the service's counters", file=sys.stderr)
        return 1
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
