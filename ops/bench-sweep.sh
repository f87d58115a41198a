#!/usr/bin/env bash
# Throughput and latency against offered load (issue #9): starts `omnistream run` (release,
# fresh embedded store in a temp dir, loopback), runs `loadtest sweep` against it (the closed
# loop's maximum, then an open loop at each fraction of it), writes the table, the JSON and
# the chart, stops the service. Needs the release binaries, loadtest with its chart:
#   cargo build --release -p omnistream && cargo build --release -p omnistream-loadtest --features chart
# Usage: ops/bench-sweep.sh [SCENARIO (default loadtest/scenarios/steady.toml)] [BATCH] [OUT_DIR]
#   environment: MAX_SECS (closed loop, default 10), SECS (each point, default 8),
#   FRACTIONS (default 0.1,0.25,0.5,0.75,0.9,1.0,1.2,1.5), CONNECTIONS (default 32),
#   and any OMNISTREAM_* setting for the service.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-loadtest/scenarios/steady.toml}
batch=${2:-1}
out=${3:-docs}
bin=target/release
port=${OMNISTREAM_BENCH_PORT:-18182}
work=$(mktemp -d)
pid=
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$out"
"$bin/omnistream" run --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
pid=$!
up=
for _ in $(seq 1 100); do
  curl -fs "127.0.0.1:$port/readyz" >/dev/null 2>&1 && { up=1; break; }
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$up" ]; then
  echo "bench-sweep: the service did not become ready; its log:" >&2
  tail -5 "$work/server.log" >&2
  exit 1
fi
echo "== sweep: scenario $scenario, batch $batch, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), $(git rev-parse --short HEAD)"
timeout 600 "$bin/loadtest" sweep --addr "127.0.0.1:$port" --scenario "$scenario" \
  --batch "$batch" --connections "${CONNECTIONS:-32}" --max-secs "${MAX_SECS:-10}" \
  --secs "${SECS:-8}" --fractions "${FRACTIONS:-0.1,0.25,0.5,0.75,0.9,1.0,1.2,1.5}" \
  --json "$out/sweep.json" --chart "$out/sweep.png" \
  --title "omnistream over HTTP, $batch event(s) a request: answered rate and latency against offered load"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
kill "$pid"; wait "$pid" 2>/dev/null || true
pid=
