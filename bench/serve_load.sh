#!/usr/bin/env bash
# bench/serve_load.sh -- the load test of `flow serve`: CLIENTS (50) clients poll
# the API while RUNS (500) runs of a three-command flow start through it; prints
# p50/p99 latencies and whether every run completed with the right outputs
# (exit 1 if not). A real serve on a free loopback port, a temp sqlite store.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
FLOW=${FLOW:-$BUILD/flow}
T=$(mktemp -d)
SERVE_PID=""
trap '[ -n "$SERVE_PID" ] && kill -9 $SERVE_PID 2>/dev/null; rm -rf "$T"' EXIT
mkdir "$T/flows"
# Commands read their input from $FLOW_INPUT (a JSON file): keep them cheap.
cat > "$T/flows/load.yaml" <<'YAML'
name: load
tasks:
  a:
    run: [sh, -c, 'k=$(sed "s/[^0-9]//g" "$FLOW_INPUT"); echo "{\"k\": $k, \"step\": 1}"']
  b:
    after: [a]
    run: [sh, -c, 'k=$(sed "s/.*\"k\": *\([0-9]*\).*/\1/" "$FLOW_INPUT"); echo "{\"k\": $k, \"step\": 2}"']
  c:
    after: [b]
    run: [sh, -c, 'k=$(sed "s/.*\"k\": *\([0-9]*\).*/\1/" "$FLOW_INPUT"); echo "{\"k\": $k, \"step\": 3}"']
YAML
"$FLOW" serve --listen 127.0.0.1:0 --flows "$T/flows" --store "sqlite:$T/s.db" --quiet 2> "$T/serve.log" &
SERVE_PID=$!
for _ in $(seq 100); do grep -q 'listening on' "$T/serve.log" && break; sleep 0.05; done
PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\)\/.*/\1/p' "$T/serve.log")
rc=0
python3 "$ROOT/bench/serve_load.py" "http://127.0.0.1:$PORT" || rc=$?
kill -TERM $SERVE_PID; wait $SERVE_PID || true; SERVE_PID=""
exit $rc
