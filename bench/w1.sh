#!/usr/bin/env bash
# W1 for libflow: in-process DAG scheduling overhead with no-op C tasks, 2 threads, same graphs and
# rules as ../shared/bench/w1_dag (W1a chain 100,000; W1b fan 1 -> 100,000 -> 1; W1c layered 100 x 1,000).
# Per graph: one CHECK=1 validation run, then $BUILD/bench/w1_dag with 1 untimed warm-up + REPS timed
# repetitions of build + execute in one process (median). Then W1b-mem: one build + run of the fan graph in
# a fresh process, (peak RSS - RSS before building) / tasks, against the 300 bytes/task target.
# Env: BUILD (build), THREADS (2), REPS (11), CHAIN_N / FAN_N (100000), LAYERS (100), WIDTH (1000), SEED (42),
#      MEM (1; 0 skips W1b-mem), SHARED (the shared/ folder beside the repo)
# stdout: one result line per graph (peer name libflow) and the W1b-mem line; stderr: notes starting with '#'.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
[ -f "$SHARED/bench/common.sh" ] || { echo "w1.sh: no peer benchmarks at $SHARED/bench (set SHARED)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$SHARED/bench/common.sh"  # ensure_debs, stats, result, hyperfine_times, PY

BUILD=${BUILD:-build}; case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
THREADS=${THREADS:-2}; REPS=${REPS:-11}; MEM=${MEM:-1}
CHAIN_N=${CHAIN_N:-100000}; FAN_N=${FAN_N:-100000}; LAYERS=${LAYERS:-100}; WIDTH=${WIDTH:-1000}; SEED=${SEED:-42}
BIN=$BUILD/bench/w1_dag
R=$ROOT/bench/.run/w1
mkdir -p "$R"
[ -x "$BIN" ] || { echo "w1.sh: $BIN is missing: build first (cmake --build $BUILD)" >&2; exit 2; }

# The peers' graphs, written by their generator when missing (the peer script does the same).
D=$SHARED/bench/w1_dag/.run/dags
CHAIN=$D/chain_${CHAIN_N}.txt FAN=$D/fan_${FAN_N}.txt LAYERED=$D/layered_${LAYERS}x${WIDTH}_s${SEED}.txt
if ! [ -s "$CHAIN" ] || ! [ -s "$FAN" ] || ! [ -s "$LAYERED" ]; then
  mkdir -p "$D"
  "$PY" "$SHARED/bench/w1_dag/gen_dag.py" "$D" --chain "$CHAIN_N" --fan "$FAN_N" --layers "$LAYERS" \
    --width "$WIDTH" --seed "$SEED"
fi
# The README's sums for the default sizes: libflow must run the very graphs the peers ran.
if [ "$CHAIN_N.$FAN_N.$LAYERS.$WIDTH.$SEED" = 100000.100000.100.1000.42 ]; then
  (cd "$D" && sha256sum --quiet -c -) <<'EOF' || { echo "w1.sh: DAG files differ from the README's" >&2; exit 1; }
3cebb2e6b4e7d82a0222e0fc926e6c8bb1ea624f9fc08353227e70ec005d558d  chain_100000.txt
55f1bb44b4a9f203dd189b788df6c234ea027196fd56c02709b442d25752817a  fan_100000.txt
8ee81412078eb6b969b2eed9efdb2cbf99a08cf5efaff5e8ffdbb1d9d4b1e5a7  layered_100x1000_s42.txt
EOF
  echo "# libflow W1: DAG files match the README's sha256 sums" >&2
fi

median_of() {  # median_of KEY FILE: median of KEY=<number> over the lines of FILE
  grep -o "$1=[0-9.]*" "$2" | cut -d= -f2 | stats | awk '{printf "%.4f", $1}'
}

# report WORKLOAD N FILE: the result line from w1_dag's per-repetition lines
report() {
  local w=$1 n=$2 f=$3 peak
  peak=$(grep -o 'peak_rss_kb=[0-9]*' "$f" | cut -d= -f2)
  grep -o 'total_s=[0-9.]*' "$f" | cut -d= -f2 |
    result "$w" libflow "$n" threads="$THREADS" exec_s="$(median_of exec_s "$f")" \
      build_s="$(median_of build_s "$f")" peak_rss_mb="$(awk -v k="$peak" 'BEGIN{printf "%.1f", k/1024}')"
}

# Validation: every task ran once, and after all of its predecessors (untimed, one repetition).
for f in "$CHAIN" "$FAN" "$LAYERED"; do
  CHECK=1 "$BIN" "$f" "$THREADS" 1 > /dev/null 2> "$R/check.err" ||
    { cat "$R/check.err" >&2; echo "w1.sh: validation failed on $f" >&2; exit 1; }
done

ntasks() { sed -n 2p "$1" | cut -d' ' -f1; }
for shape in a b c; do
  case $shape in a) f=$CHAIN w=W1a-chain ;; b) f=$FAN w=W1b-fan ;; c) f=$LAYERED w=W1c-layered ;; esac
  out=$R/libflow.$shape.txt
  "$BIN" "$f" "$THREADS" "$REPS" > "$out" 2> "$R/libflow.err" ||
    { cat "$R/libflow.err" >&2; echo "w1.sh: $w failed" >&2; exit 1; }
  [ "$shape" = a ] && head -1 "$R/libflow.err" >&2
  report "$w" "$(ntasks "$f")" "$out"
done

# W1b-mem: resident memory per task of the fan graph, built and run once in a fresh process.
if [ "$MEM" != 0 ]; then
  "$BIN" --mem "$FAN" "$THREADS" > "$R/mem.txt" 2> "$R/mem.err" ||
    { cat "$R/mem.err" >&2; echo "w1.sh: W1b-mem failed" >&2; exit 1; }
  echo "W1b-mem libflow N=$(ntasks "$FAN") $(cut -d' ' -f1-3 "$R/mem.txt") target_bytes=300"
fi
