#!/usr/bin/env bash
# bench/compress.sh -- what compressed storage saves (docs/internals/store.md, "Compression"): the store
# size of a run whose command task prints a 1 MiB compressible JSON output, with compression off
# (FLOW_STORE_COMPRESS=0: what earlier versions wrote) and on, for the sqlite, disk and redis stores; then,
# to show where the 4 KiB threshold sits, what zlib (level 6, as the stores use it) makes of JSON payloads
# of 1 to 64 KiB and how long that takes. Not part of `make bench` (no peer to compare with).
#
# Measured: sqlite -- the .db file once the run's process has closed it (WAL checkpointed); disk -- the
# bytes of the run's files (runs/ID/: meta.json, journal, lease); redis -- MEMORY USAGE of the run's
# journal list and metadata hash (every element counted), on a redis-server of the script's own on a free
# port of 127.0.0.1 (skipped when redis-server is not installed). Also the wall time of `flow run`.
# The output is a 1.1 MB object: a log of one repeated 64-byte line, 2000 small rows; the run's result is
# that output too, so the store holds it twice (the completion record and the end record).
#
# usage: bash bench/compress.sh
# Env: BUILD (build), RUN_DIR (bench/.run/compress: stores and inputs, emptied first), STORES (sqlite disk
#      redis)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}; case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
FLOW=$BUILD/flow
R=${RUN_DIR:-$ROOT/bench/.run/compress}
STORES=${STORES:-"sqlite disk redis"}
[ -x "$FLOW" ] || { echo "compress.sh: $FLOW is missing: build first (make)" >&2; exit 2; }
rm -rf "$R"
mkdir -p "$R"
cd "$R"

cat >gen.py <<'EOF'
import json
rows = [{"id": i % 10, "name": "row", "ok": True} for i in range(2000)]
log = "2024-05-01T12:00:00Z INFO worker 7: processed batch, all good. " * 16384
print(json.dumps({"log": log, "rows": rows, "n": len(rows)}))
EOF
cat >big.yaml <<'EOF'
name: big
tasks:
  big:
    run: [python3, gen.py]
EOF
out_bytes=$(python3 gen.py | wc -c)

REDIS_PID=""
trap '[ -z "$REDIS_PID" ] || kill "$REDIS_PID" 2>/dev/null || true' EXIT
redis_port=""
redis_start() {
  command -v redis-server >/dev/null || return 1
  redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p redis
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$R/redis" --appendonly yes --save '' \
    --logfile "$R/redis/log" &
  REDIS_PID=$!
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# size STORE MODE: "BYTES SECONDS": what run c1 costs store STORE after a run with
# FLOW_STORE_COMPRESS=MODE, and the wall time of that run.
size() {
  local kind=$1 mode=$2 url
  case $kind in
    sqlite) url="sqlite:$R/$kind-$mode.db" ;;
    disk) url="disk:$R/$kind-$mode" ;;
    redis) url="redis://127.0.0.1:$redis_port/0?prefix=bench$mode" ;;
  esac
  local t0 t1
  t0=$(date +%s.%N)
  FLOW_STORE_COMPRESS=$mode "$FLOW" run big.yaml --id c1 --store "$url" --quiet >/dev/null
  t1=$(date +%s.%N)
  local bytes
  case $kind in
    sqlite) bytes=$(stat -c %s "$R/$kind-$mode.db") ;;
    disk) bytes=$(find "$R/$kind-$mode/runs/c1" -type f -printf "%s\n" | awk "{ n += \$1 } END { print n }") ;;
    redis)
      bytes=$(( $(redis-cli -p "$redis_port" MEMORY USAGE "bench$mode:journal:c1" SAMPLES 0) +
                $(redis-cli -p "$redis_port" MEMORY USAGE "bench$mode:run:c1" SAMPLES 0) )) ;;
  esac
  echo "$bytes $(echo "$t1 - $t0" | bc)"
}

echo "# a run with a $out_bytes-byte output (result included: twice in the journal)"
printf '%-8s %14s %14s %8s %10s %10s\n' store "off (bytes)" "on (bytes)" ratio "off run s" "on run s"
for kind in $STORES; do
  if [ "$kind" = redis ] && [ -z "$REDIS_PID" ] && ! redis_start; then
    echo "# redis: redis-server not installed or not answering: skipped" >&2
    continue
  fi
  read -r off off_s < <(size "$kind" 0)
  read -r on on_s < <(size "$kind" 1)
  printf '%-8s %14d %14d %7.0fx %10.2f %10.2f\n' "$kind" "$off" "$on" "$(echo "$off / $on" | bc -l)" \
    "$off_s" "$on_s"
done

if [[ " $STORES " == *" sqlite "* ]]; then
  cat >small.yaml <<'EOF'
name: small
tasks:
  small:
    run: [echo, '{}']
EOF
  "$FLOW" run small.yaml --id s1 --store "sqlite:$R/floor.db" --quiet >/dev/null
  echo "# sqlite floor: a run with a 2-byte output makes a file of $(stat -c %s "$R/floor.db") bytes (a page or more" \
       "per table and index)"
fi

echo
echo "# zlib as the stores set it up (src/store/compress.c: window sized to the text, level 1 under 64 KiB, 6"
echo "# from there) on JSON payloads (rows of a query, as a task outputs them): the saving, and its cost; the"
echo "# stores deflate only texts over 4 KiB. Times through python3's zlib module (same libz), best of 5."
python3 - <<'EOF'
import json, time, zlib
print("%8s %9s %9s %11s %11s" % ("text", "deflated", "saved", "deflate us", "inflate us"))
for size in (1024, 2048, 4096, 8192, 16384, 65536, 262144, 1048576):
    rows, text = [], b""
    while len(text) < size:
        i = len(rows)
        rows.extend({"id": i + k, "user": "user-%d" % ((i + k) * 7919 % 1000),
                     "score": ((i + k) * 37) % 100 / 10, "tags": ["a", "b"] if (i + k) % 3 else []}
                    for k in range(max(1, size // 2000)))
        text = json.dumps({"output": rows}, separators=(",", ":")).encode()
    text = text[:size]
    wbits = 9
    while wbits < 15 and (1 << wbits) < len(text):
        wbits += 1
    level = 1 if len(text) < 65536 else 6
    def deflate():
        c = zlib.compressobj(level, zlib.DEFLATED, wbits, wbits - 7)
        return c.compress(text) + c.flush()
    n = max(5, 1000000 // size)
    best_d = best_i = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            z = deflate()
        best_d = min(best_d, (time.perf_counter() - t) / n * 1e6)
        t = time.perf_counter()
        for _ in range(n):
            zlib.decompress(z)
        best_i = min(best_i, (time.perf_counter() - t) / n * 1e6)
    print("%8d %9d %9d %11.1f %11.1f" % (len(text), len(z) + 6, len(text) - len(z) - 6, best_d, best_i))
EOF
