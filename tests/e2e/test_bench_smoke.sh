#!/usr/bin/env bash
# test_bench_smoke.sh -- the benchmark programs keep working (no timing assertions): build/bench/w1_dag on
# a generated 50-task DAG (timed mode, CHECK=1 ordering check, --mem, a malformed file), the W2
# workflow files that bench/w2.sh generates load and run to completion with build/flow, and the W4
# harness (build/bench/w4_durable) runs on every store.
set -euo pipefail
: "${FLOW:?}" "${FLOW_SOURCE_DIR:?}" "${FLOW_BUILD_DIR:?}"
W1=$FLOW_BUILD_DIR/bench/w1_dag
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$W1" ] || fail "$W1 was not built"

# 50 tasks, 96 edges: source 0 -> layer 1..24 -> layer 25..48 (each after two tasks of layer 1) -> sink 49.
awk 'BEGIN{ print "# smoke: 1 -> 24 -> 24 (2 preds each) -> 1"; print "50 96"
  for (j = 0; j < 24; j++) print 0, 1 + j
  for (j = 0; j < 24; j++) { print 1 + j, 25 + j; print 1 + (j + 1) % 24, 25 + j }
  for (j = 0; j < 24; j++) print 25 + j, 49 }' > "$T/dag.txt"

# Timed mode: one line per repetition (after the untimed warm-up), every task ran once.
"$W1" "$T/dag.txt" 2 2 > "$T/out.txt" 2> "$T/err.txt" || { cat "$T/err.txt" >&2; fail "w1_dag failed"; }
[ "$(grep -c 'total_s=' "$T/out.txt")" = 2 ] || { cat "$T/out.txt" >&2; fail "expected 2 total_s lines"; }
[ "$(grep -c 'build_s=[0-9.]* exec_s=[0-9.]* total_s=[0-9.]* .*ran=50$' "$T/out.txt")" = 2 ] ||
  { cat "$T/out.txt" >&2; fail "expected build_s, exec_s, total_s and ran=50 on every line"; }
grep -q '^peak_rss_kb=[1-9][0-9]*$' "$T/out.txt" || fail "no peak_rss_kb line"

# CHECK=1: every task also ran after all of its predecessors.
CHECK=1 "$W1" "$T/dag.txt" 2 2 > "$T/out.txt" 2> "$T/err.txt" ||
  { cat "$T/err.txt" >&2; fail "w1_dag with CHECK=1 failed"; }
[ "$(grep -c 'total_s=.*ran=50$' "$T/out.txt")" = 2 ] || fail "CHECK=1: expected 2 total_s lines"
grep -q 'CHECK=1' "$T/err.txt" || fail "CHECK=1 not reported on stderr"

# --mem: one run, bytes per task.
"$W1" --mem "$T/dag.txt" 2 > "$T/out.txt" 2> "$T/err.txt" || { cat "$T/err.txt" >&2; fail "w1_dag --mem failed"; }
grep -q '^bytes_per_task=[-0-9.]* .*tasks=50 edges=96$' "$T/out.txt" || { cat "$T/out.txt" >&2; fail "--mem output"; }

# A malformed file (an edge against id order) is refused with a message naming the line.
printf '# bad\n3 2\n0 1\n2 1\n' > "$T/bad.txt"
if "$W1" "$T/bad.txt" 2 1 > /dev/null 2> "$T/err.txt"; then fail "w1_dag accepted a backwards edge"; fi
grep -q 'bad.txt:4: edge 2 -> 1' "$T/err.txt" || { cat "$T/err.txt" >&2; fail "no message naming bad.txt:4"; }

# W2: the generated workflow files (indep and chain, run: and shell:) run to completion.
bash "$FLOW_SOURCE_DIR/bench/w2.sh" --gen "$T/w2" 20 10
for c in indep_run indep_shell chain_run chain_shell; do
  [ "$(grep -c '^  [oc][0-9]*: {.*/bin/true' "$T/w2/$c/flow.yaml")" = "$([ "${c%%_*}" = indep ] && echo 20 || echo 10)" ] ||
    fail "$c/flow.yaml has the wrong number of tasks"
  (cd "$T/w2/$c" && "$FLOW" run flow.yaml --jobs 2 --quiet > "$T/out.txt" 2> "$T/err.txt") ||
    { cat "$T/err.txt" >&2; fail "flow run $c/flow.yaml failed"; }
done
# W4: durable fan-outs on each store, and a resume; one result line per repetition.
W4=$FLOW_BUILD_DIR/bench/w4_durable
[ -x "$W4" ] || fail "$W4 was not built"
for url in memory: "sqlite:$T/w4/flow.db" "disk:$T/w4d"; do
  for level in normal strict; do
    "$W4" fan "$url" 50 2 "$level" > "$T/out.txt" 2> "$T/err.txt" ||
      { cat "$T/err.txt" >&2; fail "w4_durable fan $url $level failed"; }
    [ "$(grep -c '^secs=[0-9.]* records=158$' "$T/out.txt")" = 2 ] ||
      { cat "$T/out.txt" >&2; fail "w4_durable fan $url: expected 2 secs= lines"; }
  done
  "$W4" resume "$url" 50 1 > "$T/out.txt" 2> "$T/err.txt" ||
    { cat "$T/err.txt" >&2; fail "w4_durable resume $url failed"; }
  grep -q '^secs=[0-9.]* total=[0-9.]*$' "$T/out.txt" || fail "w4_durable resume $url: no secs= line"
done
echo "ok"
