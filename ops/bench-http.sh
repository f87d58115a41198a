#!/usr/bin/env bash
# The service over HTTP, end to end: starts `omnistream run` on loopback with a fresh embedded
# store, drives it with `loadtest http`, stops it; once per variant, the variants alternated
# ROUNDS times so a noisy machine hurts them alike. Needs the release binaries:
#   cargo build --release -p omnistream -p omnistream-loadtest
# Usage: ops/bench-http.sh [SCENARIO] [BATCH] [ROUNDS] [VARIANT...]
#   a variant is a list of KEY=VALUE environment settings for the service, e.g.
#   "OMNISTREAM_METRICS=true" "OMNISTREAM_METRICS=false"
#   a BIN=PATH entry in a variant runs that omnistream binary instead (two builds side by side);
#   a TLS_CA=PATH entry speaks HTTPS to it, trusting that PEM file (give the service
#   OMNISTREAM_HTTP__TLS=true and its certificate files in the same variant)
# Environment: MAX_SECS and PACED_SECS (each phase's length), FRACTION (the paced rate as a
# fraction of the closed loop's, default 0.5), EVENTS (events to generate, for scenarios too
# small for both phases), OMNISTREAM_BENCH_PORT (default 18181).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-default}
batch=${2:-1}
rounds=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=("OMNISTREAM_METRICS=true")
bin=target/release
port=${OMNISTREAM_BENCH_PORT:-18181}
work=$(mktemp -d)
pid=
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

for round in $(seq 1 "$rounds"); do
  for v in "${variants[@]}"; do
    rm -rf "$work/data"
    svc="$bin/omnistream"
    tls_ca=
    for kv in $v; do case $kv in BIN=*) svc=${kv#BIN=} ;; TLS_CA=*) tls_ca=${kv#TLS_CA=} ;; esac; done
    scheme=http; [ -z "$tls_ca" ] || scheme=https
    # shellcheck disable=SC2086
    env $v "$svc" run --listen "127.0.0.1:$port" --data-dir "$work/data" \
      >"$work/server.log" 2>&1 &
    pid=$!
    up=
    for _ in $(seq 1 100); do
      curl -fs ${tls_ca:+--cacert "$tls_ca"} "$scheme://127.0.0.1:$port/readyz" >/dev/null 2>&1 && { up=1; break; }
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if [ -z "$up" ]; then
      echo "bench-http: the service did not become ready; its log:" >&2
      tail -5 "$work/server.log" >&2
      exit 1
    fi
    echo "== round $round: $v (batch $batch, load $(cut -d' ' -f1 /proc/loadavg))"
    timeout 300 "$bin/loadtest" http --addr "127.0.0.1:$port" --scenario "$scenario" \
      --batch "$batch" --max-secs "${MAX_SECS:-15}" --paced-secs "${PACED_SECS:-15}" \
      --fraction "${FRACTION:-0.5}" ${EVENTS:+--events "$EVENTS"} ${tls_ca:+--tls-ca "$tls_ca"} \
      2>"$work/client.err" || { head -3 "$work/client.err" >&2; exit 1; }
    kill "$pid"; wait "$pid" 2>/dev/null || true
    pid=
  done
done
