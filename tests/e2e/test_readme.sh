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
[ $rc = 2 ] && grep -q "^hello.yaml:[0-9]*:[0-9]*: error: unknown task 'gret' in 'after' of task 'shout'" err.txt &&
    grep -qF "$(cat err.txt)" "$FLOW_SOURCE_DIR/README.md" &&
    pass "tour: the misspelling is reported with its place" || fail "tour: misspelling: rc=$rc $(cat err.txt)"

# "Kill a run, resume it": the README's sequence, with waits instead of sleeps.
grep -q '^build/flow run examples/durable/batch.yaml --id demo &' "$FLOW_SOURCE_DIR/README.md" &&
    pass "README has the kill-and-resume tour" || fail "no kill-and-resume tour in README"
export FLOW_STORE="sqlite:$T/tour/flow.db"
"$FLOW" run "$FLOW_SOURCE_DIR/examples/durable/batch.yaml" --id demo 2>run.err >/dev/null &
pid=$!
for i in $(seq 1 100); do
    [ "$(grep -c 'completed square\[' run.err)" -ge 2 ] && break
    sleep 0.1
done
kill -9 "$pid"
wait "$pid" 2>/dev/null
"$FLOW" status demo >status.txt 2>&1
grep -q "^runner: none" status.txt && pass "tour: status after kill -9 says nobody runs it" ||
    fail "tour: status: $(cat status.txt)"
out=$("$FLOW" resume demo 2>resume.err)
rc=$?
[ $rc = 0 ] && pass "tour: resume exits 0" || fail "tour: resume exit $rc: $(cat resume.err)"
expect_json "$out" '{"squares": [1, 4, 9, 16, 25], "sum": 55}' "tour: the result the README states"
again=$(grep -c 'started   square\[' resume.err)
[ "$again" -lt 5 ] && pass "tour: the squares that completed did not run again ($again of 5 started)" ||
    fail "tour: the resume started all 5 squares"
"$FLOW" logs demo >logs.txt && grep -q "act_completed square" logs.txt && pass "tour: logs" ||
    fail "tour: logs: $(head logs.txt)"

# "Ask a person": the README's sequence.
grep -q '^build/flow feedback rev review --approve --by alice' "$FLOW_SOURCE_DIR/README.md" &&
    pass "README has the feedback tour" || fail "no feedback tour in README"
"$FLOW" run "$FLOW_SOURCE_DIR/examples/seeds/crewai_hitl_review.yaml" --input confidence:=0.4 --id rev \
    >/dev/null 2>run.err
rc=$?
[ $rc = 3 ] && grep -q "answer with: flow feedback rev review --approve | --reject" run.err &&
    pass "tour: the review pauses and says how to answer" || fail "tour: review: rc=$rc $(cat run.err)"
"$FLOW" feedback >list.txt 2>&1 && grep -q "^rev review (approval" list.txt &&
    pass "tour: flow feedback lists it" || fail "tour: feedback list: $(cat list.txt)"
"$FLOW" feedback rev review --approve --by alice 2>/dev/null
out=$("$FLOW" resume rev 2>/dev/null)
expect_json "$out" '{"final": "Q3 summary: revenue up 12%", "by": "alice"}' "tour: resumed with the answer"
unset FLOW_STORE

# "Run tasks on other machines": two workers, the fan-out example, flow workers
# (on a redis-server of our own, as the README's throwaway one).
grep -q '^build/flow run examples/distributed/fan.yaml --quiet' "$FLOW_SOURCE_DIR/README.md" &&
    pass "README has the distribution tour" || fail "no distribution tour in README"
redis_start "$T/redis" || fail "tour: no redis-server"
export FLOW_REDIS=$REDIS_URL
"$FLOW" worker --name w1 2>w1.err &
w1=$!
"$FLOW" worker --name w2 2>w2.err &
w2=$!
out=$("$FLOW" run "$FLOW_SOURCE_DIR/examples/distributed/fan.yaml" --quiet --store "memory:" 2>run.err)
rc=$?
[ $rc = 0 ] && pass "tour: the distributed run exits 0" || fail "tour: distributed run exit $rc: $(cat run.err)"
workers=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin)
print(d["process_a"]["got"]["rows"], sorted({d["process_a"]["worker"], d["process_b"]["worker"]} - {"w1","w2"}))' 2>&1)
[ "$workers" = "[3, 1, 2] []" ] && pass "tour: the branches ran on the workers, with their input" ||
    fail "tour: distributed result: $out ($workers)"
for _ in $(seq 100); do "$FLOW" workers >workers.txt 2>&1 && [ "$(grep -c '^w[12] .*default' workers.txt)" = 2 ] && break; sleep 0.05; done
[ "$(grep -c '^w[12] .*default' workers.txt)" = 2 ] && pass "tour: flow workers lists both" ||
    fail "tour: flow workers: $(cat workers.txt)"
kill $w1 $w2
wait $w1 && wait $w2 && pass "tour: SIGTERM drains and stops the workers (exit 0)" ||
    fail "tour: a worker did not exit 0 on SIGTERM: $(cat w1.err w2.err)"
redis_stop
unset FLOW_REDIS

finish
