#!/usr/bin/env bash
# W2 for libflow: external command tasks, each runs the program /bin/true, at most 2 at once; same
# workloads and rules as ../shared/bench/w2_cmds.
#   W2a-indep: N_INDEP (10,000) independent tasks.   W2b-chain: N_CHAIN (2,000) tasks, c<i> after c<i-1>.
# Engines: libflow (`run: [/bin/true]`: started directly, no shell; compare with make, xargs, raw) and
#   libflow-shell (`shell: /bin/true`: through /bin/sh -c, like ninja); what limits cost (issue #13):
#   libflow-conc (each task also `concurrency: {limit: 2, key: w2}`: a slot of the store per start) and
#   libflow-rate (`rate_limit: {limit: 1000000/s, key: w2}`: starts recorded in the store's window, never throttled).
# Whole-process wall time of `flow run FILE --jobs 2 --quiet` by hyperfine -N, WARMUP untimed + RUNS timed,
# median. Each case runs in its own folder with flow's default store (sqlite:.flow/flow.db there), which is
# deleted before every run, as the peers' script deletes .ninja_log. One untimed run with --json first
# checks that the run and every one of its tasks completed.
# Env: BUILD (build), FLOW ($BUILD/flow), N_INDEP (10000), N_CHAIN (2000), RUNS (3), WARMUP (1),
#      VARIANTS ("run shell conc rate"), STORE (unset: flow's default; e.g. memory:), SHARED (shared/ beside the repo)
# usage: w2.sh                             the benchmark: one result line per workload and variant on stdout
#        w2.sh --gen DIR N_INDEP N_CHAIN   only write the workflow files, DIR/<indep|chain>_<run|shell>/flow.yaml
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# gen DIR N_INDEP N_CHAIN: the four workflow files (docs/file-format.md), one folder each.
gen() {
  local dir=$1 ni=$2 nc=$3 v body
  for v in run shell conc rate; do
    case $v in
      run) body='run: [/bin/true]' ;; shell) body='shell: /bin/true' ;;
      conc) body='run: [/bin/true], concurrency: {limit: 2, key: w2}' ;;
      rate) body='run: [/bin/true], rate_limit: {limit: 1000000/s, key: w2}' ;;
    esac
    mkdir -p "$dir/indep_$v" "$dir/chain_$v"
    awk -v n="$ni" -v body="$body" -v v="$v" 'BEGIN{
      print "name: w2_indep_" v; print "description: W2a, " n " independent /bin/true tasks"; print "tasks:"
      for (i = 1; i <= n; i++) print "  o" i ": {" body "}" }' > "$dir/indep_$v/flow.yaml"
    awk -v n="$nc" -v body="$body" -v v="$v" 'BEGIN{
      print "name: w2_chain_" v; print "description: W2b, a chain of " n " /bin/true tasks"; print "tasks:"
      print "  c1: {" body "}"
      for (i = 2; i <= n; i++) print "  c" i ": {" body ", after: c" i - 1 "}" }' > "$dir/chain_$v/flow.yaml"
  done
}

if [ "${1:-}" = --gen ]; then
  [ $# = 4 ] || { echo "usage: w2.sh --gen DIR N_INDEP N_CHAIN" >&2; exit 2; }
  gen "$2" "$3" "$4"
  exit 0
fi

SHARED=${SHARED:-$ROOT/../shared}
[ -f "$SHARED/bench/common.sh" ] || { echo "w2.sh: no peer benchmarks at $SHARED/bench (set SHARED)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$SHARED/bench/common.sh"  # ensure_debs, stats, result, hyperfine_times, PY

BUILD=${BUILD:-build}; case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
FLOW=${FLOW:-$BUILD/flow}
N_INDEP=${N_INDEP:-10000}; N_CHAIN=${N_CHAIN:-2000}; RUNS=${RUNS:-3}; WARMUP=${WARMUP:-1}
VARIANTS=${VARIANTS:-"run shell conc rate"}; STORE=${STORE:-}
[ -x "$FLOW" ] || { echo "w2.sh: $FLOW is missing: build first (cmake --build $BUILD)" >&2; exit 2; }
case "$ROOT$FLOW" in *' '*) echo "w2.sh: paths with blanks are not supported (hyperfine -N splits)" >&2; exit 2 ;; esac

ensure_debs hyperfine
R=$ROOT/bench/.run/w2
IN=$R/in_${N_INDEP}_${N_CHAIN}
if ! [ -s "$IN/chain_rate/flow.yaml" ] || [ "${BASH_SOURCE[0]}" -nt "$IN/chain_shell/flow.yaml" ]; then
  gen "$IN" "$N_INDEP" "$N_CHAIN"
fi
echo "# $("$FLOW" --version 2>/dev/null | head -1 || echo '(flow --version failed)')," \
     "store: ${STORE:-the default of flow run}, $(hyperfine --version)" >&2

# check DIR N: one untimed run of DIR/flow.yaml with --json (the whole run: status and every activation);
# the run and each of its N tasks must have completed.
check() {
  local dir=$1 n=$2 verdict
  rm -rf "$dir/.flow"
  (cd "$dir" && "$FLOW" run flow.yaml --jobs 2 --quiet --json ${STORE:+--store "$STORE"}) \
    > "$R/check.json" 2> "$R/check.err" ||
    { cat "$R/check.err" >&2; echo "w2.sh: flow run $dir/flow.yaml failed" >&2; return 1; }
  verdict=$("$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
done = sum(1 for t in d.get("tasks", []) if t.get("status") == "completed")
print("ok" if d.get("status") == "completed" and done == int(sys.argv[2]) else
      "run %s with %d of %s tasks completed" % (d.get("status"), done, sys.argv[2]))' "$R/check.json" "$n") ||
    { echo "w2.sh: flow run --json printed no run JSON for $dir/flow.yaml" >&2; return 1; }
  [ "$verdict" = ok ] || { echo "w2.sh: $dir/flow.yaml: $verdict" >&2; return 1; }
  rm -rf "$dir/.flow"
}

# bench WORKLOAD ENGINE N DIR: hyperfine on `flow run flow.yaml` in DIR
bench() {
  local w=$1 engine=$2 n=$3 dir=$4 j="$R/$1.$2.json" exec
  case $engine in libflow-shell) exec='sh' ;; *) exec='direct' ;; esac
  (cd "$dir" && hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$j" \
     --prepare "rm -rf $dir/.flow" "$FLOW run flow.yaml --jobs 2 --quiet${STORE:+ --store $STORE}") \
    > /dev/null 2> "$R/hyperfine.err" || { cat "$R/hyperfine.err" >&2; return 1; }
  hyperfine_times "$j" | result "$w" "$engine" "$n" concurrency=2 exec=$exec store="${STORE:-default}"
}

for v in $VARIANTS; do
  case $v in
    run) engine=libflow ;; shell) engine=libflow-shell ;; conc) engine=libflow-conc ;; rate) engine=libflow-rate ;;
    *) echo "w2.sh: unknown variant $v" >&2; exit 2 ;;
  esac
  check "$IN/indep_$v" "$N_INDEP"
  bench W2a-indep "$engine" "$N_INDEP" "$IN/indep_$v"
  check "$IN/chain_$v" "$N_CHAIN"
  bench W2b-chain "$engine" "$N_CHAIN" "$IN/chain_$v"
done
