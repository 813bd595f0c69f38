#!/usr/bin/env bash
# W5 for libflow (issue #10, item 5): how it scales. bench/README.md, "W5".
#   W5a: no-op C tasks built and run from C in one process, 2 threads: the fan 1 -> N -> 1 and N tasks in
#     layers of W5_WIDTH (each after 2 of the layer before), at W5_N (1,000,000) and at W5_BASE_N (100,000);
#     per task at W5_N against per task at W5_BASE_N (target: within 2x), and the resident bytes per task of
#     one build + run at W5_N in a fresh process (target: <= 300).
#   W5b: a workflow file of W5_FILE_N (100,000) tasks (layers of 1,000, 2 predecessors each, every task a
#     command, one in ten with an input template), YAML and JSON: `flow validate FILE` (the whole process,
#     wall) and flow_load_file from C (target: under 1 s).
#   W5c: a durable run of a fan of W5_RESUME_N (1,000,000) no-op tasks on the default store kind (SQLite),
#     paused by its sink once every task has completed (or, W5c-resume-kill, its runner killed by SIGKILL
#     near the end), then flow_run_resume: the time from the call to the first task body the resumed
#     run starts (target: under 3 s), to its return, and to the end.
#   W5d: W5_RUNS_K (10,000) runs of a 3-task chain started at once on one engine, W5_ROUNDS (3) rounds:
#     every run completes; per round the peak resident bytes per run, and the heap after freeing them.
# Env: BUILD (build), THREADS (2), W5_N (1000000), W5_BASE_N (100000), W5_WIDTH (1000), W5_REPS (5: timed
#      repetitions at W5_N), W5_BASE_REPS (11), W5_FILE_N (100000), W5_FILE_REPS (5), W5_RESUME_N (1000000),
#      W5_RESUME_REPS (3), W5_RESUME_KILL_REPS (1), W5_KILL_WAIT (seconds the killed runner waits for
#      its store: 1 + 12 us a task), W5_RUNS_K (10000), W5_ROUNDS (3), MEM (1; 0 skips the memory runs),
#      SHARED (the shared/ folder beside the repo, for common.sh)
#      W5_PARTS (a b c d: the parts to run), W5_RUN_DIR (bench/.run/w5: generated files, stores, outputs)
# stdout: result lines; stderr: notes starting with '#'. Inputs and stores go to bench/.run/w5/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
[ -f "$SHARED/bench/common.sh" ] || { echo "w5.sh: no peer benchmarks at $SHARED/bench (set SHARED)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$SHARED/bench/common.sh"  # stats, result

BUILD=${BUILD:-build}; case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
THREADS=${THREADS:-2}; MEM=${MEM:-1}
W5_N=${W5_N:-1000000}; W5_BASE_N=${W5_BASE_N:-100000}; W5_WIDTH=${W5_WIDTH:-1000}
W5_REPS=${W5_REPS:-5}; W5_BASE_REPS=${W5_BASE_REPS:-11}
W5_FILE_N=${W5_FILE_N:-100000}; W5_FILE_REPS=${W5_FILE_REPS:-5}
W5_RESUME_N=${W5_RESUME_N:-1000000}; W5_RESUME_REPS=${W5_RESUME_REPS:-3}; W5_RESUME_KILL_REPS=${W5_RESUME_KILL_REPS:-1}
W5_RUNS_K=${W5_RUNS_K:-10000}; W5_ROUNDS=${W5_ROUNDS:-3}
W5_PARTS=${W5_PARTS:-"a b c d"}
BIN=$BUILD/bench/w5_scale FLOW=$BUILD/flow
R=${W5_RUN_DIR:-$ROOT/bench/.run/w5}
[ -x "$BIN" ] || { echo "w5.sh: $BIN is missing: build first (cmake --build $BUILD --target bench_w5_scale)" >&2; exit 2; }
mkdir -p "$R"
part() { case " $W5_PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

median_of() {  # median_of KEY FILE: median of KEY=<number> over the lines of FILE
  grep -o "\b$1=[0-9.]*" "$2" | cut -d= -f2 | stats | awk '{printf "%.4f", $1}'
}
field() {  # field KEY FILE: the first KEY=<value> of FILE
  grep -o "\b$1=[^ ]*" "$2" | head -1 | cut -d= -f2
}
run_bin() {  # run_bin OUT ERR ARGS...: the harness, its output in OUT; on failure its stderr and exit 1
  local out=$1 err=$2; shift 2
  "$BIN" "$@" > "$out" 2> "$err" || { cat "$err" >&2; echo "w5.sh: w5_scale $* failed" >&2; exit 1; }
}

# W5a: shape name, the harness's shape at N and at the base N, tasks in each
if part a; then
  layers=$(( W5_N / W5_WIDTH )); base_layers=$(( W5_BASE_N / W5_WIDTH ))
  [ "$layers" -ge 2 ] && [ "$base_layers" -ge 2 ] ||
    { echo "w5.sh: W5_N and W5_BASE_N must be at least 2 x W5_WIDTH ($W5_WIDTH)" >&2; exit 2; }
  for shape in fan layered; do
    if [ "$shape" = fan ]; then
      big=fan:$W5_N base=fan:$W5_BASE_N n=$(( W5_N + 2 )) base_n=$(( W5_BASE_N + 2 ))
    else
      big=layered:${layers}x$W5_WIDTH base=layered:${base_layers}x$W5_WIDTH
      n=$(( layers * W5_WIDTH )) base_n=$(( base_layers * W5_WIDTH ))
    fi
    for size in base big; do
      if [ "$size" = base ]; then s=$base reps=$W5_BASE_REPS nn=$base_n w=W5a-$shape-base
      else s=$big reps=$W5_REPS nn=$n w=W5a-$shape; fi
      out=$R/a-$shape-$size.txt
      run_bin "$out" "$R/a.err" dag "$s" "$THREADS" "$reps"
      peak=$(field peak_rss_kb "$out")
      grep -o 'total_s=[0-9.]*' "$out" | cut -d= -f2 |
        result "$w" libflow "$nn" threads="$THREADS" shape="$s" exec_s="$(median_of exec_s "$out")" \
          build_s="$(median_of build_s "$out")" destroy_s="$(median_of destroy_s "$out")" \
          peak_rss_mb="$(awk -v k="$peak" 'BEGIN{printf "%.1f", k/1024}')"
    done
    if [ "$MEM" != 0 ]; then
      out=$R/a-$shape-mem.txt
      run_bin "$out" "$R/a.err" mem "$big" "$THREADS"
      echo "W5a-$shape-mem libflow N=$n bytes_per_task=$(field bytes_per_task "$out")" \
        "flow_bytes_per_task=$(field flow_bytes_per_task "$out") heap_bytes_per_task=$(field heap_bytes_per_task "$out")" \
        "peak_rss_kb=$(field peak_rss_kb "$out") target_bytes=300"
    fi
  done
fi

# W5b: the files are written once per size (a few seconds), outside the timing
if part b; then
  [ -x "$FLOW" ] || { echo "w5.sh: $FLOW is missing: build first" >&2; exit 2; }
  [ $(( W5_FILE_N % 1000 )) = 0 ] && [ "$W5_FILE_N" -ge 2000 ] ||
    { echo "w5.sh: W5_FILE_N must be a multiple of 1,000, at least 2,000" >&2; exit 2; }
  for fmt in yaml json; do
    file=$R/file_${W5_FILE_N}.$fmt
    [ -s "$file" ] || run_bin "$R/gen.txt" "$R/gen.err" gen "$fmt" "$(( W5_FILE_N / 1000 ))x1000" "$file"
    # flow validate: the whole process, as a user runs it (first one untimed: the file into the page cache)
    "$FLOW" validate "$file" > /dev/null 2> "$R/b.err" || { cat "$R/b.err" >&2; echo "w5.sh: flow validate $file failed" >&2; exit 1; }
    times=$R/b-$fmt-validate.txt
    : > "$times"
    for _ in $(seq "$W5_FILE_REPS"); do
      t0=$(date +%s%N)
      "$FLOW" validate "$file" > /dev/null 2> "$R/b.err" || { cat "$R/b.err" >&2; exit 1; }
      t1=$(date +%s%N)
      echo "$t0 $t1" | awk '{printf "%.6f\n", ($2 - $1) / 1e9}' >> "$times"
    done
    out=$R/b-$fmt-load.txt
    run_bin "$out" "$R/b.err" load "$file" "$W5_FILE_REPS"
    result "W5b-$fmt" libflow "$W5_FILE_N" what=flow_validate bytes="$(stat -c %s "$file")" \
      load_s="$(median_of load_s "$out")" load_first_s="$(grep '^rep=0 ' "$out" | grep -o 'load_s=[0-9.]*' | cut -d= -f2)" \
      load_cpu_s="$(median_of cpu_s "$out")" \
      load_peak_rss_mb="$(awk -v k="$(field peak_rss_kb "$out")" 'BEGIN{printf "%.1f", k/1024}')" \
      target_s=1 < "$times"
  done
fi

# W5c: a new SQLite store per rep (the default kind of store), deleted after it; the run paused by its
# sink (W5_RESUME_REPS), then killed near its end (W5_RESUME_KILL_REPS: SIGKILL once 99% of the tasks
# have run and the store has caught up; the lost tail runs again: ran_again)
if part c; then
  for mode in pause kill; do
    if [ "$mode" = pause ]; then reps=$W5_RESUME_REPS w=W5c-resume; else reps=$W5_RESUME_KILL_REPS w=W5c-resume-kill; fi
    [ "$reps" -gt 0 ] || continue
    out=$R/c-resume-$mode.txt
    : > "$out"
    for rep in $(seq "$reps"); do
      rm -rf "$R/c-store"; mkdir -p "$R/c-store"
      "$BIN" resume "sqlite:$R/c-store/flow.db" "$W5_RESUME_N" "$mode" >> "$out" 2> "$R/c.err" ||
        { cat "$R/c.err" >&2; echo "w5.sh: $w rep $rep failed" >&2; exit 1; }
      db_mb=$(du -m "$R/c-store/flow.db" | cut -f1)
      rm -rf "$R/c-store"
    done
    [ "$(grep -c '^resume_s=' "$out")" = "$reps" ] || { cat "$out" >&2; echo "w5.sh: $w: missing lines" >&2; exit 1; }
    grep -o 'first_work_s=[0-9.]*' "$out" | cut -d= -f2 |
      result "$w" libflow-sqlite "$W5_RESUME_N" what=first_new_work resume_s="$(median_of resume_s "$out")" \
        total_s="$(median_of total_s "$out")" journal_s="$(median_of journal_s "$out")" \
        ran_again="$(median_of ran_again "$out" | cut -d. -f1)" db_mb="$db_mb" \
        peak_rss_mb="$(awk -v k="$(median_of peak_rss_kb "$out")" 'BEGIN{printf "%.1f", k/1024}')" target_s=3
  done
fi

# W5d: one process, W5_ROUNDS rounds
if part d; then
  out=$R/d-runs.txt
  run_bin "$out" "$R/d.err" runs "$W5_RUNS_K" 3 "$THREADS" "$W5_ROUNDS"
  first=$(grep '^round=0 ' "$out"); last=$(grep "^round=$(( W5_ROUNDS - 1 )) " "$out")
  peak_first=$(echo "$first" | grep -o 'peak_rss_kb=[0-9]*' | cut -d= -f2)
  peak_last=$(echo "$last" | grep -o 'peak_rss_kb=[0-9]*' | cut -d= -f2)
  heap_left=$(grep -o 'heap_left_kb=[-0-9]*' "$out" | cut -d= -f2 | sort -n | tail -1)
  grep -o '^round=[0-9]* total_s=[0-9.]*' "$out" | sed 's/.*total_s=//' |
    result W5d-runs libflow $(( 3 * W5_RUNS_K )) concurrent="$W5_RUNS_K" rounds="$W5_ROUNDS" \
      start_s="$(median_of start_s "$out")" \
      peak_bytes_per_run="$(echo "$first" | grep -o 'peak_bytes_per_run=[0-9]*' | cut -d= -f2)" \
      heap_bytes_per_run="$(echo "$first" | grep -o 'heap_bytes_per_run=[0-9]*' | cut -d= -f2)" \
      rss_before_kb="$(field rss_before_kb "$out")" peak_rss_kb_first="$peak_first" peak_rss_kb_last="$peak_last" \
      rss_freed_kb="$(echo "$last" | grep -o 'rss_freed_kb=[0-9]*' | cut -d= -f2)" \
      rss_trimmed_kb="$(field rss_trimmed_kb "$out")" heap_left_kb_max="$heap_left"
fi
