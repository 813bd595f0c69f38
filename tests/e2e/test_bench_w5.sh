#!/usr/bin/env bash
# test_bench_w5.sh -- the W5 scale benchmark keeps working, at tiny sizes (no timing assertions):
# build/bench/w5_scale's modes (dag, mem, gen + load, resume after a pause and after a kill, runs) and
# their checks, then bench/w5.sh end to end when the peers' common.sh is there (SHARED, or ../shared).
set -euo pipefail
: "${FLOW:?}" "${FLOW_SOURCE_DIR:?}" "${FLOW_BUILD_DIR:?}"
W5=$FLOW_BUILD_DIR/bench/w5_scale
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$W5" ] || fail "$W5 was not built"
run() {  # run ARGS...: w5_scale, its stdout in $T/out.txt
  "$W5" "$@" > "$T/out.txt" 2> "$T/err.txt" || { cat "$T/err.txt" >&2; fail "w5_scale $* failed"; }
}

# dag: one line per timed repetition, every task ran once; the three shapes
run dag fan:300 2 2
[ "$(grep -c '^rep=[01] build_s=[0-9.]* exec_s=[0-9.]* total_s=[0-9.]* destroy_s=[0-9.]* ran=302$' "$T/out.txt")" = 2 ] ||
  { cat "$T/out.txt" >&2; fail "dag fan: expected 2 lines with ran=302"; }
grep -q '^peak_rss_kb=[1-9][0-9]*$' "$T/out.txt" || fail "dag: no peak_rss_kb line"
run dag layered:10x30 2 1
grep -q 'ran=300$' "$T/out.txt" || fail "dag layered: expected ran=300"
run dag chain:50 1 1
grep -q 'ran=50$' "$T/out.txt" || fail "dag chain: expected ran=50"

# mem: bytes per task, the flow's share, the heap after freeing
run mem layered:10x30 2
grep -q '^bytes_per_task=[-0-9.]* flow_bytes_per_task=[-0-9.]* heap_bytes_per_task=[-0-9.]* .*tasks=300 edges=540$' "$T/out.txt" ||
  { cat "$T/out.txt" >&2; fail "mem output"; }

# gen + load: the files load and validate, flow validate agrees
for fmt in yaml json; do
  run gen "$fmt" 3x1000 "$T/f.$fmt"
  grep -q '^tasks=3000 edges=4000 ' "$T/out.txt" || fail "gen $fmt"
  run load "$T/f.$fmt" 2
  [ "$(grep -c '^rep=[01] load_s=[0-9.]* cpu_s=[0-9.]* free_s=[0-9.]* tasks=3000 warnings=0$' "$T/out.txt")" = 2 ] ||
    { cat "$T/out.txt" >&2; fail "load $fmt: expected 2 lines"; }
  "$FLOW" validate "$T/f.$fmt" > "$T/v.txt" 2>&1 || { cat "$T/v.txt" >&2; fail "flow validate $fmt"; }
  grep -q '3000 tasks' "$T/v.txt" || { cat "$T/v.txt" >&2; fail "flow validate $fmt: task count"; }
done
# the generated YAML and JSON describe the same flow
"$FLOW" graph "$T/f.yaml" --format json > "$T/g1.json"
"$FLOW" graph "$T/f.json" --format json > "$T/g2.json"
cmp -s "$T/g1.json" "$T/g2.json" || fail "the YAML and JSON files differ as flows"

# resume: a paused fan resumes with one new task (the tail); a killed one runs again what was lost
export W5_KILL_WAIT=0.3  # the killed runner's wait for its store (plenty for 400 tasks)
for mode in pause kill; do
  run resume "sqlite:$T/$mode.db" 400 "$mode"
  grep -q '^resume_s=[0-9.]* first_work_s=[0-9.]* total_s=[0-9.]* ran_again=[0-9]* ' "$T/out.txt" ||
    { cat "$T/out.txt" >&2; fail "resume $mode output"; }
done
run resume "disk:$T/disk" 400 pause
grep -q 'ran_again=1 ' "$T/out.txt" || { cat "$T/out.txt" >&2; fail "resume after a pause ran more than the tail"; }

# runs: rounds of concurrent runs, each with its own peak, the heap back where it was
run runs 40 3 2 2
[ "$(grep -c '^round=[01] total_s=[0-9.]* .*heap_left_kb=' "$T/out.txt")" = 2 ] ||
  { cat "$T/out.txt" >&2; fail "runs: expected 2 rounds"; }
grep -q '^rss_trimmed_kb=[0-9]*$' "$T/out.txt" || fail "runs: no rss_trimmed_kb line"

# bad arguments are refused with the usage
if "$W5" dag ring:5 2 1 > /dev/null 2> "$T/err.txt"; then fail "w5_scale accepted an unknown shape"; fi
grep -q "unknown shape 'ring:5'" "$T/err.txt" || { cat "$T/err.txt" >&2; fail "no message for an unknown shape"; }
if "$W5" frobnicate > /dev/null 2> "$T/err.txt"; then fail "w5_scale accepted an unknown mode"; fi
grep -q '^usage: w5_scale' "$T/err.txt" || fail "no usage"

# bench/w5.sh end to end, tiny sizes, when the peers' common.sh is there
SHARED=${SHARED:-$FLOW_SOURCE_DIR/../shared}
if [ -f "$SHARED/bench/common.sh" ]; then
  BUILD=$FLOW_BUILD_DIR SHARED=$SHARED W5_RUN_DIR=$T/run W5_N=2000 W5_BASE_N=200 W5_WIDTH=100 W5_REPS=1 W5_BASE_REPS=1 \
    W5_FILE_N=2000 W5_FILE_REPS=1 W5_RESUME_N=300 W5_RESUME_REPS=1 W5_RUNS_K=30 W5_ROUNDS=2 \
    bash "$FLOW_SOURCE_DIR/bench/w5.sh" > "$T/lines.txt" 2> "$T/err.txt" ||
    { cat "$T/err.txt" >&2; fail "bench/w5.sh failed"; }
  for w in W5a-fan-base W5a-fan W5a-layered-base W5a-layered W5b-yaml W5b-json W5d-runs; do
    grep -q "^$w libflow N=[0-9]* wall_s=[0-9.]* per_task_us=[0-9.]* tasks_per_s=[0-9]* range_s=[0-9.]*\.\.[0-9.]* runs=[0-9]*" "$T/lines.txt" ||
      { cat "$T/lines.txt" >&2; fail "bench/w5.sh: no $w line in the result format"; }
  done
  grep -q '^W5c-resume libflow-sqlite N=300 wall_s=' "$T/lines.txt" || fail "bench/w5.sh: no W5c line"
  grep -q '^W5c-resume-kill libflow-sqlite N=300 wall_s=.* ran_again=' "$T/lines.txt" || fail "bench/w5.sh: no W5c kill line"
  grep -q '^W5a-fan-mem libflow N=2002 bytes_per_task=' "$T/lines.txt" || fail "bench/w5.sh: no W5a-fan-mem line"
else
  echo "note: no $SHARED/bench/common.sh: bench/w5.sh itself not run" >&2
fi
echo "ok"
