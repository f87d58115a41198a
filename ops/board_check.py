#!/usr/bin/env python3
"""Browser test of the live board: `omnistream demo` on a free loopback port, headless
Chromium (Debian `chromium`) loads the board while the generator feeds it, the numbers on
the page must grow between two loads and, once the feed is done, equal the figures of
/v1/board; a screenshot is saved.

usage: board_check.py PATH/TO/omnistream [SCREENSHOT.png]
"""
import json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]

def chromium(args, profile):
    out = subprocess.run(["chromium", *FLAGS, "--user-data-dir=" + profile, *args],
                         capture_output=True, text=True, timeout=90)
    return out.stdout

def page_numbers(dom):
    """The KPI figures as rendered: sales (yuan), orders, scans, points issued and used, member
    visits; and the rows of the stores' table."""
    def text(id_):
        m = re.search(r'id="%s">([^<]*)<' % id_, dom)
        return m.group(1) if m else ""
    num = lambda s: int(re.sub(r"[^0-9]", "", s) or 0)
    stores = re.search(r'id="stores">(.*?)</div>', dom, re.S)
    rows = stores.group(1).count("<tr>") - 1 if stores and "<table" in stores.group(1) else 0
    return {"sales": num(text("k-sales")), "orders": num(text("k-orders")), "scans": num(text("k-scans")),
            "points_in": num(text("k-pin")), "points_out": num(text("k-pout")),
            "visits": num(text("k-visits")), "store_rows": rows}

def board_numbers(addr):
    b = json.loads(urllib.request.urlopen("http://%s/v1/board" % addr, timeout=10).read())
    ms = b["minutes"]
    sales = sum(sum(m["sales"].values()) for m in ms)
    return {"sales": round(sales / 100), "orders": sum(sum(m["orders"].values()) for m in ms),
            "scans": sum(m["allow"] + m["review"] + m["block"] + m["duplicate"] for m in ms),
            "points_in": sum(m.get("points_in", 0) for m in ms),
            "points_out": sum(m.get("points_out", 0) for m in ms),
            "visits": sum(m.get("visits", 0) for m in ms),
            "store_rows": len(b.get("stores_today", []))}

def main():
    binary = sys.argv[1]
    shot = sys.argv[2] if len(sys.argv) > 2 else None
    work = tempfile.mkdtemp(prefix="omnistream-board-")
    svc = subprocess.Popen([binary, "demo", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "data"),
                            "--rate", "400", "--rounds", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        addr = svc.stdout.readline().strip().rsplit("http://", 1)[1]
        url = "http://%s/?poll" % addr
        profile = os.path.join(work, "profile")
        time.sleep(3)
        first = page_numbers(chromium(["--virtual-time-budget=3000", "--dump-dom", url], profile))
        time.sleep(3)
        second = page_numbers(chromium(["--virtual-time-budget=3000", "--dump-dom", url], profile))
        print("page while feeding:", first, "then", second)
        if not second["scans"] > first["scans"] > 0:
            print("the board did not update live", file=sys.stderr)
            return 1
        # wait for the feed to finish (stderr says so), then page and API must agree
        deadline = time.time() + 60
        for line in svc.stderr:
            if "demo: sent" in line or time.time() > deadline:
                break
        time.sleep(1.5)
        final = page_numbers(chromium(["--virtual-time-budget=3000", "--dump-dom", url], profile))
        api = board_numbers(addr)
        print("page at the end:", final, "api:", api)
        if final != api:
            print("the page's figures differ from /v1/board", file=sys.stderr)
            return 1
        if not (final["visits"] > 0 and final["store_rows"] > 0):
            print("the generator's store visits are not on the page", file=sys.stderr)
            return 1
        if shot:
            chromium(["--virtual-time-budget=3000", "--window-size=1400,1100", "--screenshot=" + os.path.abspath(shot), url], profile)
            print("screenshot:", shot, os.path.getsize(shot), "bytes")
        return 0
    finally:
        svc.send_signal(signal.SIGTERM)
        try:
            svc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            svc.kill()
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
