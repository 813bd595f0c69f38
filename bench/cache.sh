#!/usr/bin/env bash
# bench/cache.sh -- what a cache hit saves (docs/file-format.md "Caching"): a
# workflow whose command task takes a second (`sleep 1`) and a task after it,
# run REPS times with --no-cache (the task runs every time) and REPS times
# after one run that filled the cache (every run a hit), each a whole
# `flow run` process on a fresh store. Prints the wall times of both, per
# run, and what a hit saves. Not part of `make bench` (it measures a sleep);
# its figures are in bench/README.md, "Caching".
#
#   bash bench/cache.sh                   REPS=10 STORE=sqlite|disk|redis FLOW=build/flow
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
FLOW=${FLOW:-$here/../build/flow}
REPS=${REPS:-10}
KIND=${STORE:-sqlite}
dir=$(mktemp -d)
redis_pid=""
trap '[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; rm -rf "$dir"' EXIT

case $KIND in
sqlite) store="sqlite:$dir/flow.db" ;;
disk) store="disk:$dir/store" ;;
redis)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'port %s\nbind 127.0.0.1\ndir %s\nappendonly yes\nsave ""\nmaxmemory-policy noeviction\n' \
        "$port" "$dir" >"$dir/redis.conf"
    redis-server "$dir/redis.conf" >/dev/null &
    redis_pid=$!
    for _ in $(seq 100); do
        python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.1)' \
            "$port" 2>/dev/null && break
        sleep 0.05
    done
    store="redis://127.0.0.1:$port/0?prefix=bench"
    ;;
*) echo "STORE is sqlite, disk or redis, not '$KIND'" >&2; exit 2 ;;
esac
export FLOW_STORE=$store

cat >"$dir/slow.yaml" <<'EOF'
name: cache-bench
tasks:
  fetch:
    shell: 'sleep 1; echo "{\"url\": \"$1\", \"bytes\": 4096}"'
    output: json
    cache: {key: "{{ inputs.url }}", ttl: 1h}
  report:
    after: fetch
    run: [echo, "{{ tasks.fetch.output.bytes }}"]
EOF

# times ARGS...: REPS wall times (seconds) of `flow run slow.yaml ARGS`, one a line
times() {
    local i t0 t1
    for i in $(seq "$REPS"); do
        t0=$EPOCHREALTIME
        "$FLOW" run "$dir/slow.yaml" --quiet -i url=https://example.org/a "$@" >/dev/null
        t1=$EPOCHREALTIME
        echo "$t0 $t1"
    done | awk '{printf "%.4f\n", $2 - $1}'
}

echo "store: $KIND ($store), $REPS runs each way, $(nproc) cores, $(uname -sr)"
times --no-cache >"$dir/run"
"$FLOW" run "$dir/slow.yaml" --quiet -i url=https://example.org/a >/dev/null # fills the cache
times >"$dir/hit"
python3 - "$dir/run" "$dir/hit" <<'PY'
import statistics, sys
run = [float(x) for x in open(sys.argv[1])]
hit = [float(x) for x in open(sys.argv[2])]
def line(name, xs):
    print("%-22s median %7.3f s  mean %7.3f s  min %7.3f s  max %7.3f s" %
          (name, statistics.median(xs), statistics.mean(xs), min(xs), max(xs)))
line("--no-cache (it runs)", run)
line("cache hit", hit)
saved = statistics.median(run) - statistics.median(hit)
print("a hit saves %.3f s of %.3f s (median): %.1fx faster; the hit's run costs %.1f ms" %
      (saved, statistics.median(run), statistics.median(run) / statistics.median(hit),
       statistics.median(hit) * 1000))
PY
