#!/bin/bash
# flow run FILE --inputs-each FILE.jsonl: one run per line, all in one process
# on one engine -- summaries, results in line order, the worst exit status, a
# bad line reported in gcc's form while the others run, runs that overlap
# (a task waits for a file another run's task makes), each run an ordinary
# run of the store, and SIGTERM pausing them all (flow resume completes one).
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
export FLOW_STORE="sqlite:$T/flow.db"

# A run per n: n = 3 fails; the result names n and the tag (--input's, or
# the line's own).
cat >each.yaml <<'EOF'
name: each
tasks:
  work:
    shell: |
      n={{ inputs.n | shell }}
      if [ "$n" = 3 ]; then echo "three is bad" >&2; exit 1; fi
      printf '{"n": %s, "tag": "%s"}\n' "$n" {{ inputs.tag | shell }}
EOF
# Five runs (line 3 is blank, line 6 is not JSON, line 7 is no object).
printf '%s\n' '{"n": 1}' '{"n": 2}' '' '{"n": 3}' '{"n": 4, "tag": "own"}' 'n = 5' '[5]' \
    '{"n": 6}' >lines.jsonl

rc=0; "$FLOW" run each.yaml --inputs-each lines.jsonl --input tag=all --json >out 2>err || rc=$?
check "a bad line and a failed run: exit 2 (a line did not run)" [ "$rc" = 2 ]
check "the line that is not JSON is reported in gcc's form" \
    grep -Eq '^lines\.jsonl:6(:[0-9]+)?: error: invalid JSON' err
check "the line that is no object is reported in gcc's form" \
    grep -q '^lines\.jsonl:7: error: a line of --inputs-each must be a JSON object' err
check "a summary per run: four completed" \
    bash -c '[ "$(grep -cE "^run [^ ]+ \(line (1|2|5|8)\) completed in [0-9.]+s$" err)" = 4 ]'
check "a summary per run: the failed one with its error" \
    grep -Eq '^run [^ ]+ \(line 4\) failed in [0-9.]+s: .*three is bad' err
check "a tally" grep -qx '7 lines: 4 completed, 1 failed, 2 not started' err
lines=$(python3 -c '
import json, sys
print(" ".join("%d:%s" % (r["line"], r["status"]) for r in map(json.loads, open(sys.argv[1]))))' out)
check "stdout: a JSON object per line, in line order ($lines)" \
    [ "$lines" = "1:completed 2:completed 4:failed 5:completed 6:not_started 7:not_started 8:completed" ]
expect_json "$(sed -n 1p out | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps(r["result"]))')" \
    '{"n": 1, "tag": "all"}' "--input applies to every line"
expect_json "$(sed -n 4p out | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps(r["result"]))')" \
    '{"n": 4, "tag": "own"}' "the line's keys win over --input"
expect_json "$(sed -n 3p out | python3 -c 'import json,sys; r=json.load(sys.stdin); del r["id"]; print(json.dumps(r))')" \
    '{"line": 4, "status": "failed", "result": null, "error": "task '"'"'work'"'"' failed: exited with status 1: three is bad"}' \
    "a failed run's record"
expect_json "$(sed -n 6p out)" \
    '{"line": 7, "id": null, "status": "not_started", "result": null, "error": "a line of --inputs-each must be a JSON object (the run'"'"'s inputs)"}' \
    "a bad line's record"

# Each run is a run of the store, with its own result.
ok_ids=0
while read -r id n; do
    got=$("$FLOW" status "$id" --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["status"], r["result"]["n"] if r["result"] else "-")')
    [ "$got" = "completed $n" ] && ok_ids=$((ok_ids + 1))
done < <(python3 -c '
import json, sys
for r in map(json.loads, open(sys.argv[1])):
    if r["status"] == "completed": print(r["id"], r["result"]["n"])' out)
check "flow status shows each completed run with its own result ($ok_ids of 4)" [ "$ok_ids" = 4 ]
failed_id=$(sed -n 3p out | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
check "flow status shows the failed run" run_is "$failed_id" failed
check "flow status lists the five runs" \
    bash -c '[ "$("$FLOW" status --flow each --all --json | grep -c "\"id\"")" = 5 ]'

# Without --json: one compact result per line, null for what did not complete.
rc=0; "$FLOW" run each.yaml --inputs-each lines.jsonl --input tag=all >out 2>err || rc=$?
check "without --json: exit 2 again" [ "$rc" = 2 ]
check "without --json: one compact line per line of the file, in order" \
    bash -c 'diff <(printf "%s\n" "{\"n\":1,\"tag\":\"all\"}" "{\"n\":2,\"tag\":\"all\"}" null \
        "{\"n\":4,\"tag\":\"own\"}" null null "{\"n\":6,\"tag\":\"all\"}") out'

# Only failures: exit 1; all good: exit 0; --quiet says only what went wrong.
printf '%s\n' '{"n": 1, "tag": "x"}' '{"n": 3, "tag": "x"}' >fail.jsonl
rc=0; "$FLOW" run each.yaml --inputs-each fail.jsonl --quiet >out 2>err || rc=$?
check "a failed run among completed ones: exit 1" [ "$rc" = 1 ]
check "--quiet: only the failed run's summary" \
    bash -c '[ "$(wc -l <err)" = 1 ] && grep -q "(line 2) failed" err'
printf '%s\n' '{"n": 1, "tag": "x"}' '{"n": 2, "tag": "y"}' >good.jsonl
rc=0; "$FLOW" run each.yaml --inputs-each good.jsonl >out 2>err || rc=$?
check "all completed: exit 0" [ "$rc" = 0 ]

# Usage errors: nothing runs.
before=$("$FLOW" status --all --json | grep -c '"id"')
: >empty.jsonl
printf '\n   \n' >blank.jsonl
for args in "--inputs-each empty.jsonl" "--inputs-each blank.jsonl" "--inputs-each none.jsonl" \
    "--inputs-each good.jsonl --id x" "--inputs-each good.jsonl --detach"; do
    rc=0; "$FLOW" run each.yaml $args >out 2>err || rc=$?
    check "usage error ($args): exit 2" [ "$rc" = 2 ]
done
check "usage errors: an empty file says so" \
    bash -c '"$FLOW" run each.yaml --inputs-each empty.jsonl 2>&1 | grep -q "has no line: nothing to run"'
check "usage errors started no run" \
    [ "$("$FLOW" status --all --json | grep -c '"id"')" = "$before" ]

# The runs overlap: line 1's task waits for the file line 2's task makes, so
# with one run after the other line 1 would give up (and fail).
cat >meet.yaml <<'EOF'
name: meet
tasks:
  meet:
    shell: |
      if [ {{ inputs.role | shell }} = waiter ]; then
        i=0
        while [ ! -e met ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
        [ -e met ] && echo '"met"'
      else
        touch met; echo '"made"'
      fi
EOF
printf '%s\n' '{"role": "waiter"}' '{"role": "maker"}' >meet.jsonl
rc=0; "$FLOW" run meet.yaml --inputs-each meet.jsonl --jobs 2 >out 2>err || rc=$?
check "runs of the lines overlap: the waiter met the maker (exit 0)" [ "$rc" = 0 ]
check "... and the results are in line order" \
    bash -c 'diff <(printf "%s\n" "\"met\"" "\"made\"") out'

# SIGTERM pauses them all (exit 130); flow resume completes one.
cat >hold.yaml <<'EOF'
name: hold
tasks:
  hold:
    shell: |
      touch started.{{ inputs.n | shell }}
      [ -e released ] || sleep 30
      echo {{ inputs.n | shell }}
EOF
printf '%s\n' '{"n": 1}' '{"n": 2}' '{"n": 3}' >hold.jsonl
"$FLOW" run hold.yaml --inputs-each hold.jsonl --jobs 3 >out 2>err &
pid=$!
wait_for started.1 && wait_for started.2 && wait_for started.3
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
check "SIGTERM: exit 130" [ "$rc" = 130 ]
check "SIGTERM: every run's summary says interrupted" \
    bash -c '[ "$(grep -cE "^run [^ ]+ \(line [123]\) interrupted in" err)" = 3 ]'
check "SIGTERM: how to resume is said" grep -q 'flow resume RUN' err
id2=$(sed -nE 's/^run ([^ ]+) \(line 2\) interrupted.*/\1/p' err)
check "SIGTERM: the run is paused in the store" run_is "$id2" paused
touch released
rc=0; res=$("$FLOW" resume "$id2" 2>err) || rc=$?
check "flow resume of one of them completes it" [ "$rc" = 0 ]
expect_json "$res" 2 "the resumed run's result"
check "the others stay paused" \
    bash -c '[ "$("$FLOW" status --flow hold --json | grep -c "\"status\": \"paused\"")" = 2 ]'

finish
