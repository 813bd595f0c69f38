#!/bin/bash
# What `flow status` lists (docs/cli.md, "flow status"): newest first with a
# duration, --status (a comma list, repeated, "stopped" too; an unknown one a
# usage error naming the known ones), --flow, --limit (default 20, 0 refused),
# --all, a stderr line when runs were left out, the same filters for --json;
# 10,000 runs in a SQLite store. The elements of a foreach by index and item
# in the progress of flow run, in flow status RUN (and its index/item in
# --json) and in flow logs. --json of flow gc, flow pause and flow cancel.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
export FLOW_STORE="sqlite:$T/s/flow.db"
export FLOW_BIN=$FLOW

cat >ok.yaml <<'EOF'
name: ok
tasks:
  a: {shell: "echo a"}
EOF
cat >bad.yaml <<'EOF'
name: bad
tasks:
  a: {shell: "exit 3"}
EOF
cat >hang.yaml <<'EOF'
name: hang
tasks:
  a: {shell: "touch hang.started; sleep 30"}
EOF
cat >ask.yaml <<'EOF'
name: ask
tasks:
  review: {feedback: {type: approval, message: "ship it?"}}
EOF

# --- order, duration, filters -------------------------------------------------
"$FLOW" run ok.yaml --id o1 >/dev/null 2>&1
"$FLOW" run bad.yaml --id b1 >/dev/null 2>&1
"$FLOW" run ok.yaml --id o2 >/dev/null 2>&1
"$FLOW" run ask.yaml --id p1 >/dev/null 2>&1
"$FLOW" run hang.yaml --id dead >/dev/null 2>&1 &
dead=$!
wait_for hang.started
kill_running "$dead" dead 1 a
rm -f hang.started
"$FLOW" run hang.yaml --id live >/dev/null 2>&1 &
live=$!
wait_for hang.started

ids() { awk 'NR > 1 {print $1}' | tr '\n' ' '; }
"$FLOW" status >out 2>err
check "newest first" test "$(ids <out)" = "live dead p1 o2 b1 o1 "
check "a DURATION column" grep -q "^RUN  *FLOW  *STATUS  *CREATED  *DURATION$" out
check "... a completed run: ended - created, as 0.0s" grep -Eq "^o1 +ok +completed +[0-9-]+ [0-9:]+ +[0-9]+\.[0-9]s$" out
check "... a paused or stopped run: -" grep -Eq "^p1 +ask +paused .* -$" out
check "... a stopped one: -" grep -Eq "^dead +hang +stopped .* -$" out
check "... a running one: so far" grep -Eq "^live +hang +running .* [0-9.]+s$" out
check "nothing on stderr when nothing was left out" test ! -s err

"$FLOW" status --status failed >out
check "--status failed" test "$(ids <out)" = "b1 "
"$FLOW" status --status stopped >out
check "--status stopped: the run whose runner died" test "$(ids <out)" = "dead "
"$FLOW" status --status running >out
check "--status running: not the stopped one" test "$(ids <out)" = "live "
"$FLOW" status --status completed,failed >out
check "--status a comma list" test "$(ids <out)" = "o2 b1 o1 "
"$FLOW" status --status completed --status paused >out
check "--status repeated" test "$(ids <out)" = "p1 o2 o1 "
"$FLOW" status --flow ok >out
check "--flow" test "$(ids <out)" = "o2 o1 "
"$FLOW" status --flow hang --status stopped,paused >out
check "--flow and --status together" test "$(ids <out)" = "dead "
"$FLOW" status --flow nosuch >out
check "no match: said, naming the filter" grep -q "^no runs of flow 'nosuch' in sqlite:$T/s/flow.db$" out

"$FLOW" status --status done >out 2>err
rc=$?
check "an unknown status: usage error (exit 2)" test "$rc" = 2
check "... listing the known ones" grep -q "unknown run status 'done' (known: pending, running, paused, completed, failed, cancelled, stopped)" err
"$FLOW" status --status done --store "sqlite:$T/none/flow.db" >out 2>err
rc=$?
check "... also where there is no store" test "$rc" = 2
"$FLOW" status --limit 0 >out 2>err
rc=$?
check "--limit 0: usage error" test "$rc" = 2
check "... pointing at --all" grep -q "needs a count above 0 (every run: --all)" err
"$FLOW" status --all --limit 3 >out 2>err
check "--all with --limit: usage error" test "$?" = 2
"$FLOW" status o1 --status failed >out 2>err
check "a filter with RUN: usage error" test "$?" = 2
check "... saying it is for the list" grep -q "option '--status' of 'status' is for the list of runs, not one run" err

"$FLOW" status --limit 2 >out 2>err
check "--limit 2: the two newest" test "$(ids <out)" = "live dead "
check "... and stderr says how many were left out" grep -qx "showing 2 of 6 runs; --all or --limit N for more" err
"$FLOW" status -n 1 --status completed >out 2>err
check "-n with --status counts the matches" grep -qx "showing 1 of 2 runs; --all or --limit N for more" err

"$FLOW" status --json --status completed,paused --limit 2 >list.json 2>err
check "--json: the same filters and limit, newest first, with duration" python3 -c '
import json, sys
runs = json.load(open("list.json"))
ids = [r["id"] for r in runs]
ok = ids == ["p1", "o2"] and runs[0]["duration"] is None
ok = ok and isinstance(runs[1]["duration"], (int, float)) and 0 <= runs[1]["duration"] < 60
ok = ok and all(k in runs[1] for k in ("id", "flow", "version", "status", "created_at", "ended_at", "source"))
sys.exit(not ok)'
check "... the stderr line too" grep -qx "showing 2 of 3 runs; --all or --limit N for more" err
"$FLOW" status --json --status running,stopped >list.json
check "--json: running with its runner, stopped with none" python3 -c '
import json, sys
runs = {r["id"]: r for r in json.load(open("list.json"))}
ok = set(runs) == {"live", "dead"} and runs["dead"]["runner"] is None and runs["dead"]["duration"] is None
ok = ok and runs["live"]["runner"] and runs["live"]["duration"] >= 0
sys.exit(not ok)'
kill -TERM "$live"
wait "$live" 2>/dev/null

# --- 10,000 runs --------------------------------------------------------------
# One real run copied 9,999 times in the SQLite file: each copy a run of its
# own, created a second after the one before; every tenth failed, every
# third of the flow 'other'.
export FLOW_STORE="sqlite:$T/big/flow.db"
"$FLOW" run ok.yaml --id r0 >/dev/null 2>&1
python3 - "$T/big/flow.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
with db:
    db.execute("""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
        INSERT INTO runs(id, flow, version, def_hash, source, parent, inputs, status, created_at, ended_at)
        SELECT 'r' || i, CASE WHEN i % 3 = 0 THEN 'other' ELSE flow END, version, def_hash, source,
               parent, inputs, CASE WHEN i % 10 = 0 THEN 4 ELSE status END, created_at + i, ended_at + i
        FROM runs, n WHERE id = 'r0'""")
    db.execute("""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
        INSERT INTO records SELECT 'r' || i, seq, type, act, task, attempt, src, time, payload
        FROM records, n WHERE run = 'r0'""")
PY
"$FLOW" status >out 2>err
check "10,000 runs: the 20 newest" test "$(ids <out)" = "$(for i in $(seq 9999 -1 9980); do printf 'r%s ' "$i"; done)"
check "... of 10000" grep -qx "showing 20 of 10000 runs; --all or --limit N for more" err
"$FLOW" status --all >out 2>err
check "--all: every one, and no stderr line" test "$(($(wc -l <out) - 1))" = 10000 -a ! -s err
check "... the oldest last" test "$(tail -1 out | awk '{print $1}')" = r0
"$FLOW" status --status failed --flow other -n 3 >out 2>err
check "filters over 10,000: failed runs of 'other'" test "$(ids <out)" = "r9990 r9960 r9930 "
check "... 333 of them" grep -qx "showing 3 of 333 runs; --all or --limit N for more" err
"$FLOW" status --json --all --status failed >list.json
check "--json --all --status failed: 999 runs" python3 -c '
import json, sys
runs = json.load(open("list.json"))
sys.exit(not (len(runs) == 999 and all(r["status"] == "failed" for r in runs)))'

# --- foreach elements by index and item ---------------------------------------
export FLOW_STORE="sqlite:$T/s/flow.db"
cat >fe.yaml <<'EOF'
name: fe
tasks:
  list:
    run: [echo, '["a.png", "b.png", {"name": "a very long item name here", "n": 1}]']
  resize:
    after: list
    foreach: "{{ tasks.list.output }}"
    concurrency: 1
    shell: 'echo "resizing" >&2; echo ok'
EOF
"$FLOW" run fe.yaml --id fe1 >/dev/null 2>err
check "progress: an element by index and item" grep -Eq '^[0-9:.]+ started   resize\[1\] "b.png" \(attempt 1\)$' err
check "... completed too" grep -Eq '^[0-9:.]+ completed resize\[0\] "a.png" \([0-9.]+s\)$' err
check "... a long item cut at 24 characters" grep -Fq 'completed resize[2] {"name":"a very long ... (' err
check "... the foreach task itself by its name" grep -Eq '^[0-9:.]+ completed resize \(' err
"$FLOW" status fe1 >out
check "status RUN: the elements by index and item" grep -Eq '^ +4 +resize\[1\] "b.png" +completed ' out
check "... the long one cut" grep -Fq 'resize[2] {"name":"a very long ... completed' out
check "... the parent as itself" grep -Eq '^ +2 +resize +completed ' out
"$FLOW" status fe1 --json >detail.json
check "status RUN --json: index and item of the elements only" python3 -c '
import json, sys
t = json.load(open("detail.json"))["tasks"]
ok = "index" not in t[0] and "item" not in t[1]
ok = ok and [(x["index"], x["item"]) for x in t[2:]] == [(0, "a.png"), (1, "b.png"), (2, {"name": "a very long item name here", "n": 1})]
sys.exit(not ok)'
"$FLOW" logs fe1 >out
check "logs: TASK[INDEX]#ACT ITEM" grep -Eq '^ +[0-9]+ [0-9-]+ [0-9:]+ act_started +resize\[1\]#4 "b.png" \(attempt 1\)$' out
"$FLOW" logs fe1 resize >out
check "logs RUN TASK: the elements with their stderr" grep -Eq 'log +resize\[2\]#5 \{"name":"a very long \.\.\. \(attempt 1\)' out
check "... and what they wrote" grep -q "| resizing" out

# --- --json of gc, pause and cancel --------------------------------------------
"$FLOW" run hang.yaml --id h2 >/dev/null 2>&1 &
h2=$!
wait_for hang.started
rm -f hang.started
for _ in $(seq 200); do # running in the store, for the runner to take the requests
    "$FLOW" status h2 2>/dev/null | grep -Eq "^ +1 +a +running " && break
    sleep 0.05
done
"$FLOW" pause h2 --json >out 2>err
check "pause --json: {run, requested, status}" python3 -c '
import json, sys
sys.exit(json.load(open("out")) != {"run": "h2", "requested": "pause", "status": "running"})'
check "... nothing on stderr" test ! -s err
"$FLOW" cancel h2 --json --reason "not needed" >out 2>err
wait "$h2"
check "cancel --json of a live run: requested, the runner acts" python3 -c '
import json, sys
sys.exit(json.load(open("out")) != {"run": "h2", "requested": "cancel", "status": "running"})'
"$FLOW" cancel p1 --json >out 2>err
check "cancel --json of a run nobody runs: cancelled at once" python3 -c '
import json, sys
sys.exit(json.load(open("out")) != {"run": "p1", "requested": "cancel", "status": "cancelled"})'
"$FLOW" pause o1 --json >out 2>err
rc=$?
check "pause --json of an ended run: exit 1, the error on stderr, no JSON" test "$rc" = 1 -a ! -s out
check "... naming it" grep -q "run 'o1' has already ended (completed)" err
"$FLOW" gc --json --older-than 1h >out 2>err
check "gc --json: {deleted, older_than, cache_removed}" python3 -c '
import json, sys
sys.exit(json.load(open("out")) != {"deleted": 0, "older_than": 3600, "cache_removed": 0})'
check "... nothing on stderr" test ! -s err
"$FLOW" gc --json --older-than 0 >out 2>err
check "gc --json --older-than 0: every ended run" python3 -c '
import json, sys
j = json.load(open("out"))
sys.exit(not (j["deleted"] >= 6 and j["older_than"] == 0))'
"$FLOW" gc --json >out 2>err
check "gc --json: the default is 7 days in seconds" python3 -c '
import json, sys
sys.exit(json.load(open("out")) != {"deleted": 0, "older_than": 604800, "cache_removed": 0})'

finish
