#!/usr/bin/env python3
"""Checks that every query of the Grafana dashboard is valid PromQL: promtool checks the
expressions of recording rules, so each query becomes one in a temporary rules file."""
import json
import pathlib
import subprocess
import sys
import tempfile

dashboard = pathlib.Path(__file__).with_name("omnistream-dashboard.json")
queries = [t["expr"] for p in json.loads(dashboard.read_text())["panels"] for t in p["targets"]]
lines = ["groups:", "  - name: dashboard", "    rules:"]
for i, q in enumerate(queries):
    lines += [f"      - record: dashboard:query{i}", f"        expr: {json.dumps(q)}"]
with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
    f.write("\n".join(lines) + "\n")
    f.flush()
    r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
if r.returncode != 0:
    sys.exit(f"dashboard queries: promtool refused one\n{r.stdout}{r.stderr}")
print(f"dashboard queries: {len(queries)} valid")
