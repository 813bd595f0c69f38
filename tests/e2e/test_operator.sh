#!/bin/bash
# What an operator sees of runs (docs/cli.md): a closed stdout or stderr never
# stops a run; a run whose runner died reads "stopped" in the list, the detail
# and --json alike; the flow's version in `flow status RUN` and `flow logs`;
# `flow logs --json` keeps each record's own type; every time in --json output
# is an RFC 3339 string. Real pipes, real SIGKILL, the default store.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
unset FLOW_STORE # the default store: .flow/flow.db here
export FLOW_BIN=$FLOW

field() { # field RUN EXPR: a Python expression over r, the run's --json
    "$FLOW" status "$1" --json | python3 -c "import json,sys; r = json.load(sys.stdin); print($2)"
}
wait_for() { # wait_for FILE: until it exists (10 s at most)
    local i
    for i in $(seq 1 200); do [ -e "$1" ] && return 0; sleep 0.05; done
    return 1
}

# Three steps, a bit slow, and a result far bigger than a pipe holds, so that
# the result is written after the reader has gone.
cat >slow.yaml <<'EOF'
name: slow
version: "1.10"
tasks:
  a: {shell: "sleep 0.2; echo a"}
  b: {after: a, shell: "sleep 0.2; echo b"}
  c: {after: b, shell: "sleep 0.2; seq 1 30000 | tr '\\n' ' '"}
EOF
cat >fails.yaml <<'EOF'
name: fails
tasks:
  a: {shell: "sleep 0.2; echo oops >&2; exit 3"}
EOF

# --- a closed stdout or stderr never kills or stops a run --------------------
"$FLOW" run slow.yaml --id p1 2>&1 | head -1 >first
rc=${PIPESTATUS[0]}
check "stderr to a pipe closed after one line: the run still exits 0" test "$rc" = 0
check "... the reader got the run id" grep -qx "run p1" first
check "... and the run completed" test "$(field p1 'r["status"]')" = completed

"$FLOW" run slow.yaml --id p2 2>err | true
rc=${PIPESTATUS[0]}
check "stdout to a pipe nobody reads: exit 0, the run's status" test "$rc" = 0
check "... no error about the lost result" test ! -s err -o -z "$(grep -i 'cannot write' err)"
check "... and the run completed" test "$(field p2 'r["status"]')" = completed

"$FLOW" run slow.yaml --id p3 2>&1 >/dev/null | true
rc=${PIPESTATUS[0]}
check "stderr to a pipe nobody reads: exit 0" test "$rc" = 0
check "... and the run completed" test "$(field p3 'r["status"]')" = completed

"$FLOW" run slow.yaml --id p4 >&- 2>&-
rc=$?
check "stdout and stderr closed: exit 0" test "$rc" = 0
check "... and the run completed" test "$(field p4 'r["status"]')" = completed
check "... the store is intact" test "$("$FLOW" status | grep -c '^p[1-4] .* completed ')" = 4

"$FLOW" run fails.yaml --id p5 2>&1 | true
rc=${PIPESTATUS[0]}
check "a failing run with its output gone still exits 1" test "$rc" = 1
check "... and reads failed" test "$(field p5 'r["status"]')" = failed

"$FLOW" status --json | head -c 10 >/dev/null
rc=${PIPESTATUS[0]}
check "flow status --json | head: exit 0, nothing killed" test "$rc" = 0

# --- a run whose runner died reads "stopped" everywhere ---------------------
cat >hang.yaml <<'EOF'
name: hang
version: 7
tasks:
  one: {shell: "echo 1"}
  two: {after: one, shell: "touch two.started; sleep 30"}
EOF
"$FLOW" run hang.yaml --id live >out 2>err &
live=$!
wait_for two.started
rm -f two.started
"$FLOW" run hang.yaml --id dead >/dev/null 2>&1 &
dead=$!
wait_for two.started
# The task can start before its act_started record is committed (group
# commit): kill the runner once the store has it, as the checks assume.
for _ in $(seq 200); do
    "$FLOW" status dead 2>/dev/null | grep -Eq "^ +2 +two +running " && break
    sleep 0.05
done
kill -KILL "$dead"
{ wait "$dead"; } 2>/dev/null
rm -f two.started
"$FLOW" status >list
check "list: the killed run reads stopped" grep -Eq "^dead +hang +stopped " list
check "list: the live run reads running" grep -Eq "^live +hang +running " list
"$FLOW" status --json >list.json
check "list --json: stopped, runner null; running, runner pid@host" python3 -c '
import json, sys
runs = {r["id"]: r for r in json.load(open("list.json"))}
d, l = runs["dead"], runs["live"]
ok = d["status"] == "stopped" and d["runner"] is None
ok = ok and l["status"] == "running" and l["runner"].startswith(sys.argv[1] + "@")
sys.exit(not ok)' "$live"
"$FLOW" status dead >detail
check "detail: stopped" grep -q "^run dead: stopped (flow hang, version 7)" detail
check "detail: nobody runs it, and how to go on" grep -q "^runner: none .*'flow resume dead' continues it" detail
check "detail: the task it was running reads stopped" grep -Eq "^ +2 +two +stopped " detail
check "detail --json: stopped, runner null, the task stopped" \
    test "$(field dead '[r["status"], r["runner"], [t["status"] for t in r["tasks"]]]')" = \
    "['stopped', None, ['completed', 'stopped']]"
"$FLOW" status live >detail
check "detail of the live run: running, and who runs it" \
    grep -q "^runner: pid $live on host " detail
check "detail --json of the live run: running" test "$(field live 'r["status"]')" = running
"$FLOW" feedback --json >/dev/null 2>err
check "flow feedback reads a stopped run without error" test "$?" = 0
kill -TERM "$live"
wait "$live" 2>/dev/null
"$FLOW" resume dead --quiet >/dev/null 2>err &
resumer=$!
wait_for two.started
check "a resumed stopped run reads running again" test "$(field dead 'r["status"]')" = running
kill -TERM "$resumer"
wait "$resumer" 2>/dev/null

# --- version, record types and times ----------------------------------------
cat >ask.yaml <<'EOF'
name: ask
version: "2.0"
tasks:
  review:
    feedback: {type: approval, message: "ship it?", timeout: 1h, default: true}
EOF
"$FLOW" run ask.yaml --id q1 >/dev/null 2>&1
check "detail shows the version" grep -q "^run q1: paused (flow ask, version 2.0)" <("$FLOW" status q1)
check "detail --json has the version" test "$(field q1 'r["version"]')" = "2.0"
check "run --json has the version" test "$("$FLOW" run ask.yaml --store memory: --json 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')" = "2.0"
check "list --json has the version" python3 -c '
import json, sys
sys.exit(not [r for r in json.load(sys.stdin) if r["id"] == "q1" and r["version"] == "2.0"])' \
    < <("$FLOW" status --json)
"$FLOW" logs q1 >logs
check "logs: run_created names the flow and its version" \
    grep -Eq '^ +0 .* run_created +\{"flow":"ask","version":"2.0",' logs
"$FLOW" logs q1 --json >logs.json
check "logs --json: run_created has flow and version" python3 -c '
import json, sys
r = json.load(open("logs.json"))[0]
sys.exit(not (r["type"] == "run_created" and r["flow"] == "ask" and r["version"] == "2.0"))'
check "logs --json: a feedback record keeps its own type" python3 -c '
import json, sys
recs = [r for r in json.load(open("logs.json")) if r.get("request") and "message" in r]
sys.exit(not (len(recs) == 1 and recs[0]["type"] == "feedback_opened"
              and recs[0]["feedback_type"] == "approval"))'
req=$("$FLOW" feedback q1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["request"])')
"$FLOW" feedback q1 "$req" --approve --by ops 2>err
"$FLOW" resume q1 --quiet >/dev/null 2>err
check "the answered run completes" test "$(field q1 'r["status"]')" = completed
"$FLOW" logs q1 --json >logs.json
"$FLOW" status q1 --json >detail.json
"$FLOW" status --json >list.json
"$FLOW" checkpoints q1 --json >checkpoints.json
"$FLOW" run ask.yaml --id q2 >/dev/null 2>&1
"$FLOW" feedback --json >feedback.json
# Every time-like field is an RFC 3339 string (or null), and no number in any
# of these looks like epoch seconds.
check "RFC 3339 times everywhere in --json output" python3 -c '
import json, re, sys
rfc = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
keys = {"time", "created", "created_at", "started_at", "ended_at", "deadline", "at"}
bad, seen = [], 0
def walk(v, where):
    global seen
    if isinstance(v, dict):
        for k, x in v.items():
            if k in keys and x is not None:
                seen += 1
                if not (isinstance(x, str) and rfc.match(x)):
                    bad.append("%s.%s = %r" % (where, k, x))
            walk(x, where + "." + k)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            walk(x, "%s[%d]" % (where, i))
    elif isinstance(v, (int, float)) and not isinstance(v, bool) and v > 1e9:
        bad.append("%s = %r (epoch seconds?)" % (where, v))
for f in sys.argv[1:]:
    walk(json.load(open(f)), f)
if bad or seen < 20:
    sys.exit("; ".join(bad[:5]) or "only %d times seen" % seen)
' logs.json detail.json list.json checkpoints.json feedback.json

finish
