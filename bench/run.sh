#!/usr/bin/env bash
# bench/run.sh -- `make bench`: libflow next to the peers a user would pick instead, in one go.
# Builds what is needed, runs the peers' W1 (in-process DAG), W2 (external commands), W3 (jobs on 2 workers
# through Redis) and W4 (durable journal) scripts from ../shared/bench/ and libflow's own (bench/w1.sh,
# bench/w2.sh, bench/w3.sh, bench/w4.sh) on the same inputs
# and rules, and libflow's scale benchmark W5 (bench/w5.sh, no peer), prints every result line, then the
# ratios libflow / peer with the issue's targets (PASS / MISS), and saves the whole output to
# bench/results/<UTC time>-<W>.txt (QUICK runs go to bench/.run/results/).
# See bench/README.md.
# Env: W ("W1 W2 W3 W4 W5"), W3_PEERS ("raw bullmq celery"; may add redis-benchmark; "" runs none), PEERS ("tbb omp ninja make xargs parallel raw"; may add dask), DASK=1 (adds dask),
#      W4_PEERS ("sqlite"; "sqlite postgres" adds PostgreSQL; "" runs no W4 peer), W4_RUNS (5: their runs),
#      REPS (11: W1 timed repetitions, W4-fan runs), RUNS (3: W2 hyperfine runs), THREADS (2), BUILD (build),
#      QUICK=1 (small N, few repetitions: a smoke run), STRICT=1 (exit 1 when a target is missed),
#      NO_BUILD=1 (use $BUILD as it is),
#      SHARED (the peers' shared/ folder; default: beside the repo), and every size knob of the scripts
#      (CHAIN_N FAN_N LAYERS WIDTH SEED N_INDEP N_CHAIN PAR_N_INDEP PAR_N_CHAIN WARMUP STORE VARIANTS
#      W4_FAN_N W4_RESUME_N W4_RESUME_REPS SQ_FULL_N SQ_NORMAL_N SQ_BATCH_N PG_ON_N PG_OFF_N PG_BATCH_N
#      W5_N W5_BASE_N W5_WIDTH W5_REPS W5_BASE_REPS W5_FILE_N W5_FILE_REPS W5_RESUME_N W5_RESUME_REPS
#      W5_RESUME_KILL_REPS W5_KILL_WAIT W5_RUNS_K W5_ROUNDS).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
if ! [ -f "$SHARED/bench/common.sh" ]; then
  echo "bench: the peer benchmarks are not at $SHARED/bench: put shared/ beside the repo or set SHARED" >&2
  exit 2
fi
SHARED=$(cd "$SHARED" && pwd)
export SHARED
# shellcheck source=/dev/null
. "$SHARED/bench/common.sh"  # ensure_debs, stats, result, hyperfine_times, PY

W=$(echo "${W:-W1 W2 W3 W4 W5}" | tr 'a-z,' 'A-Z ')
PEERS=${PEERS:-"tbb omp ninja make xargs parallel raw"}
[ "${DASK:-0}" != 0 ] && PEERS="$PEERS dask"
BUILD=${BUILD:-build}; case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
QUICK=${QUICK:-0}
if [ "$QUICK" != 0 ]; then   # smoke sizes; any size set in the environment still wins
  export CHAIN_N=${CHAIN_N:-10000} FAN_N=${FAN_N:-10000} LAYERS=${LAYERS:-10} WIDTH=${WIDTH:-1000}
  export N_INDEP=${N_INDEP:-500} N_CHAIN=${N_CHAIN:-200} PAR_N_INDEP=${PAR_N_INDEP:-200}
  export PAR_N_CHAIN=${PAR_N_CHAIN:-100} DASK_REPS=${DASK_REPS:-1}
  export REPS=${REPS:-3} RUNS=${RUNS:-2}
  # W4: the fan-out keeps its 10,000 tasks (a tenth of a second a run); the journal to resume and the
  # peers' row counts shrink
  export W4_RESUME_N=${W4_RESUME_N:-10000} W4_RESUME_REPS=${W4_RESUME_REPS:-2} W4_RUNS=${W4_RUNS:-2}
  export SQ_FULL_N=${SQ_FULL_N:-2000} SQ_NORMAL_N=${SQ_NORMAL_N:-10000} SQ_BATCH_N=${SQ_BATCH_N:-50000}
  export PG_ON_N=${PG_ON_N:-2000} PG_OFF_N=${PG_OFF_N:-5000} PG_BATCH_N=${PG_BATCH_N:-5000}
  # W5: a tenth of every size (the targets then read n/a), fewer repetitions
  export W5_N=${W5_N:-100000} W5_BASE_N=${W5_BASE_N:-10000} W5_REPS=${W5_REPS:-3} W5_BASE_REPS=${W5_BASE_REPS:-3}
  export W5_FILE_N=${W5_FILE_N:-10000} W5_FILE_REPS=${W5_FILE_REPS:-3} W5_RESUME_N=${W5_RESUME_N:-100000}
  export W5_RESUME_REPS=${W5_RESUME_REPS:-2} W5_RUNS_K=${W5_RUNS_K:-1000} W5_ROUNDS=${W5_ROUNDS:-2}
  export W5_RESUME_KILL_REPS=${W5_RESUME_KILL_REPS:-1}
fi
export BUILD THREADS=${THREADS:-2} REPS=${REPS:-11} RUNS=${RUNS:-3}
W4_PEERS=${W4_PEERS-sqlite}; W4_RUNS=${W4_RUNS:-5}
W3_PEERS=${W3_PEERS-"raw bullmq celery"}

W1_PEERS="" W2_PEERS=""
for p in $PEERS; do
  case $p in
    tbb|omp|dask) W1_PEERS="$W1_PEERS $p" ;;
    ninja|make|xargs|parallel|raw) W2_PEERS="$W2_PEERS $p" ;;
    *) echo "bench: unknown peer '$p' (known: tbb omp dask ninja make xargs parallel raw)" >&2; exit 2 ;;
  esac
done
for p in $W3_PEERS; do
  case $p in redis-benchmark|raw|bullmq|celery) ;;
    *) echo "bench: unknown W3 peer '$p' (known: redis-benchmark raw bullmq celery)" >&2; exit 2 ;; esac
done
for p in $W4_PEERS; do
  case $p in sqlite|postgres) ;; *) echo "bench: unknown W4 peer '$p' (known: sqlite postgres)" >&2; exit 2 ;; esac
done
for w in $W; do
  case $w in W1|W2|W3|W4|W5) ;; *) echo "bench: unknown workload '$w' in W (known: W1 W2 W3 W4 W5)" >&2; exit 2 ;; esac
done
wants() { case " $W " in *" $1 "*) return 0 ;; esac; return 1; }

RUN=$ROOT/bench/.run
mkdir -p "$RUN"
if [ "$QUICK" != 0 ]; then OUTDIR=$RUN/results; else OUTDIR=$ROOT/bench/results; fi
mkdir -p "$OUTDIR"
OUT=$OUTDIR/$(date -u +%Y-%m-%dT%H%M%SZ)-$(echo "$W" | tr " " "+").txt  # runs never overwrite each other
LINES=$RUN/lines.txt
: > "$LINES"
FAILED=$RUN/failed.txt
: > "$FAILED"

# step NAME COMMAND...: run one script; its result lines are kept, a failure is noted and the rest goes on
step() {
  local name=$1 s rc=0; shift
  s=$(date +%s)
  "$@" | tee -a "$LINES" || rc=$?
  if [ "$rc" = 0 ]; then
    echo "# $name took $(( $(date +%s) - s )) s" >&2
  else
    echo "# $name FAILED (exit $rc) after $(( $(date +%s) - s )) s" >&2
    echo "$name" >> "$FAILED"
  fi
}

build() {
  local targets=()
  wants W1 && targets+=(bench_w1_dag)
  wants W2 && targets+=(flow)
  wants W4 && targets+=(bench_w4_durable)
  wants W3 && targets+=(bench_w3_remote flow)
  wants W5 && targets+=(bench_w5_scale flow)
  [ ${#targets[@]} -gt 0 ] || return 0
  if [ "${NO_BUILD:-0}" != 0 ]; then
    echo "# NO_BUILD=1: using $BUILD as it is" >&2
    return 0
  fi
  : > "$RUN/build.log"
  if ! [ -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >> "$RUN/build.log" 2>&1 ||
      { cat "$RUN/build.log" >&2; return 1; }
  fi
  cmake --build "$BUILD" -j "$(nproc)" --target "${targets[@]}" >> "$RUN/build.log" 2>&1 ||
    { tail -40 "$RUN/build.log" >&2; return 1; }
  local type
  type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
  echo "# libflow built in $BUILD, CMAKE_BUILD_TYPE=${type:-(none)}, $(cc --version | head -1)" >&2
  case $type in Release|RelWithDebInfo) ;;
    *) echo "# WARNING: $BUILD is not an optimised build: libflow's figures mean little" >&2 ;;
  esac
}

install_peers() {  # quietly, so that the peers' scripts find everything installed
  local debs=()
  [ -n "$W1_PEERS" ] && wants W1 && debs+=(g++ libtbb-dev python3-dask)
  wants W2 && debs+=(hyperfine)
  [ -n "$W2_PEERS" ] && wants W2 && debs+=(gcc ninja-build make findutils parallel)
  # the W4 peer script builds both of its harnesses whichever peers run, so it needs all four
  [ -n "$W4_PEERS" ] && wants W4 && debs+=(gcc libsqlite3-dev postgresql-15 libpq-dev)
  [ ${#debs[@]} -gt 0 ] || return 0
  ensure_debs "${debs[@]}" 2> "$RUN/install.log" || { cat "$RUN/install.log" >&2; return 1; }
}

# The ratios libflow / peer of per_task_us for every pair measured (below 1: libflow is faster), with
# the targets of issue #10: W1 at most oneTBB's time on every shape; W2 at most make -j2 and within 1.1x
# of the raw posix_spawn loop; W1b at most 300 bytes per task; W4 (for both durable stores) at least
# 100,000 tasks/s on the 10,000-task fan-out at the normal level and 8,000 at strict, a 100,000-task
# journal resumed in under 0.25 s; and W4's durable tasks/s next to the peers' raw SQLite commits/s and
# rows/s. W5 (no peer): per task at 1,000,000 tasks within 2x of 100,000, at most 300 resident bytes per
# task, a 100,000-task file validated and loaded in under 1 s, a 1,000,000-task journal resumed to new
# work in under 3 s, 10,000 concurrent runs completed with the heap back where it was and the peak no
# higher round after round.
ratios() {
  awk -v strict="${STRICT:-0}" -v selected=" $W " '
  function target(w, e, p, lim) {
    nt++; tw[nt] = w; te[nt] = e; tp[nt] = p; tl[nt] = lim; tgt[w, e, p] = lim
  }
  BEGIN {
    target("W1a-chain", "libflow", "tbb-flow-graph", 1)
    target("W1b-fan", "libflow", "tbb-flow-graph", 1)
    target("W1c-layered", "libflow", "tbb-flow-graph", 1)
    target("W2a-indep", "libflow", "make", 1)
    target("W2a-indep", "libflow", "raw-posix_spawn", 1.1)
    target("W2b-chain", "libflow", "make", 1)
    target("W2b-chain", "libflow", "raw-posix_spawn", 1.1)
    engines[1] = "libflow"; engines[2] = "libflow-shell"
    fmt = "%-12s %-14s %-18s %15s %11s %11s %8s %7s %s\n"
  }
  /^W[0-9]/ {
    w = $1; p = $2
    for (i = 3; i <= NF; i++) { eq = index($i, "="); if (eq) v[w, p, substr($i, 1, eq - 1)] = substr($i, eq + 1) }
    if (!(w in seen)) { seen[w] = 1; ws[++nw] = w }
    if (!((w, p) in has)) { has[w, p] = 1; np[w]++; ps[w, np[w]] = p }
  }
  function verdict(r, lim) {
    if (r <= lim) { pass++; return "PASS" }
    miss++; return "MISS"
  }
  function row(w, e, p,   a, b, r, lim, tg, res) {
    a = v[w, e, "per_task_us"]; b = v[w, p, "per_task_us"]
    r = (b > 0) ? a / b : 0
    tg = ""; res = ""
    if ((w, e, p) in tgt) {
      lim = tgt[w, e, p]; tg = "<=" lim "x"; res = verdict(r, lim); done[w, e, p] = 1
    }
    printf fmt, w, e, p, v[w, e, "N"] "/" v[w, p, "N"], sprintf("%.3f", a), sprintf("%.3f", b),
      sprintf("%.2fx", r), tg, res
  }
  # W4: durable tasks per second against an absolute target (N must be the one of the target: 10,000 / 100,000)
  function w4row(w, e, n_tgt, lim, kind,   t, secs, rec, tg, res) {
    if (kind == "min") tg = ">= " lim " tasks/s"; else if (kind == "max") tg = "< " lim " s"; else tg = lim
    if (!((w, e) in has)) {
      if (kind == "") return
      na++; printf fmt4, w, e, "-", "-", "-", "-", tg, "n/a (no result)"; return
    }
    t = v[w, e, "tasks_per_s"]; secs = v[w, e, "wall_s"]
    rec = ((w, e, "records_per_s") in v) ? v[w, e, "records_per_s"] : "-"
    res = ""
    if (kind != "" && v[w, e, "N"] != n_tgt) { na++; res = "n/a (the target is for N=" n_tgt ")" }
    else if (kind == "min") res = verdict(-t, -lim)
    else if (kind == "max") { if (secs < lim) { pass++; res = "PASS" } else { miss++; res = "MISS" } }
    printf fmt4, w, e, v[w, e, "N"], secs, t, rec, tg, res
  }
  # W3: a value of one line against a target: ">= Kx PEER" (throughput over a peer), ">= N", "<= N us"
  function w3row(w, e, key, tg,   x, p50, res, k, peer, b) {
    if (!((w, e) in has)) {
      if (tg != "") { na++; printf fmt3, w, e, "-", "-", "-", tg, "n/a (no result)" }
      return
    }
    x = v[w, e, key]; p50 = ((w, e, "lat_p50_us") in v) ? v[w, e, "lat_p50_us"] : "-"
    res = ""
    if (tg ~ /^>= [0-9.]+x /) {
      k = substr(tg, 4) + 0; peer = substr(tg, index(tg, "x ") + 2)
      if (!((w, peer) in has)) { na++; res = "n/a (no " peer ")" }
      else { b = v[w, peer, key]; res = sprintf("%.2fx ", x / b); if (x >= k * b) { pass++; res = res "PASS" } else { miss++; res = res "MISS" } }
    } else if (tg ~ /^>= /) { if (x >= substr(tg, 4) + 0) { pass++; res = "PASS" } else { miss++; res = "MISS" } }
    else if (tg ~ /^<= /) { if (x <= substr(tg, 4) + 0) { pass++; res = "PASS" } else { miss++; res = "MISS" } }
    printf fmt3, w, e, v[w, e, "N"], v[w, e, "tasks_per_s"], p50, tg, res
  }
  # cmp ENGINE PEER_WORKLOAD PEER WHAT: libflow tasks/s over the peer rows/s (above 1x: libflow does more)
  function cmp(e, pw, p, what, must,   a, b, r) {
    if (!(("W4-fan", e) in has) || !((pw, p) in has)) {
      if (must) printf "  %-22s %-60s %s\n", e, what, "n/a (no result" (((pw, p) in has) ? "" : ": no " pw " " p " line") ")"
      return
    }
    a = v["W4-fan", e, "tasks_per_s"]; b = v[pw, p, "tasks_per_s"]
    r = sprintf("%.2fx", a / b)
    if (("W4-fan", e, "records_per_s") in v && pw ~ /100rows/)
      r = r sprintf("   (records/s %d: %.2fx)", v["W4-fan", e, "records_per_s"], v["W4-fan", e, "records_per_s"] / b)
    printf "  %-22s %-60s %8d / %-8d %s\n", e, what, a, b, r
  }
  # W5a: per task at N (1,000,000) over per task at the base N (100,000), both from this go
  function w5ratio(w,   a, b, r, res) {
    if (!((w, "libflow") in has) || !((w "-base", "libflow") in has)) {
      na++; printf fmt5, w, "per task at N / per task at the base N", "-", "<= 2x", "n/a (no result)"; return
    }
    a = v[w, "libflow", "per_task_us"] + 0; b = v[w "-base", "libflow", "per_task_us"] + 0
    r = (b > 0) ? a / b : 0
    if (v[w, "libflow", "N"] + 0 < 1000000 || v[w "-base", "libflow", "N"] + 0 < 100000) {
      na++; res = "n/a (the target is for 1,000,000 / 100,000)"
    } else res = verdict(r, 2)
    printf fmt5, w, sprintf("per task, N=%d / N=%d (%.3f / %.3f us)", v[w, "libflow", "N"],
      v[w "-base", "libflow", "N"], a, b), sprintf("%.2fx", r), "<= 2x", res
  }
  function w5mem(w,   b, res) {
    if (!((w, "libflow") in has)) { na++; printf fmt5, w, "resident bytes per task", "-", "<= 300", "n/a (no result)"; return }
    b = v[w, "libflow", "bytes_per_task"] + 0
    if (v[w, "libflow", "N"] + 0 < 1000000) { na++; res = "n/a (the target is for 1,000,000)" }
    else res = verdict(b, 300)
    printf fmt5, w, sprintf("resident bytes per task (flow alone %s), N=%d", v[w, "libflow", "flow_bytes_per_task"],
      v[w, "libflow", "N"]), sprintf("%.0f", b), "<= 300", res
  }
  # w5secs WORKLOAD ENGINE KEY WHAT N_TARGET LIMIT: seconds under LIMIT ("": shown, no target)
  function w5secs(w, e, key, what, n_tgt, lim,   secs, res, tg) {
    tg = (lim == "") ? "" : "< " lim " s"
    if (!((w, e) in has)) { if (lim != "") na++; printf fmt5, w, what, "-", tg, (lim == "") ? "" : "n/a (no result)"; return }
    secs = v[w, e, key] + 0; res = ""
    if (lim != "") {
      if (v[w, e, "N"] + 0 != n_tgt) { na++; res = "n/a (the target is for N=" n_tgt ")" }
      else if (secs < lim + 0) { pass++; res = "PASS" } else { miss++; res = "MISS" }
    }
    printf fmt5, w, what ", N=" v[w, e, "N"], sprintf("%.3f s", secs), tg, res
  }
  # W5d: every run completed (the harness stops otherwise), the heap back within 1 MiB of where it was after
  # every round, and the last round peaking at most 1.5x the first (what is freed is used again)
  function w5runs(   w, ok, res, left, first, last) {
    w = "W5d-runs"
    if (!((w, "libflow") in has)) { na++; printf fmt5, w, "runs completed, memory bounded", "-", "see README", "n/a (no result)"; return }
    left = v[w, "libflow", "heap_left_kb_max"] + 0; first = v[w, "libflow", "peak_rss_kb_first"] + 0
    last = v[w, "libflow", "peak_rss_kb_last"] + 0
    printf fmt5, w, sprintf("%d runs of 3 tasks at once: all done in (median)", v[w, "libflow", "concurrent"]),
      sprintf("%.3f s", v[w, "libflow", "wall_s"]), "", ""
    printf fmt5, "", "peak resident bytes per run (first round)", v[w, "libflow", "peak_bytes_per_run"], "", ""
    printf fmt5, "", sprintf("RSS before / peak first / peak last round, MB"),
      sprintf("%.0f/%.0f/%.0f", v[w, "libflow", "rss_before_kb"] / 1024, first / 1024, last / 1024), "", ""
    printf fmt5, "", "RSS after freeing / after malloc_trim, MB", sprintf("%.0f/%.0f",
      v[w, "libflow", "rss_freed_kb"] / 1024, v[w, "libflow", "rss_trimmed_kb"] / 1024), "", ""
    ok = (left <= 1024 && last <= 1.5 * first)
    if (v[w, "libflow", "concurrent"] + 0 != 10000) { na++; res = "n/a (the target is for 10,000)" }
    else if (ok) { pass++; res = "PASS" } else { miss++; res = "MISS" }
    printf fmt5, "", "heap left after freeing (KiB, worst round)", left, "<= 1024, peak", res
  }
  END {
    print ""
    if (index(selected, " W1 ") || index(selected, " W2 ")) {
      print "== libflow / peer, per_task_us (median wall / N); below 1x: libflow is faster =="
      printf fmt, "workload", "engine", "peer", "N libflow/peer", "libflow_us", "peer_us", "ratio", "target", "result"
      for (i = 1; i <= nw; i++) {
        w = ws[i]
        if (w ~ /-mem$/) continue
        for (j = 1; j <= 2; j++) {
          e = engines[j]
          if (!((w, e) in has)) continue
          for (k = 1; k <= np[w]; k++) {
            p = ps[w, k]
            if (p ~ /^libflow/) continue
            if (e == "libflow-shell" && p != "ninja") continue   # both start each task through /bin/sh
            row(w, e, p)
          }
        }
      }
      if (("W2a-indep", "libflow") in has) {
        base = v["W2a-indep", "libflow", "per_task_us"]
        for (j = 1; j <= 2; j++) {
          e = j == 1 ? "libflow-conc" : "libflow-rate"
          if (!(("W2a-indep", e) in has) || base <= 0) continue
          printf "  limits (issue #13): W2a-indep %s %.1f us/task vs libflow %.1f us/task: %+.1f%%\n",
            e, v["W2a-indep", e, "per_task_us"], base, 100 * (v["W2a-indep", e, "per_task_us"] / base - 1)
        }
      }
      for (t = 1; t <= nt; t++) {
        if ((tw[t], te[t], tp[t]) in done) continue
        if (index(selected, " " substr(tw[t], 1, 2) " ") == 0) continue   # workload not run (W=...)
        na++
        printf fmt, tw[t], te[t], tp[t], "-", "-", "-", "-", "<=" tl[t] "x", "n/a (no result)"
      }
      print ""
    }
    if (index(selected, " W1 ")) {
      print "== memory =="
      if (("W1b-mem", "libflow") in has) {
        b = v["W1b-mem", "libflow", "bytes_per_task"] + 0   # a number, not a string: "1292" < 500
        printf "W1b-mem      libflow        %.0f bytes/task resident (fan, N=%s)  target <= 300  %s\n", b,
          v["W1b-mem", "libflow", "N"], (b <= 300) ? "PASS" : "MISS"
        if (b <= 300) pass++; else miss++
      } else {
        na++; print "W1b-mem      libflow        -  target <= 300  n/a (no result)"
      }
      print ""
    }
    if (index(selected, " W3 ")) {
      print "== W3: no-op jobs on 2 worker processes through a local Redis (tasks_per_s = N / median drain) =="
      fmt3 = "%-11s %-30s %7s %11s %12s %-26s %s\n"
      printf fmt3, "workload", "engine", "N", "tasks/s", "p50_us", "target", "result"
      w3row("W3-drain", "libflow-c-2proc-c8", "tasks_per_s", ">= 3x bullmq-2proc-c8")
      w3row("W3-drain", "libflow-c-2proc-c8", "tasks_per_s", ">= 30000")
      w3row("W3-drain", "libflow-c-2proc-c32", "tasks_per_s", ">= 3x bullmq-2proc-c8")
      w3row("W3-drain", "libflow-c-2proc-c32", "tasks_per_s", ">= 30000")
      w3row("W3-drain", "bullmq-2proc-c8", "tasks_per_s", "")
      w3row("W3-drain", "bullmq-2proc-c1", "tasks_per_s", "")
      w3row("W3-drain", "raw-hiredis-stream-count1", "tasks_per_s", "")
      w3row("W3-drain", "raw-hiredis-stream-count50", "tasks_per_s", "")
      w3row("W3-drain", "celery-prefork2-backend_none", "tasks_per_s", "")
      w3row("W3-latency", "libflow-c-2proc", "lat_p50_us", "<= 200 us")
      w3row("W3-latency", "raw-hiredis-stream-count1", "lat_p50_us", "")
      w3row("W3-latency", "bullmq-2proc-c1", "lat_p50_us", "")
      w3row("W3-latency", "celery-prefork2-backend_none", "lat_p50_us", "")
      w3row("W3-cmd", "libflow-flow-worker-2proc", "tasks_per_s", "")
      if (("W3-cmd", "libflow-flow-worker-2proc") in has && ("W2a-indep", "libflow") in has)
        printf "  command tasks on 2 flow workers: %.0f tasks/s (N=%d); W2 locally, -j2: %.0f tasks/s (N=%d)\n",
          v["W3-cmd", "libflow-flow-worker-2proc", "tasks_per_s"], v["W3-cmd", "libflow-flow-worker-2proc", "N"],
          v["W2a-indep", "libflow", "tasks_per_s"], v["W2a-indep", "libflow", "N"]
      print ""
    }
    if (index(selected, " W4 ")) {
      print "== W4: durable no-op C tasks (fan-out, 2 threads) and resume; tasks_per_s = N / median wall =="
      fmt4 = "%-10s %-22s %7s %9s %9s %10s %-18s %s\n"
      printf fmt4, "workload", "engine", "N", "wall_s", "tasks/s", "records/s", "target", "result"
      w4row("W4-fan", "libflow-sqlite-normal", 10000, 100000, "min")
      w4row("W4-fan", "libflow-sqlite-strict", 10000, 8000, "min")
      w4row("W4-fan", "libflow-disk-normal", 10000, 100000, "min")
      w4row("W4-fan", "libflow-disk-strict", 10000, 8000, "min")
      w4row("W4-fan", "libflow-memory", 0, "(no store)", "")
      w4row("W4-resume", "libflow-sqlite", 100000, 0.25, "max")
      w4row("W4-resume", "libflow-disk", 100000, 0.25, "max")
      print "-- libflow durable tasks/s / the raw rows/s of ../shared/bench/w4_journal in this go (200-byte rows,"
      print "   one connection); above 1x: libflow completes more tasks per second than the database commits rows --"
      cmp("libflow-sqlite-normal", "W4-1row-tx", "sqlite-wal-sync_normal", "vs single-row commits/s, SQLite WAL synchronous=NORMAL", 1)
      cmp("libflow-sqlite-strict", "W4-1row-tx", "sqlite-wal-sync_full", "vs single-row commits/s, SQLite WAL synchronous=FULL", 1)
      cmp("libflow-sqlite-normal", "W4-100rows-tx", "sqlite-wal-sync_normal", "vs rows/s in batches of 100, SQLite synchronous=NORMAL", 1)
      cmp("libflow-sqlite-strict", "W4-100rows-tx", "sqlite-wal-sync_full", "vs rows/s in batches of 100, SQLite synchronous=FULL", 1)
      cmp("libflow-sqlite-normal", "W4-1row-tx", "postgres-sync_commit_off", "vs single-row commits/s, PostgreSQL synchronous_commit=off", 0)
      cmp("libflow-sqlite-strict", "W4-1row-tx", "postgres-sync_commit_on", "vs single-row commits/s, PostgreSQL synchronous_commit=on", 0)
      cmp("libflow-sqlite-strict", "W4-100rows-tx", "postgres-sync_commit_on", "vs rows/s in batches of 100, PostgreSQL synchronous_commit=on", 0)
      cmp("libflow-sqlite-normal", "W4-fan", "libflow-memory", "vs the same fan-out with no store (libflow-memory)", 0)
      print ""
    }
    if (index(selected, " W5 ")) {
      print "== W5: scale (libflow against its own 100,000-task case and the limits of the issue; no peer) =="
      fmt5 = "%-16s %-58s %12s %-14s %s\n"
      printf fmt5, "workload", "measure", "value", "target", "result"
      w5ratio("W5a-fan"); w5ratio("W5a-layered")
      w5mem("W5a-fan-mem"); w5mem("W5a-layered-mem")
      w5secs("W5b-yaml", "libflow", "wall_s", "flow validate FILE, whole process (median)", 100000, 1)
      w5secs("W5b-yaml", "libflow", "load_s", "flow_load_file from C (median)", 100000, 1)
      w5secs("W5b-json", "libflow", "wall_s", "flow validate FILE, whole process (median)", 100000, 1)
      w5secs("W5b-json", "libflow", "load_s", "flow_load_file from C (median)", 100000, 1)
      w5secs("W5c-resume", "libflow-sqlite", "wall_s", "flow_run_resume to the first new task (median)", 1000000, 3)
      w5secs("W5c-resume", "libflow-sqlite", "total_s", "flow_run_resume to the end (median)", 1000000, "")
      w5secs("W5c-resume-kill", "libflow-sqlite", "wall_s", "after a SIGKILL near the end: to the first new task", 1000000, 3)
      w5runs()
      print ""
    }
    printf "targets: %d PASS, %d MISS, %d n/a\n", pass, miss, na
    exit (strict != 0 && miss > 0) ? 1 : 0
  }' "$LINES"
}

revision() {  # read-only: no index refresh (--no-optional-locks)
  local rev
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || { echo "(no git)"; return; }
  git -C "$ROOT" --no-optional-locks diff --quiet HEAD -- 2>/dev/null || rev="$rev+changes"
  echo "$rev"
}

main() {
  echo "# $(date -u '+%F %T UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))," \
       "$(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r), Debian $(cat /etc/debian_version)," \
       "load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# libflow $(revision), W=$W, PEERS=$PEERS, W4_PEERS=$W4_PEERS, THREADS=$THREADS REPS=$REPS RUNS=$RUNS" \
       "W4_RUNS=$W4_RUNS QUICK=$QUICK"
  wants W5 && echo "# W5: W5_N=${W5_N:-1000000} W5_BASE_N=${W5_BASE_N:-100000} W5_FILE_N=${W5_FILE_N:-100000}" \
       "W5_RESUME_N=${W5_RESUME_N:-1000000} W5_RUNS_K=${W5_RUNS_K:-10000}"
  local have_lib=1
  build || { echo "# libflow build FAILED: only the peers run" >&2; echo build >> "$FAILED"; have_lib=0; }
  install_peers || { echo install >> "$FAILED"; return 1; }
  if wants W1; then
    [ -n "$W1_PEERS" ] && step "peers W1 ($W1_PEERS )" env PEERS="$W1_PEERS" bash "$SHARED/bench/w1_dag/run.sh"
    [ "$have_lib" = 1 ] && step "libflow W1" bash "$ROOT/bench/w1.sh"
  fi
  if wants W2; then
    [ -n "$W2_PEERS" ] && step "peers W2 ($W2_PEERS )" env PEERS="$W2_PEERS" bash "$SHARED/bench/w2_cmds/run.sh"
    [ "$have_lib" = 1 ] && step "libflow W2" bash "$ROOT/bench/w2.sh"
  fi
  if wants W3; then  # the peers' script installs redis-server, Celery and BullMQ (npm) itself
    [ -n "$W3_PEERS" ] && step "peers W3 ($W3_PEERS )" env PEERS="$W3_PEERS" bash "$SHARED/bench/w3_queue/run.sh"
    [ "$have_lib" = 1 ] && step "libflow W3" bash "$ROOT/bench/w3.sh"
  fi
  if wants W4; then
    [ -n "$W4_PEERS" ] &&
      step "peers W4 ($W4_PEERS)" env PEERS="$W4_PEERS" RUNS="$W4_RUNS" bash "$SHARED/bench/w4_journal/run.sh"
    [ "$have_lib" = 1 ] && step "libflow W4" bash "$ROOT/bench/w4.sh"
  fi
  if wants W5; then   # no peer: libflow against its own smaller case and the issue's limits
    [ "$have_lib" = 1 ] && step "libflow W5" bash "$ROOT/bench/w5.sh"
  fi
  local rc=0
  ratios || rc=$?
  if [ -s "$FAILED" ]; then
    echo "# FAILED: $(paste -sd, "$FAILED")" >&2
    rc=1
  fi
  return "$rc"
}

set +e
main 2>&1 | tee "$OUT"
rc=${PIPESTATUS[0]}
echo "# saved to ${OUT#"$ROOT"/}" >&2
exit "$rc"
