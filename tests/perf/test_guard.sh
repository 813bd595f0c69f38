#!/usr/bin/env bash
# The perf guard (bench/guard.sh) can fail: with a budget 20% below a real count of w1-chain it exits
# non-zero naming the shape, the count, the budget and how far over; 20% above, it passes with a note to
# lower the budget; --update writes a budget that then passes; a shape without a budget and a missing
# valgrind fail. Env (from ctest): FLOW_SOURCE_DIR, FLOW_BUILD_DIR.
set -euo pipefail
GUARD=${FLOW_SOURCE_DIR:?}/bench/guard.sh
export BUILD=${FLOW_BUILD_DIR:?} RUNS=1
T=$(mktemp -d "${TMPDIR:-/tmp}/flow-guard-test.XXXXXX")
trap 'rm -rf "$T"' EXIT

fail() {
  echo "test_guard: $*" >&2
  [ ! -f "$T/out" ] || sed 's/^/  | /' "$T/out" >&2
  exit 1
}

# guard EXPECTED_STATUS ARGS...: run the guard on w1-chain, output in $T/out.
guard() {
  local want=$1 rc=0
  shift
  bash "$GUARD" --shapes w1-chain "$@" > "$T/out" 2>&1 || rc=$?
  [ "$rc" = "$want" ] || fail "guard $* exited $rc, expected $want"
}

# A real measurement, written as the budget.
guard 0 --update --budgets "$T/budgets" --save "$T/counts"
count=$(awk '$1 == "w1-chain" { print $2 }' "$T/counts")
case $count in [1-9][0-9][0-9]*) ;; *) fail "implausible count '$count'" ;; esac
grep -qx "w1-chain $count" "$T/budgets" || fail "--update did not write 'w1-chain $count'"
grep -q '^# w1-chain: w1_dag --count chain:[0-9]* 1 [0-9]* -- 20' "$T/budgets" ||
  fail "--update wrote no line saying how and when"
guard 0 --counts "$T/counts" --budgets "$T/budgets"
grep -q "^perf guard: ok w1-chain: $count instructions per task (budget $count, +0.0%)" "$T/out" ||
  fail "no 'ok' line"

# A budget 20% below the count: 25% over, measured again, must fail and say so.
low=$((count * 8 / 10))
echo "w1-chain $low" > "$T/low"
guard 1 --budgets "$T/low" --report "$T/report"
grep -Eq "^perf guard: FAIL w1-chain: [0-9]+ instructions per task, budget $low: 2[4-6]\.[0-9]% over" \
  "$T/out" || fail "no FAIL line naming the shape, count, budget and % over"
grep -q "^perf guard: FAIL w1-chain: " "$T/report" || fail "the --report file has no FAIL line"

# 20% above the count: passes, with a note to lower the budget.
high=$((count * 12 / 10))
echo "w1-chain $high" > "$T/high"
guard 0 --counts "$T/counts" --budgets "$T/high"
grep -q "^perf guard: note: w1-chain: $count instructions per task, 16\.[0-9]% under its budget $high: lower" \
  "$T/out" || fail "no note to lower the budget"

# No budget for the shape, and no valgrind: both fail.
echo "w1-fan $count" > "$T/other"
guard 1 --counts "$T/counts" --budgets "$T/other"
grep -q "FAIL w1-chain: $count instructions per task, and no budget for it" "$T/out" ||
  fail "no FAIL line for a shape without a budget"
VALGRIND=$T/no-valgrind guard 1 --budgets "$T/budgets"
grep -q "valgrind not found" "$T/out" || fail "no 'valgrind not found' message"
echo "test_guard: ok (w1-chain: $count instructions per task)"
