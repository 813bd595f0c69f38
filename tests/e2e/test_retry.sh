#!/bin/bash
# flow retry RUN [TASK...] with real processes: a run that failed runs again
# in the same run id from where it failed -- the completed upstream is not
# run again, the failed task's attempts grow, the journal shows the retry;
# a cancelled run; naming a task; a completed run refused; kill -9 during a
# retry, then flow resume finishes it without running completed work again;
# bad inputs (unknown run, unknown task, a run that never ran a task).
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
unset FLOW_STORE # the default store: .flow/flow.db here

field() { python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

# Each task appends its name to ./marks when it runs; `load` fails until
# ./ready exists.
cat >flaky.yaml <<'EOF'
name: flaky
tasks:
  fetch:
    shell: echo fetch >> marks; echo 3
  load:
    after: fetch
    shell: |
      echo load >> marks
      test -e ready || { echo "not ready" >&2; exit 3; }
      echo '"loaded"'
  report:
    after: load
    shell: echo report >> marks; echo '"report done"'
EOF

# --- a failed run, retried ---------------------------------------------------
: >marks
"$FLOW" run flaky.yaml --id f1 >out 2>err
rc=$?
check "the run fails while load is not ready (exit 1)" test "$rc" = 1
check "... report did not run" test "$(runs_of report)" = 0
touch ready
"$FLOW" retry f1 --by alice >out 2>err
rc=$?
check "flow retry completes it (exit 0)" test "$rc" = 0
check "... prints the result" grep -q '"report done"' out
check "... follows it like flow run" grep -q "^run f1$" err
check "the completed upstream did not run again" test "$(runs_of fetch)" = 1
check "the failed task ran again" test "$(runs_of load)" = 2
check "what came after it ran" test "$(runs_of report)" = 1
"$FLOW" status f1 --json >st.json
check "flow status: completed, in the same run id" test "$(field st.json 'r["id"], r["status"]')" = "('f1', 'completed')"
check "... load is one activation whose attempts grew to 2" \
    test "$(field st.json '[(t["task"], t["attempts"], t["status"]) for t in r["tasks"] if t["task"] == "load"]')" = "[('load', 2, 'completed')]"
check "... fetch kept its single attempt" \
    test "$(field st.json '[t["attempts"] for t in r["tasks"] if t["task"] == "fetch"]')" = "[1]"
"$FLOW" logs f1 >logs
check "flow logs shows the first failure" grep -q "act_failed .*load#2 (attempt 1) .*not ready" logs
check "... the end of the first run" grep -q 'run_ended .*"status":"failed"' logs
check "... the retry, what it ran again and who asked" \
    grep -q 'run_retried .*{"tasks":\["load"\],"activations":\[2\],"by":"alice"}' logs
check "... then the second attempt" grep -q "act_completed load#2 (attempt 2)" logs
check "... in that order" python3 -c '
import sys; t = open("logs").read()
sys.exit(not (t.index("act_failed") < t.index("run_retried") < t.index("(attempt 2)")))'

# --- a completed run is refused, and changes nothing -------------------------
"$FLOW" logs f1 --json >before.json
"$FLOW" retry f1 >out 2>err
rc=$?
check "retrying a completed run is refused (exit 2)" test "$rc" = 2
check "... saying why" grep -q "flow: run 'f1' completed: nothing to retry" err
"$FLOW" logs f1 --json >after.json
check "... nothing was written" cmp -s before.json after.json
check "... nothing ran" test "$(runs_of report)" = 1

# --- bad inputs ----------------------------------------------------------------
"$FLOW" retry nosuch >out 2>err
rc=$?
check "an unknown run is refused (exit 2)" test "$rc" = 2
check "... naming it" grep -q "no run 'nosuch'" err
rm -f ready
: >marks
"$FLOW" run flaky.yaml --id f2 --quiet >/dev/null 2>&1
"$FLOW" logs f2 --json >before.json
"$FLOW" retry f2 lod >out 2>err
rc=$?
check "an unknown task is refused (exit 2)" test "$rc" = 2
check "... naming it" grep -q "unknown task 'lod' to retry: the flow of run 'f2' (flaky) has no such task" err
"$FLOW" retry f2 report >out 2>err
rc=$?
check "a task that never ran is refused (exit 2)" test "$rc" = 2
check "... saying so" grep -q "task 'report' never ran in run 'f2': nothing to retry" err
"$FLOW" retry >out 2>err
rc=$?
check "no RUN is a usage error (exit 2)" test "$rc" = 2
"$FLOW" logs f2 --json >after.json
check "refusals write nothing" cmp -s before.json after.json
check "... and run nothing" test "$(runs_of load)" = 1
"$FLOW" retry f2 --quiet >out 2>err
rc=$?
check "still failing, a retry fails again (exit 1)" test "$rc" = 1
touch ready
"$FLOW" retry f2 --quiet >out 2>err
rc=$?
check "a second retry completes it (exit 0)" test "$rc" = 0
check "... load's third attempt" test "$("$FLOW" status f2 --json | python3 -c 'import json,sys; print([t["attempts"] for t in json.load(sys.stdin)["tasks"] if t["task"] == "load"])')" = "[3]"
check "... fetch still ran once" test "$(runs_of fetch)" = 1

# --- naming a task -------------------------------------------------------------
cat >two.yaml <<'EOF'
name: two
tasks:
  x:
    on_error: continue
    shell: echo x >> marks; test -e x.ok || exit 1; echo '"x"'
  y:
    on_error: continue
    shell: echo y >> marks; test -e y.ok || exit 1; echo '"y"'
EOF
: >marks
"$FLOW" run two.yaml --id n1 --quiet >/dev/null 2>&1
touch x.ok y.ok
"$FLOW" retry n1 x >out 2>err
rc=$?
check "retrying only x: y still failed, the run fails (exit 1)" test "$rc" = 1
check "... naming y" grep -q "task 'y' failed" err
check "... only x ran again" test "$(runs_of x)$(runs_of y)" = 21
"$FLOW" retry n1 --quiet >out 2>err
rc=$?
check "then the rest: exit 0" test "$rc" = 0
check "... x did not run a third time" test "$(runs_of x)$(runs_of y)" = 22

# --- a cancelled run -----------------------------------------------------------
write_slow
: >marks
hold_two
start_slow c1
"$FLOW" cancel c1 --reason "not now" 2>/dev/null
wait "$pid" # a cancel interrupts two
rc=$?
release_two
rm -f two.started
check "the cancelled run exits 4" test "$rc" = 4
"$FLOW" retry c1 >out 2>err
rc=$?
check "flow retry runs a cancelled run again (exit 0)" test "$rc" = 0
check "... to its end" grep -q '"three"' out
check "... without running its completed task again" test "$(runs_of one)" = 1
check "... the cancelled task ran again" test "$(runs_of two)" = 2
check "... then the next" test "$(runs_of three)" = 1

# --- kill -9 during a retry, then flow resume ---------------------------------
cat >long.yaml <<'EOF'
name: long
tasks:
  fetch:
    shell: echo fetch >> marks; echo 1
  load:
    after: fetch
    shell: echo load >> marks; test -e long.ok || exit 2; echo 2
  slow:
    after: load
    shell: echo slow >> marks; touch slow.started; sleep 1; echo 3
  done:
    after: slow
    shell: echo done >> marks; echo '"all done"'
EOF
: >marks
"$FLOW" run long.yaml --id k1 --quiet >/dev/null 2>&1
touch long.ok
rm -f slow.started
"$FLOW" retry k1 >out 2>err &
pid=$!
wait_for slow.started
kill -KILL "$pid"
wait "$pid" 2>/dev/null
check "after kill -9 the retried run reads stopped" test "$("$FLOW" status k1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = stopped
"$FLOW" retry k1 >out 2>err
rc=$?
check "a retry of the stopped run is refused (exit 2)" test "$rc" = 2
check "... pointing to flow resume" grep -q "run 'k1' stopped before it ended (its runner died): continue it with flow resume k1" err
"$FLOW" resume k1 >out 2>err
rc=$?
check "flow resume finishes the retry (exit 0)" test "$rc" = 0
check "... with the result" grep -q '"all done"' out
check "the completed upstream ran once in all" test "$(runs_of fetch)" = 1
check "the retried task ran twice in all (failed, then once in the retry)" test "$(runs_of load)" = 2
check "the task the kill interrupted ran again" test "$(runs_of slow)" = 2
check "the last ran once" test "$(runs_of done)" = 1
"$FLOW" logs k1 >logs
check "the journal holds one retry" test "$(grep -c run_retried logs)" = 1

# --- remote tasks: a foreach on a worker -------------------------------------
if redis_start "$T/redis"; then
    "$FLOW" worker --redis "$REDIS_URL" --name rw1 >worker.log 2>&1 &
    wpid=$!
    cat >rfan.yaml <<'EOF'
name: rfan
defaults:
  executor: remote
tasks:
  src:
    run: [sh, -c, 'echo src >> @T@/marks; echo "[1,2,3]"']
  sq:
    foreach: "{{ tasks.src.output }}"
    after: [src]
    run: [sh, -c, 'echo sq{{ item }} >> @T@/marks; test {{ item }} != 2 || test -e @T@/r.ok || { sleep 0.5; exit 4; }; echo $(({{ item }} * {{ item }}))']
  sum:
    after: [sq]
    shell: 'python3 -c "import json; print(sum(json.load(open(\"$FLOW_INPUT\"))))"'
EOF
    sed -i "s|@T@|$T|g" rfan.yaml
    : >marks
    "$FLOW" run rfan.yaml --id rm1 --redis "$REDIS_URL" --quiet >out 2>err
    rc=$?
    check "a remote foreach with a failing item fails (exit 1)" test "$rc" = 1
    touch r.ok
    "$FLOW" retry rm1 --redis "$REDIS_URL" --quiet >out 2>err
    rc=$?
    check "flow retry sends the failed item to the worker again (exit 0)" test "$rc" = 0
    expect_json "$(cat out)" 14 "... and the result is 1+4+9"
    check "the remote upstream did not run again" test "$(runs_of src)" = 1
    check "the failed item ran again on the worker" test "$(runs_of sq2)" = 2
    check "the item that completed did not run again" test "$(runs_of sq1)" = 1
    kill -TERM "$wpid" 2>/dev/null
    wait "$wpid" 2>/dev/null
else
    fail "redis-server did not start"
fi

finish
