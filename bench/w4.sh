#!/usr/bin/env bash
# W4 for libflow (issue #4): durable no-op task completions per second, and resuming a long journal; the
# peers' ../shared/bench/w4_journal measures the raw SQLite (and PostgreSQL) rates on the same disk.
#   W4-fan: source -> W4_FAN_N (10,000) no-op C tasks -> sink on 2 threads, every record journaled to the
#     store. One timed run = flow_run_start .. flow_run_wait's return, which is after the run's last journal
#     record is durable at the run's level. REPS runs in one process, one store, each a new run (median).
#     Engines: libflow-sqlite-normal, libflow-sqlite-strict, libflow-disk-normal, libflow-disk-strict, and
#     libflow-memory (the same run with nothing written anywhere: the reference).
#   W4-resume: per rep, a run of W4_RESUME_N (100,000) no-op tasks that pauses once they have all completed
#     (untimed), then flow_run_resume of it: timed, and reported as wall_s (tasks_per_s = tasks replayed per
#     second): reading the whole journal back and replaying it. Engines: libflow-sqlite, libflow-disk.
# Each configuration gets a new store under bench/.run/w4/<configuration>/, deleted after its runs; the
# harness ($BUILD/bench/w4_durable, bench/w4_durable.c) checks that every run completed every task.
# Env: BUILD (build), REPS (11: W4-fan runs), W4_FAN_N (10000), W4_RESUME_N (100000), W4_RESUME_REPS (5),
#      SHARED (the shared/ folder beside the repo)
# stdout: one result line per workload and engine; stderr: notes starting with '#'.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
[ -f "$SHARED/bench/common.sh" ] || { echo "w4.sh: no peer benchmarks at $SHARED/bench (set SHARED)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$SHARED/bench/common.sh"  # ensure_debs, stats, result, hyperfine_times, PY

BUILD=${BUILD:-build}; case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
REPS=${REPS:-11}; W4_FAN_N=${W4_FAN_N:-10000}; W4_RESUME_N=${W4_RESUME_N:-100000}
W4_RESUME_REPS=${W4_RESUME_REPS:-5}
BIN=$BUILD/bench/w4_durable
R=$ROOT/bench/.run/w4
[ -x "$BIN" ] || { echo "w4.sh: $BIN is missing: build first (cmake --build $BUILD --target bench_w4_durable)" >&2; exit 2; }
mkdir -p "$R"
echo "# libflow W4: stores in ${R#"$ROOT"/}, $(df -h "$R" | awk 'NR==2{print "filesystem " $1 " (" $2 ")"}')," \
     "$(findmnt -no FSTYPE,OPTIONS -T "$R" | tr -s " "); SQLite $(pkg-config --modversion sqlite3 2>/dev/null || echo '?')" \
     "(the library libflow links); 2 threads" >&2

median_of() {  # median_of KEY FILE: median of KEY=<number> over the lines of FILE
  grep -o "$1=[0-9.]*" "$2" | cut -d= -f2 | stats | cut -d' ' -f1
}

# store_url KIND DIR: the URL of a new store of KIND in DIR
store_url() {
  case $1 in
    sqlite) echo "sqlite:$2/flow.db" ;;
    disk) echo "disk:$2/store" ;;
    memory) echo "memory:" ;;
  esac
}

# run_cfg NAME REPS COMMAND...: run the harness in a fresh bench/.run/w4/NAME/ (its output in NAME.txt,
# which must have REPS lines), then delete the folder. $STORE_DIR is the folder.
run_cfg() {
  local name=$1 reps=$2; shift 2
  local out=$R/$name.txt
  rm -rf "${STORE_DIR:?}"; mkdir -p "$STORE_DIR"
  "$@" > "$out" 2> "$R/$name.err" || { cat "$R/$name.err" >&2; echo "w4.sh: $name failed" >&2; return 1; }
  rm -rf "$STORE_DIR"
  [ "$(grep -c '^secs=' "$out")" = "$reps" ] ||
    { cat "$out" >&2; echo "w4.sh: $name: expected $reps lines secs=..." >&2; return 1; }
}

# W4-fan
for cfg in sqlite-normal sqlite-strict disk-normal disk-strict memory; do
  kind=${cfg%%-*}; level=${cfg#*-}
  [ "$kind" = memory ] && level=normal
  STORE_DIR=$R/fan-$cfg
  run_cfg "fan-$cfg" "$REPS" "$BIN" fan "$(store_url "$kind" "$STORE_DIR")" "$W4_FAN_N" "$REPS" "$level"
  f=$R/fan-$cfg.txt
  if [ "$kind" = memory ]; then
    extra=(durability=none)   # nothing is written anywhere
  else                        # journal records per run (the harness's count: 3 per activation + 2)
    records=$(grep -o 'records=[0-9]*' "$f" | head -1 | cut -d= -f2)
    secs=$(median_of secs "$f")
    extra=(durability="$level" records="$records"
           records_per_s="$(awk -v r="$records" -v s="$secs" 'BEGIN{printf "%.0f", (s > 0) ? r / s : 0}')")
  fi
  grep -o 'secs=[0-9.]*' "$f" | cut -d= -f2 |
    result W4-fan "libflow-$cfg" "$W4_FAN_N" threads=2 store="$kind" "${extra[@]}"
done

# W4-resume
for kind in sqlite disk; do
  STORE_DIR=$R/resume-$kind
  run_cfg "resume-$kind" "$W4_RESUME_REPS" "$BIN" resume "$(store_url "$kind" "$STORE_DIR")" "$W4_RESUME_N" \
    "$W4_RESUME_REPS"
  f=$R/resume-$kind.txt
  grep -o 'secs=[0-9.]*' "$f" | cut -d= -f2 |
    result W4-resume "libflow-$kind" "$W4_RESUME_N" threads=2 store="$kind" \
      total_s="$(median_of total "$f" | awk '{printf "%.4f", $1}')"
done
