#!/usr/bin/env bash
# test_remote_fn.sh -- C functions on workers (docs/c-api.md, "Workers"):
# `fn:` tasks served by examples/c/remote_worker.c through a real
# redis-server. Input, output, state writes and reads, events (emit), a
# failing function retried, a timeout that the running function sees, one
# that ignores it (abandoned), a function no worker serves, SIGTERM drain, a worker SIGKILLed while its
# function runs: another worker claims and completes the entry; the state by
# version (P:state:RUN), and entries whose state version is missing or bad.
set -u
source "$(dirname "$0")/lib.sh"
cd "$T"
export FLOW_STORE="sqlite:$T/flow.db"
RW="$FLOW_BUILD_DIR/examples/remote_worker"
redis_start "$T/redis" || { fail "redis-server"; finish; exit 1; }
WORKERS=""
start_worker() { # NAME [ARGS...]
    local name=$1; shift
    "$RW" --redis "$REDIS_URL" --name "$name" --claim-after 1 "$@" >"$name.log" 2>&1 &
    WPID=$!
    WORKERS="$WORKERS $WPID"
}
stop_workers() {
    local rc=0
    for p in $WORKERS; do kill -TERM "$p" 2>/dev/null; wait "$p" || rc=$?; done
    WORKERS=""
    return $rc
}
trap 'for p in $WORKERS; do kill -9 "$p" 2>/dev/null; done; for p in $REDIS_PIDS; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT

# ---- 1. the example flow on two C workers -----------------------------------
start_worker e1; start_worker e2
rc=0; out=$("$FLOW" run "$FLOW_SOURCE_DIR/examples/c/remote_worker.yaml" --redis "$REDIS_URL" \
    --json 2>err) || rc=$?
check "the example flow completes (rc $rc)" [ "$rc" = 0 ] || cat err
echo "$out" > ex.json
check "square, report, announce and done did their part" python3 -c '
import json; d=json.load(open("ex.json")); t={}
for x in d["tasks"]: t.setdefault(x["task"], x)
assert t["square"]["output"] == [1, 4, 9, 16], t["square"]
assert t["report"]["output"] == 4, t["report"]          # the state it was given: 4 squares
assert t["announce"]["output"] == [1, 4, 9, 16], t["announce"]  # the emitted event
assert all(x["status"] == "completed" for x in d["tasks"]), d["tasks"]'

# ---- 2. everything a remote C function does -----------------------------------
cat > all.yaml <<'Y'
name: all
defaults:
  executor: remote
connect:
  - {from: report.squared, to: heard}
tasks:
  sq:
    fn: square
    input: {n: 7}
  report:
    fn: report
    after: sq
  heard:
    executor: thread
    noop: true
  flaky:
    fn: flaky
    input: {succeed_on: 3}
    retries: 2
    backoff: {delay: 0.05}
  flaky_out:
    fn: flaky
    input: {succeed_on: 9}
    retries: 1
    backoff: {delay: 0.05}
    on_error: continue
  slow:
    fn: slow
    timeout: 0.5s
    kill_grace: 5s
    on_error: continue
  nosuch:
    fn: not_there
    on_error: continue
  stubborn:
    fn: hold
    input: {hold: true, ignore_cancel_ms: 1500}
    timeout: 0.3s
    kill_grace: 0.3s
    on_error: continue
  final:
    executor: thread
    noop: true
    after: [report, flaky]
    input: {squares: "{{ state.squares }}", last: "{{ state.last_square }}", reports: "{{ state.reports }}"}
Y
rc=0; "$FLOW" run all.yaml --redis "$REDIS_URL" --json > all.json 2>err || rc=$?
check "a run with failed tasks (on_error: continue) exits 1 (rc $rc)" [ "$rc" = 1 ] || cat err
check "input, output, state writes, state reads, emit" python3 -c '
import json; d=json.load(open("all.json")); t={}
for x in d["tasks"]: t.setdefault(x["task"], x)
assert t["sq"]["output"] == 49, t["sq"]
assert t["report"]["output"] == 1, t["report"]
assert t["heard"]["output"] == 49, t["heard"]
assert t["final"]["output"] == {"squares": 1, "last": 49, "reports": [49]}, t["final"]'
check "a failing function is retried, and completes on attempt 3" python3 -c '
import json; d=json.load(open("all.json")); t={x["task"]: x for x in d["tasks"]}
assert t["flaky"]["status"] == "completed" and t["flaky"]["attempts"] == 3 and t["flaky"]["output"] == 3, t["flaky"]
f = t["flaky_out"]
assert f["status"] == "failed" and f["attempts"] == 2 and f["error"] == "flaky: attempt 2 fails", f'
check "the timeout reaches the running function, which sees it" python3 -c '
import json; d=json.load(open("all.json")); t={x["task"]: x for x in d["tasks"]}
s = t["slow"]
assert s["status"] == "failed" and "timed out" in s["error"] and "slow saw the cancellation" in s["error"], s'
check "a function no worker serves fails, naming it and the worker" python3 -c '
import json; d=json.load(open("all.json")); t={x["task"]: x for x in d["tasks"]}
e = t["nosuch"]["error"]
assert "function '"'"'not_there'"'"' is not served by worker" in e and ("e1" in e or "e2" in e), e'
check "a function that ignores its cancellation is abandoned after kill_grace" python3 -c '
import json; d=json.load(open("all.json")); t={x["task"]: x for x in d["tasks"]}
s = t["stubborn"]
assert s["status"] == "failed" and "did not stop within its kill_grace; its thread was abandoned" in s["error"], s'
check "SIGTERM: both workers exit 0 (once the abandoned function returned)" stop_workers

# ---- 3. a C worker SIGKILLed while its function runs --------------------------
cat > kill.yaml <<'Y'
name: killc
defaults:
  executor: remote
tasks:
  held:
    fn: hold
  other:
    fn: noop
Y
export REMOTE_WORKER_MARKS="$T/marks"
REMOTE_WORKER_HOLD=1 start_worker k1 --concurrency 2; K1=$WPID
"$FLOW" run kill.yaml --redis "$REDIS_URL" --json > kill.json 2>err &
RUNNER=$!
check "k1 started the function" wait_until 10 grep -qs "held 1 $K1" "$T/marks"
kill -9 "$K1"; wait "$K1" 2>/dev/null
WORKERS=""
start_worker k2; K2=$WPID
rc=0; wait "$RUNNER" || rc=$?
check "the run completed after k2 claimed the entry (rc $rc)" [ "$rc" = 0 ] || cat err
check "held ran on k1 then on k2, as attempt 1" [ "$(cut -d' ' -f1-3 "$T/marks" | tr '\n' ' ')" = "held 1 $K1 held 1 $K2 " ]
check "its output is k2's" python3 -c '
import json,sys; d=json.load(open("kill.json")); t={x["task"]: x for x in d["tasks"]}
assert t["held"]["output"] == int(sys.argv[1]) and t["held"]["attempts"] == 1, t["held"]' "$K2"
check "SIGTERM: k2 exits 0" stop_workers

# ---- 4. feedback, events while running, foreach items ----------------------------
start_worker f1 --concurrency 4
cat > fb.yaml <<'Y'
name: fbr
defaults:
  executor: remote
tasks:
  ask:
    fn: approve
    input: {what: the release, id: go}
  final:
    executor: thread
    noop: true
    after: ask
    input: {decision: "{{ state.decision }}", asked: "{{ tasks.ask.output }}"}
Y
rc=0; "$FLOW" run fb.yaml --redis "$REDIS_URL" --id fb1 >out 2>err || rc=$?
check "a remote function that asks a person pauses the run (exit 3; rc $rc)" [ "$rc" = 3 ] || cat err
check "... saying what waits and how to answer" grep -q "answer with: flow feedback fb1 go --approve" err
check "... the request is open, with the function's message" sh -c '"$1" feedback fb1 --json | grep -q "Approve the release?"' _ "$FLOW"
"$FLOW" feedback fb1 go --approve --by bob 2>err
rc=0; "$FLOW" resume fb1 --redis "$REDIS_URL" --json >fb1.json 2>err || rc=$?
check "answered and resumed, the function runs again with the answer (rc $rc)" [ "$rc" = 0 ] || cat err
check "... as the same attempt: its output and its state write carry the answer" python3 -c '
import json; d=json.load(open("fb1.json")); t={x["task"]: x for x in d["tasks"]}
a = t["ask"]
assert a["status"] == "completed" and a["attempts"] == 1, a
assert a["output"] == {"what": "the release", "approved": True, "by": "bob"}, a["output"]
assert t["final"]["output"]["decision"] is True, t["final"]'
# the runner waits for the answer (--wait), answered from another process
"$FLOW" run fb.yaml --redis "$REDIS_URL" --id fb2 --wait --quiet >fb2.out 2>fb2.err &
RUNNER=$!
check "fb2 asks" wait_until 10 sh -c '"$1" feedback fb2 --json 2>/dev/null | grep -q "\"go\""' _ "$FLOW"
"$FLOW" feedback fb2 go --reject --by carol 2>/dev/null
rc=0; wait "$RUNNER" || rc=$?
check "a waiting runner gets the answer and completes (rc $rc)" [ "$rc" = 0 ] || cat fb2.err
check "... the function saw the rejection" python3 -c '
import json; d=json.load(open("fb2.out")); assert d["asked"] == {"what": "the release", "approved": False, "by": "carol"}, d' || cat fb2.out
# events before the question, then a pause: the next round's events count anew
cat > fbev.yaml <<Y
name: fbev
connect:
  - {from: ask.asking, to: noted}
tasks:
  ask:
    executor: remote
    fn: approve
    input: {what: it, id: q, emit: 2}
  noted:
    shell: 'echo noted >> $T/noted'
Y
rc=0; "$FLOW" run fbev.yaml --redis "$REDIS_URL" --id fbe --quiet >/dev/null 2>err || rc=$?
check "a function that emits, then asks, pauses (rc $rc)" [ "$rc" = 3 ] || cat err
check "... its two events ran their subscriber" [ "$(grep -c noted "$T/noted")" = 2 ]
"$FLOW" feedback fbe q --approve 2>/dev/null
rc=0; "$FLOW" resume fbe --redis "$REDIS_URL" --quiet >/dev/null 2>err || rc=$?
check "answered and resumed, it completes (rc $rc)" [ "$rc" = 0 ] || cat err
check "... the second round's two events ran it twice more, as a local task's would" [ "$(grep -c noted "$T/noted")" = 4 ]
cat > fbbad.yaml <<'Y'
name: fbbad
tasks:
  ask:
    executor: remote
    fn: approve
    input: {selection: true}
Y
rc=0; "$FLOW" run fbbad.yaml --redis "$REDIS_URL" --quiet >out 2>err || rc=$?
check "a malformed request from a remote function fails its task (rc $rc)" [ "$rc" = 1 ]
check "... saying why" grep -q "is a selection without options" err
cat > ev.yaml <<Y
name: evr
defaults:
  executor: remote
connect:
  - {from: ticker.tick, to: heard}
tasks:
  ticker:
    fn: ticker
    input: {ticks: 3, until: "$T/heard.flag"}
  heard:
    executor: process
    shell: 'cat "\$FLOW_INPUT" >> $T/ticks; echo >> $T/ticks; touch $T/heard.flag'
  spread:
    fn: where
    foreach: [a, b, c]
Y
rc=0; "$FLOW" run ev.yaml --redis "$REDIS_URL" --json >ev.json 2>err || rc=$?
check "events and foreach items (rc $rc)" [ "$rc" = 0 ] || cat err
check "events reach the runner while the function runs (it saw their subscriber's file)" python3 -c '
import json; d=json.load(open("ev.json")); t={x["task"]: x for x in d["tasks"]}
assert t["ticker"]["output"] is True, t["ticker"]'
check "each event is applied once: 3 ticks, 3 subscriber runs" [ "$(grep -c . "$T/ticks")" = 3 ]
check "a remote foreach activation reads its item and index" python3 -c '
import json; d=json.load(open("ev.json"))
got = [x["output"] for x in d["tasks"] if x["task"] == "spread" and isinstance(x["output"], list)]
assert got == [[{"item": "a", "index": 0}, {"item": "b", "index": 1}, {"item": "c", "index": 2}]], got'
# the runner dies after two streamed events were applied; the function then
# finishes, and its completion (which carries the events too) is applied by
# the resumed run: each event still starts its subscriber once
cat > ev2.yaml <<Y
name: evkill
connect:
  - {from: ticker.tick, to: heard}
tasks:
  ticker:
    executor: remote
    fn: ticker
    input: {ticks: 2, until: "$T/go.flag"}
  heard:
    shell: 'echo heard >> $T/ticks2'
Y
"$FLOW" run ev2.yaml --redis "$REDIS_URL" --id ev2 --quiet >/dev/null 2>&1 &
RUNNER=$!
heard_done() { "$FLOW" status ev2 --json 2>/dev/null | python3 -c '
import json,sys; d=json.load(sys.stdin)
sys.exit(0 if sum(1 for x in d["tasks"] if x["task"] == "heard" and x["status"] == "completed") == 2 else 1)'; }
check "both events reached the runner and their subscribers completed" wait_until 15 heard_done
kill -9 "$RUNNER"; wait "$RUNNER" 2>/dev/null
touch "$T/go.flag"
rc=0; "$FLOW" resume ev2 --redis "$REDIS_URL" --json >ev2.json 2>err || rc=$?
check "resumed, the run completes with the function's completion (rc $rc)" [ "$rc" = 0 ] || cat err
check "... the function ran once and saw its flag" python3 -c '
import json; d=json.load(open("ev2.json")); t={x["task"]: x for x in d["tasks"]}
assert t["ticker"]["output"] is True and t["ticker"]["attempts"] == 1, t["ticker"]'
check "... and its two events started their subscriber twice in all, not again" [ "$(grep -c heard "$T/ticks2")" = 2 ]
check "SIGTERM: f1 exits 0" stop_workers

# ---- 5. the state reaches functions by version (P:state:RUN) ----------------------
# 30 squares, each writing the state (30 versions), then 30 reports queued
# together: each reads the count the squares left. The entries are looked
# at before any worker runs them: a version, no state.
blob=$(head -c 20000 /dev/zero | tr '\0' y)
cat > waves.yaml <<Y
name: fnwaves
state:
  blob: "$blob"
defaults:
  executor: remote
tasks:
  items:
    executor: thread
    noop: true
    input: [$(seq -s, 1 30)]
  sq:
    fn: square
    foreach: "{{ tasks.items.output }}"
    after: items
  rep:
    fn: report
    foreach: "{{ tasks.items.output }}"
    after: sq
Y
"$FLOW" run waves.yaml --redis "$REDIS_URL" --id fnwaves1 --json > waves.json 2>err &
RUNNER=$!
sq_queued() {
    redis_cmd XRANGE flow:q:default - + > queued.json && python3 -c '
import json, sys
n = sum(1 for _, f in json.load(open("queued.json")) if "fnwaves1" in f)
sys.exit(n != 30)'
}
check "the squares are queued (30 entries)" wait_until 20 sq_queued
check "each names a state version, none carries the state" python3 -c '
import json
for _, f in json.load(open("queued.json")):
    f = dict(zip(f[::2], f[1::2]))
    if f.get("run") != "fnwaves1": continue
    spec = json.loads(f["spec"])
    assert "state" not in spec and spec["state_v"] and len(f["spec"]) < 1000, f'
start_worker v1; start_worker v2
rc=0; wait "$RUNNER" || rc=$?
check "the run completes (rc $rc)" [ "$rc" = 0 ] || cat err
check "every report read the 30 squares of the state it was queued with" python3 -c '
import json; d = json.load(open("waves.json")); t = {}
for x in d["tasks"]: t.setdefault(x["task"], x)
assert t["rep"]["output"] == [30] * 30, t["rep"]["output"]'
check "the state versions are deleted with the run" \
    [ "$(redis_cmd EXISTS flow:state:fnwaves1)" = 0 ]
stop_workers

# ---- 6. entries whose state version is missing or malformed ---------------------
# Written by hand on a queue of their own: each is answered with a completion
# that says what is wrong; an entry with the state in it (a runner before
# state_v) still works.
start_worker h1 --queue handmade
redis_cmd HSET flow:state:hm2 bad.1 '[1, 2]' > /dev/null
redis_cmd HSET flow:state:hm5 good.1 '{"squares": 7}' > /dev/null
n=0
for spec in '{"fn": "report", "input": 1, "state_v": "nope.1"}' \
    '{"fn": "report", "input": 1, "state_v": "bad.1"}' \
    '{"fn": "report", "input": 1, "state_v": "../x"}' \
    '{"fn": "report", "input": 1, "state": {"squares": 5}}' \
    '{"fn": "report", "input": 1, "state_v": "good.1"}'; do
    n=$((n + 1))
    redis_cmd XADD flow:q:handmade '*' v 1 run "hm$n" act 1 attempt 1 task t spec "$spec" > /dev/null
done
answered() { redis_cmd XRANGE "flow:done:$1" - + | grep -q '"result"'; } # (events come first)
all_done() { for i in 1 2 3 4 5; do answered "hm$i" || return 1; done; }
check "each hand-made entry is answered" wait_until 10 all_done
for i in 1 2 3 4 5; do redis_cmd XRANGE flow:done:hm$i - + > "done$i.json"; done
check "a missing version, a malformed one, a bad name: failed, saying so; the old form works" python3 -c '
import json
def result(i):
    (f,) = [dict(zip(f[::2], f[1::2])) for _, f in json.load(open("done%d.json" % i)) if "result" in f]
    return json.loads(f["result"])
r = result(1); assert not r["ok"] and "the state of run hm1 (version nope.1) is not in Redis" in r["error"], r
r = result(2); assert not r["ok"] and "the state of run hm2 (version bad.1) in Redis is not a JSON object" in r["error"], r
r = result(3); assert not r["ok"] and "field '"'"'state_v'"'"' of the spec is not a state version" in r["error"], r
r = result(4); assert r["ok"] and r["output"] == 5, r
r = result(5); assert r["ok"] and r["output"] == 7, r'
stop_workers

# ---- 7. usage ------------------------------------------------------------------
rc=0; FLOW_REDIS= "$RW" 2>err || rc=$?
check "no Redis: exit 1 with a message" [ "$rc" = 1 ] && grep -q "FLOW_REDIS" err
finish
