#!/bin/bash
# The README's tour works as written: its hello.yaml validates, runs with
# the result the README states, and the misspelling it suggests is reported.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1

awk '/^# hello.yaml$/ {on = 1} on && /^```$/ {exit} on {print}' \
    "$FLOW_SOURCE_DIR/README.md" > hello.yaml
sed -i "s|/tmp/flaky-ok|$T/flaky-ok|g" hello.yaml
grep -q "name: hello" hello.yaml && pass "README has the tour's hello.yaml" ||
    fail "no hello.yaml in README"

"$FLOW" validate hello.yaml > out.txt 2>&1 && grep -q "ok: hello.yaml: 4 tasks" out.txt &&
    pass "tour: validate" || fail "tour: validate: $(cat out.txt)"

out=$("$FLOW" run hello.yaml --input who=world 2>err.txt)
rc=$?
[ $rc = 0 ] && pass "tour: run exits 0" || fail "tour: run exit $rc: $(cat err.txt)"
expect_json "$out" '{"shout": "HELLO WORLD"}' "tour: the result the README states"
grep -q "retrying  flaky" err.txt && pass "tour: flaky is retried" || fail "tour: no retry: $(cat err.txt)"

sed -i 's/after: greet/after: gret/' hello.yaml
"$FLOW" run hello.yaml > out.txt 2> err.txt
rc=$?
[ $rc = 2 ] && grep -q "unknown task 'gret' in 'after' of task 'shout'.*hello.yaml:[0-9]*:[0-9]*" err.txt &&
    pass "tour: the misspelling is reported with its place" || fail "tour: misspelling: rc=$rc $(cat err.txt)"

finish
