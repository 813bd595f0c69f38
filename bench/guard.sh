#!/usr/bin/env bash
# bench/guard.sh -- the performance regression guard of `make test` (bench/README.md, "Instruction
# budgets"): instructions per task, counted by valgrind's callgrind, against the budgets in bench/budgets.
# Instruction counts do not drift with the machine's load the way times do, so the guard can be strict.
#
# Shapes (engine with 1 worker thread; the harnesses make their graphs themselves, ../shared is not needed):
#   w1-chain       w1_dag --count chain:CHAIN_N           (W1a: each task after the one before)
#   w1-fan         w1_dag --count fan:FAN_N               (W1b: 1 -> FAN_N -> 1)
#   w1-layered     w1_dag --count layered:LAYERED         (W1c: layers, 2 predecessors each, seed 42)
#   w4-fan-sqlite  w4_durable --count fan sqlite:... W4_N (W4: source -> W4_N -> sink, journaled to a new
#                  SQLite store at the normal level)
# Each harness runs 1 untimed warm-up and REPS repetitions under
# `valgrind --tool=callgrind --instr-atstart=no`, with the instrumentation switched on only around what the
# benchmark times (W1: build + execute; W4: flow_run_start .. flow_run_wait), so reading or making the graph,
# starting the engine, opening the store, the checks and freeing are left out. A shape's figure is
# callgrind's total / (tasks x REPS), the median of RUNS such processes.
#
# usage: bench/guard.sh [--update] [--budgets FILE] [--shapes "NAME..."] [--counts FILE] [--save FILE]
#                       [--report FILE]
#   (no option)     measure every shape and check it against bench/budgets: exit 1 when one is more than
#                   10% over its budget; a note (exit 0) when one is more than 10% under it
#   --update        measure and rewrite the budgets file (`make budgets`); shapes not measured keep theirs
#   --budgets FILE  another budgets file (default bench/budgets)
#   --shapes LIST   only these shapes
#   --save FILE     also write the measured counts there ("NAME COUNT" lines)
#   --counts FILE   take the counts from FILE (a --save) instead of measuring
#   --report FILE   also write the verdicts there (ctest hides a passing test's output: make test-fast
#                   prints this file, so that a note to lower a budget is seen)
# Env: BUILD (build: a RelWithDebInfo build without sanitizers), RUNS (3), VALGRIND (valgrind).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}; case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
RUNS=${RUNS:-3}
VALGRIND=${VALGRIND:-valgrind}
TOLERANCE=10  # percent, both ways

# Sizes: small enough for the whole guard to take well under 90 s on 2 cores, large enough that
# run-to-run spread stays a few percent (bench/README.md has the measured spread). Changing one
# changes the figures: run --update with it.
ALL_SHAPES="w1-chain w1-fan w1-layered w4-fan-sqlite"
CHAIN_N=5000
FAN_N=5000
LAYERED=50x100:42
W4_N=1000
REPS=3

report=""
# say LINE: a verdict, on stdout and in the --report file.
say() {
  echo "$*"
  [ -z "$report" ] || echo "$*" >> "$report"
}
die() {
  echo "perf guard: $*" >&2
  [ -z "$report" ] || echo "perf guard: $*" >> "$report"
  exit 1
}

usage() { sed -n '/^# usage:/,/^# Env:/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

mode=check budgets=$ROOT/bench/budgets shapes=$ALL_SHAPES counts_in="" save=""
while [ $# -gt 0 ]; do
  case $1 in
    --update) mode=update ;;
    --budgets|--shapes|--counts|--save|--report)
      [ $# -ge 2 ] || { usage >&2; exit 2; }
      case $1 in
        --budgets) budgets=$2 ;; --shapes) shapes=$2 ;; --counts) counts_in=$2 ;; --save) save=$2 ;;
        --report) report=$2; : > "$report" ;;
      esac
      shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
for s in $shapes; do
  case " $ALL_SHAPES " in *" $s "*) ;; *) die "unknown shape '$s' (known: $ALL_SHAPES)" ;; esac
done

[ "$mode" = update ] || [ -r "$budgets" ] || die "cannot read budgets file '$budgets' (make budgets writes it)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/flow-guard.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# The command line of the harness for one shape, one word a line.
harness() {
  case $1 in
    w1-chain) printf '%s\n' "$BUILD/bench/w1_dag" --count "chain:$CHAIN_N" 1 "$REPS" ;;
    w1-fan) printf '%s\n' "$BUILD/bench/w1_dag" --count "fan:$FAN_N" 1 "$REPS" ;;
    w1-layered) printf '%s\n' "$BUILD/bench/w1_dag" --count "layered:$LAYERED" 1 "$REPS" ;;
    # A new store every time: what SQLite spends per record depends on what the store holds.
    w4-fan-sqlite) printf '%s\n' "$BUILD/bench/w4_durable" --count fan "sqlite:$TMP/store/flow.db" \
                     "$W4_N" "$REPS" normal 1 ;;
  esac
}

# count_once SHAPE: instructions per task in one process under callgrind.
count_once() {
  local cmd totals tasks reps
  mapfile -t cmd < <(harness "$1")
  rm -rf "$TMP/store" "$TMP/cg.out"
  if ! "$VALGRIND" --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/cg.out" "${cmd[@]}" \
      > "$TMP/out" 2> "$TMP/err"; then
    cat "$TMP/err" >&2
    die "$1: the harness failed under callgrind: ${cmd[*]}"
  fi
  totals=$(awk '$1 == "totals:" { print $2 }' "$TMP/cg.out")
  tasks=$(sed -n 's/.*tasks=\([0-9]*\).*/\1/p' "$TMP/out")
  reps=$(sed -n 's/.*reps=\([0-9]*\).*/\1/p' "$TMP/out")
  if [ -z "$totals" ] || [ "$totals" = 0 ] || [ -z "$tasks" ] || [ -z "$reps" ]; then
    cat "$TMP/err" >&2
    die "$1: no count from ${cmd[*]} (callgrind total '${totals}', harness said '$(cat "$TMP/out")')"
  fi
  awk -v t="$totals" -v n="$tasks" -v r="$reps" 'BEGIN { printf "%.0f\n", t / (n * r) }'
}

# measure SHAPE: "SHAPE COUNT", the median of RUNS processes; the runs and their spread on stderr.
measure() {
  local i counts=""
  for ((i = 0; i < RUNS; i++)); do
    counts="$counts $(count_once "$1")"
  done
  # shellcheck disable=SC2086  # one count a word
  printf '%s\n' $counts | sort -n | awk -v s="$1" '
    { c[NR] = $1; all = all " " $1 }
    END {
      m = c[int((NR + 1) / 2)]
      printf "# perf guard: %s:%s (median %d, spread %.2f%%)\n", s, all, m, (c[NR] - c[1]) * 100 / m > "/dev/stderr"
      print s, m
    }'
}

if [ -n "$counts_in" ]; then
  [ -r "$counts_in" ] || die "cannot read counts file '$counts_in'"
  awk -v want=" $shapes " 'index(want, " " $1 " ") && NF == 2' "$counts_in" > "$TMP/counts"
else
  command -v "$VALGRIND" > /dev/null ||
    die "valgrind not found ('$VALGRIND'): the guard counts instructions with callgrind; install it" \
        "(scripts/setup.sh does, as make test runs it). The guard never skips."
  cache=$BUILD/CMakeCache.txt
  [ -r "$cache" ] || die "no build at $BUILD (configure and build it first, or set BUILD)"
  if ! grep -qx 'CMAKE_BUILD_TYPE:STRING=RelWithDebInfo' "$cache" ||
      grep -q '^FLOW_SANITIZE:STRING=.' "$cache"; then
    die "$BUILD is not a RelWithDebInfo build without sanitizers: the budgets are for that build"
  fi
  for s in $shapes; do
    bin=$(harness "$s" | head -1)
    [ -x "$bin" ] || die "$bin is missing: build first (cmake --build $BUILD)"
  done
  start=$SECONDS
  for s in $shapes; do measure "$s"; done > "$TMP/counts"
  echo "# perf guard: measured in $((SECONDS - start)) s ($RUNS runs a shape)" >&2
fi
[ -z "$save" ] || cp "$TMP/counts" "$save"
for s in $shapes; do
  grep -q "^$s " "$TMP/counts" || die "no count for shape '$s'"
done

if [ "$mode" = update ]; then
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  changed=$(git -C "$ROOT" status --porcelain -- src include CMakeLists.txt 'bench/*.[ch]' 2>/dev/null || true)
  [ -z "$changed" ] || rev="$rev+changes"
  cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null | head -1)
  how="$(date -u +%Y-%m-%d), libflow $rev, $("${cc:-cc}" --version 2>/dev/null | head -1),"
  how="$how $("$VALGRIND" --version 2>/dev/null || echo valgrind), median of $RUNS runs of $REPS reps"
  {
    echo "# Instructions per task that bench/guard.sh allows (make test fails at more than $TOLERANCE% over):"
    echo "# callgrind counts of what the benchmarks time, engine with 1 worker thread, RelWithDebInfo build."
    echo "# Rewritten by \`make budgets\`; a higher budget is justified in its commit (bench/README.md)."
    for s in $ALL_SHAPES; do
      if grep -q "^$s " "$TMP/counts"; then
        echo "# $s: $(harness "$s" | sed -e 1s,.*/,, -e "s,$TMP/store,NEW," | tr '\n' ' ')-- $how"
        grep "^$s " "$TMP/counts"
      elif [ -r "$budgets" ] && grep -q "^$s " "$budgets"; then
        grep "^# $s: " "$budgets" || true
        grep "^$s " "$budgets"
      fi
    done
  } > "$TMP/budgets"
  cp "$TMP/budgets" "$budgets"
  echo "perf guard: wrote $budgets:" >&2
  grep -v '^#' "$budgets" >&2
  exit 0
fi

failed=0 checked=0
while read -r s count; do
  budget=$(awk -v s="$s" '$1 == s && NF == 2 && $2 ~ /^[1-9][0-9]*$/ { print $2 }' "$budgets")
  if [ -z "$budget" ]; then
    say "perf guard: FAIL $s: $count instructions per task, and no budget for it in $budgets" \
        "(make budgets)"
    failed=$((failed + 1))
    continue
  fi
  checked=$((checked + 1))
  verdict=$(awk -v c="$count" -v b="$budget" -v tol="$TOLERANCE" 'BEGIN {
    d = (c - b) * 100 / b
    if (d > -0.05 && d < 0.05) d = 0
    printf "%s %+.1f%%\n", (d > tol ? "over" : (d < -tol ? "under" : "ok")), d }')
  case $verdict in
    over*)
      say "perf guard: FAIL $s: $count instructions per task, budget $budget: ${verdict#over +} over" \
          "(more than $TOLERANCE%)"
      failed=$((failed + 1)) ;;
    under*)
      say "perf guard: note: $s: $count instructions per task, ${verdict#under -} under its budget" \
          "$budget: lower the budget (make budgets) and commit bench/budgets" ;;
    *)
      say "perf guard: ok $s: $count instructions per task (budget $budget, ${verdict#ok })" ;;
  esac
done < "$TMP/counts"
if [ "$failed" -gt 0 ]; then
  say "perf guard: $failed shape(s) over budget or without one. A slowdown that is deliberate: run" \
      "make budgets and justify the new budget in the commit message (bench/README.md," \
      "\"Instruction budgets\"); otherwise find what costs more (callgrind_annotate)."
  exit 1
fi
say "perf guard: $checked shape(s) within $TOLERANCE% of their budgets"
