#!/usr/bin/env bash
# The comparison of issue #9: the Flink keyed-state job in this folder against omnistream on
# the same JSON-lines file, alternated ROUNDS times on the same machine. Not used by CI.
#   bash loadtest/peers/flink/run.sh                 # default scenario (1,000,000 events), 2 rounds
#   SCENARIO=path/to.toml ROUNDS=3 bash loadtest/peers/flink/run.sh
# Needs cargo, Java 17 and Maven (Flink comes from Maven Central as jars; no Flink install).
# Per round, in this order:
#   flink    the Flink job, local MiniCluster, parallelism 2, HashMapStateBackend,
#            exactly-once checkpoints every 1 s to file:///tmp (see PeerJob.java)
#   replay   omnistream replay --input FILE --out DIR (files in, states + outputs out; no store)
#   http     omnistream run (embedded store: every event durable before it is answered)
#            fed the same file by post.py, 1,000 lines a request on 2 connections
#   input    omnistream run --input FILE --stop-after-input (embedded store: the file read
#            in batches, each durable with the file's position before it counts); events/s
#            from the process's start to the file durable, and to its exit (final checkpoint)
# Output: runs/<time>/results.txt (one line per run) and medians at the end.
# Variants (for reference runs, not the comparison itself):
#   FLINK_CHECKPOINT_MS=0             the Flink job without checkpoints
#   SERVICE_ENV="OMNISTREAM_K=V ..."  settings for omnistream run (e.g. periodic checkpoints)
#   SKIP_REPLAY=1                     leave out omnistream replay
#   SKIP_HTTP=1                       leave out omnistream run over HTTP
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
scenario=${SCENARIO:-default}
rounds=${ROUNDS:-2}
batch=${BATCH:-1000}
conns=${CONNECTIONS:-2}
port=${PORT:-18282}
parallelism=${PARALLELISM:-2}
checkpoint_ms=${FLINK_CHECKPOINT_MS:-1000}
service_env=${SERVICE_ENV:-}
skip_replay=${SKIP_REPLAY:-}
skip_http=${SKIP_HTTP:-}
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release

echo "== build (cargo release, maven)"
(cd "$root" && cargo build --release -p omnistream -p omnistream-loadtest)
(cd "$here" && mvn -B -q compile dependency:build-classpath -Dmdep.outputFile=target/cp.txt)
cp="$here/target/classes:$(cat "$here/target/cp.txt")"

gen=$here/gen/$(basename "$scenario" .toml)
if [ ! -s "$gen/events.jsonl" ]; then
  echo "== generate $scenario into $gen"
  "$bin/loadtest" generate --scenario "$scenario" --out "$gen"
fi
input=$gen/events.jsonl
echo "input: $input, $(wc -l <"$input") lines, $(du -h "$input" | cut -f1)"

runs=$here/runs/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$runs"
results=$runs/results.txt
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work" /tmp/omnistream-flink-ckpt-$$; }
trap cleanup EXIT

load() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' /; }

for round in $(seq 1 "$rounds"); do
  echo "== round $round"
  # Flink
  ck=/tmp/omnistream-flink-ckpt-$$
  rm -rf "$ck"
  l0=$(load)
  line=$(timeout 900 java -Xms2g -Xmx6g \
    --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED \
    -cp "$cp" omnistream.peer.PeerJob "$input" "$parallelism" "$checkpoint_ms" "file://$ck" 2>"$runs/flink-$round.err" \
    | grep '^flink ')
  echo "round=$round load_before=$l0 load_after=$(load) $line" | tee -a "$results"
  rm -rf "$ck"

  # omnistream replay (no store)
  if [ -z "$skip_replay" ]; then
  rm -rf "$work/out"
  l0=$(load)
  s=$(date +%s.%N)
  timeout 900 "$bin/omnistream" replay --input "$input" --out "$work/out" >"$runs/replay-$round.log" 2>&1
  e=$(date +%s.%N)
  n=$(wc -l <"$input")
  echo "round=$round load_before=$l0 load_after=$(load) omnistream_replay seconds=$(echo "$e - $s" | bc) events_per_s=$(echo "$n / ($e - $s)" | bc) outputs=$(wc -l <"$work/out/outputs.jsonl") dead_letters=$(wc -l <"$work/out/dead-letter.jsonl")" | tee -a "$results"
  fi

  # omnistream run --input, embedded store
  rm -rf "$work/data"
  l0=$(load)
  s=$(date +%s.%N)
  # shellcheck disable=SC2086
  # each line of its output stamped as it comes: the file's summary line is printed once
  # its last batch is durable
  env $service_env timeout 900 "$bin/omnistream" run --listen "127.0.0.1:$port" --data-dir "$work/data" \
    --input "$input" --stop-after-input 2>"$runs/input-$round.err" |
    while IFS= read -r l; do echo "$(date +%s.%N) $l"; done >"$runs/input-$round.log"
  e=$(date +%s.%N)
  n=$(wc -l <"$input")
  durable=$(awk '$2 == "input" { print $1 }' "$runs/input-$round.log")
  echo "round=$round load_before=$l0 load_after=$(load) omnistream_input service_env=[${service_env// /,}] seconds_to_durable=$(echo "$durable - $s" | bc) events_per_s_file=$(echo "$n / ($durable - $s)" | bc) seconds_to_exit=$(echo "$e - $s" | bc) events_per_s_to_exit=$(echo "$n / ($e - $s)" | bc) accepted=$(sed -n 's/.*: \([0-9]*\) accepted.*/\1/p' "$runs/input-$round.log")" | tee -a "$results"

  # omnistream run over HTTP, embedded store
  [ -n "$skip_http" ] && continue
  rm -rf "$work/data"
  l0=$(load)
  s=$(date +%s.%N)
  # shellcheck disable=SC2086
  env $service_env "$bin/omnistream" run --listen "127.0.0.1:$port" --data-dir "$work/data" >"$runs/run-$round.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fs "127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  ready=$(echo "$(date +%s.%N) - $s" | bc)
  line=$(timeout 900 python3 "$here/post.py" "$input" "127.0.0.1:$port" "$batch" "$conns" 800)
  s=$(date +%s.%N)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  pid=
  stop=$(echo "$(date +%s.%N) - $s" | bc)
  echo "round=$round load_before=$l0 load_after=$(load) service_env=[${service_env// /,}] startup_s=$ready shutdown_s=$stop store_bytes=$(du -sb "$work/data" | cut -f1) $line" | tee -a "$results"
done

echo "== medians ($rounds rounds, $(date -u +%FT%TZ))"
python3 - "$results" <<'PY'
import re, statistics, sys
rows = [dict(re.findall(r"(\w+)=(\S+)", l)) for l in open(sys.argv[1])]
def med(pred, key):
    v = [float(r[key]) for r in rows if pred(r) and key in r]
    return statistics.median(v) if v else float("nan"), v
for name, pred, key in [
    ("flink events/s from job start", lambda r: "checkpoints" in r, "events_per_s_from_start"),
    ("flink events/s first record to last", lambda r: "checkpoints" in r, "events_per_s_processing"),
    ("omnistream replay events/s", lambda r: "dead_letters" in r, "events_per_s"),
    ("omnistream run over HTTP events/s", lambda r: "store_bytes" in r, "events_per_s"),
    ("omnistream run --input events/s, start to file durable", lambda r: "events_per_s_file" in r, "events_per_s_file"),
    ("omnistream run --input events/s, start to exit", lambda r: "events_per_s_to_exit" in r, "events_per_s_to_exit"),
]:
    m, v = med(pred, key)
    print(f"{name}: median {m:,.0f} of {v}")
PY
echo "results: $results"
