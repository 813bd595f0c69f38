#!/usr/bin/env bash
# W3 for libflow: no-op C functions on 2 worker processes through a local Redis, with the rules of the
# peers' W3 (../shared/bench/w3_queue: raw Redis lists and streams, BullMQ, Celery; bench/README.md).
#   W3-drain:   N remote tasks queued first (no worker running), then 2 workers (each CONCURRENCIES value:
#               slots a worker; BullMQ is measured with 1 and 8) drain them; drain_s = last body end - first body start; also run_s (until the runner has
#               applied every completion) and enqueue_per_s.
#   W3-latency: 2 idle workers; a chain of LAT_N remote tasks, each queued when the previous completed;
#               p50/p90/p99 of submit-to-start (body start - the runner's attempt start, just before it
#               queues the task) and the p50 of submit-to-done (the peers' definition).
#   W3-cmd:     CMD_N `/bin/true` command tasks on 2 `flow worker` processes (-j2 like W2), next to W2.
# The server: redis-server on 127.0.0.1:<free port>, --save '' --appendonly no (as the peers'), its files
# in bench/.run/w3; stopped at exit.
# Env: BUILD (build), RUNS (3), W3_N (100000), LAT_N (1000), CONCURRENCIES ("8 32"), CMD_N (2000)
# stdout: result lines (peer name libflow-...); stderr: notes starting with '#'.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
[ -f "$SHARED/bench/common.sh" ] || { echo "w3.sh: no peer benchmarks at $SHARED/bench (set SHARED)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$SHARED/bench/common.sh"  # ensure_debs, stats, result, PY

BUILD=${BUILD:-build}; case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
RUNS=${RUNS:-3}; W3_N=${W3_N:-100000}; LAT_N=${LAT_N:-1000}; CONCURRENCIES=${CONCURRENCIES:-"8 32"}
CMD_N=${CMD_N:-2000}
BIN=$BUILD/bench/w3_remote FLOW=$BUILD/flow
R=$ROOT/bench/.run/w3
mkdir -p "$R"
[ -x "$BIN" ] && [ -x "$FLOW" ] || { echo "w3.sh: $BIN or $FLOW is missing: build first" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "w3.sh: redis-server is missing (scripts/setup.sh)" >&2; exit 2; }

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -rf "$R/redis"; mkdir -p "$R/redis"
redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no --dir "$R/redis" \
  --logfile "$R/redis/redis.log" --maxmemory-policy noeviction > /dev/null 2>&1 < /dev/null &
RPID=$!
WPIDS=""
trap 'for p in $WPIDS $RPID; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
URL=redis://127.0.0.1:$PORT/0
for _ in $(seq 100); do
  "$PY" - "$PORT" <<'PY' 2>/dev/null && break
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2)
s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
  sleep 0.1
done
echo "# redis-server $(redis-server --version | grep -o 'v=[0-9.]*') on port $PORT, no persistence (as the peers')" >&2

col() { grep -oE "(^| )$1=[0-9.]+" "$2" | cut -d= -f2; }
med() { stats | awk -v f="${1:-%.1f}" '{printf f, $1}'; }

for c in $CONCURRENCIES; do
  "$BIN" drain "$URL" "$W3_N" "$RUNS" "$c" > "$R/drain_c$c.txt"
  enq=$(col enqueue_s "$R/drain_c$c.txt" | med %.6f)
  col drain_s "$R/drain_c$c.txt" | result W3-drain "libflow-c-2proc-c$c" "$W3_N" \
    "enqueue_per_s=$(awk -v n="$W3_N" -v e="$enq" 'BEGIN{printf "%.0f", n/e}')" \
    "run_s=$(col run_s "$R/drain_c$c.txt" | med %.4f)" processes=2 concurrency="$c"
done

"$BIN" latency "$URL" "$LAT_N" "$RUNS" 1 > "$R/lat.txt"
col wall_s "$R/lat.txt" | result W3-latency libflow-c-2proc "$LAT_N" \
  "$(col p50_us "$R/lat.txt" | stats | awk '{printf "lat_p50_us=%.1f lat_p50_range_us=%.1f..%.1f", $1, $2, $3}')" \
  "lat_p90_us=$(col p90_us "$R/lat.txt" | med) lat_p99_us=$(col p99_us "$R/lat.txt" | med)" \
  "done_p50_us=$(col done_p50_us "$R/lat.txt" | med)" processes=2 concurrency=1 what=submit_to_start

# Command tasks on 2 `flow worker` processes, one slot each (W2's -j2), the default sqlite store.
"$PY" - "$R/cmd.yaml" "$CMD_N" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("name: w3cmd\ndefaults: {executor: remote}\ntasks:\n")
    for i in range(n):
        f.write(f"  t{i}: {{run: [/bin/true]}}\n")
PY
: > "$R/cmd_times.txt"
for rep in $(seq "$RUNS"); do
  "$PY" - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(b"FLUSHDB\r\n"); s.recv(16)
PY
  WPIDS=""
  for k in 1 2; do
    "$FLOW" worker --redis "$URL" --concurrency 1 --name "w3cmd-$k" > "$R/worker$k.log" 2>&1 &
    WPIDS="$WPIDS $!"
  done
  rm -rf "$R/cmdstore"; mkdir -p "$R/cmdstore"
  s=$(date +%s.%N)
  (cd "$R/cmdstore" && "$FLOW" run "$R/cmd.yaml" --redis "$URL" --quiet > /dev/null) ||
    { echo "w3.sh: the command run failed" >&2; exit 1; }
  e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" 'BEGIN{printf "%.6f\n", e-s}' >> "$R/cmd_times.txt"
  kill $WPIDS; wait $WPIDS 2>/dev/null || true
  WPIDS=""
done
result W3-cmd libflow-flow-worker-2proc "$CMD_N" processes=2 concurrency=1 store=default < "$R/cmd_times.txt"
