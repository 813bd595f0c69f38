#!/usr/bin/env bash
# test_remote.sh -- the remote executor and `flow worker` with a real
# redis-server (docs/internals/distribution.md): same results as local runs,
# retries and timeouts on workers, a worker SIGKILLed mid-task (its entry is
# claimed by another), SIGTERM drain, `flow workers`, a runner SIGKILLed
# then resumed with the completions published meanwhile, a Redis that
# hangs (SIGSTOP) while a worker's command ends, and the run's state queued
# once per version (P:state:RUN), its changes reaching the workers.
set -u
source "$(dirname "$0")/lib.sh"
cd "$T"
export FLOW_STORE="sqlite:$T/flow.db"
redis_start "$T/redis" || { fail "redis-server"; finish; exit 1; }
WORKERS=""

wait_for() { wait_until "$@"; } # SECONDS CMD... (lib.sh)
start_worker() { # NAME [ARGS...]
    local name=$1; shift
    "$FLOW" worker --redis "$REDIS_URL" --name "$name" --claim-after 1s "$@" >"$name.log" 2>&1 &
    WPID=$!
    WORKERS="$WORKERS $WPID"
}
stop_workers() { for p in $WORKERS; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; WORKERS=""; }
trap 'for p in $WORKERS; do kill -9 "$p" 2>/dev/null; done; for p in $REDIS_PIDS; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT

# ---- 1. the same result as locally, on two workers --------------------------
cat > fan.yaml <<'Y'
name: fan
defaults:
  executor: remote
tasks:
  src:
    run: [sh, -c, 'echo "[1,2,3]"']
  sq:
    foreach: "{{ tasks.src.output }}"
    run: [sh, -c, 'echo $(({{ item }} * {{ item }}))']
    after: [src]
  sum:
    shell: 'python3 -c "import json,sys; print(sum(json.load(open(\"$FLOW_INPUT\"))))"'
    after: [sq]
    save: total
Y
sed '/executor: remote/d; /^defaults:/d' fan.yaml > fan_local.yaml
start_worker w1; start_worker w2
local_out=$("$FLOW" run fan_local.yaml -q 2>err)
rc=0; remote_out=$("$FLOW" run fan.yaml -q --id fan1 --redis "$REDIS_URL" 2>err) || rc=$?
check "remote run completes (rc 0)" [ "$rc" = 0 ]
expect_json "$remote_out" "$local_out" "remote result equals the local one"
expect_json "$remote_out" 14 "1+4+9"
"$FLOW" logs fan1 --json > log.json 2>err
named=$(python3 -c '
import json
recs=json.load(open("log.json"))
print(sum(1 for r in recs if r.get("type")=="act_completed" and (r.get("worker") or (r.get("payload") or {}).get("worker")) in ("w1","w2")))')
check "the 5 remote completions name their worker ($named)" [ "$named" = 5 ]

# flow workers --json lists both
rc=0; "$FLOW" workers --redis "$REDIS_URL" --json > workers.json 2>err || rc=$?
check "flow workers --json lists w1 and w2" python3 -c '
import json; names=sorted(w["name"] for w in json.load(open("workers.json"))); assert names==["w1","w2"], names'
stop_workers
check "SIGTERM: the idle workers exited 0" true

# ---- 2. retries, timeouts, on_error on workers --------------------------------
cat > pol.yaml <<Y
name: pol
defaults:
  executor: remote
tasks:
  flaky:
    shell: 'if [ -e $T/flaky.1 ]; then echo ok; else touch $T/flaky.1; exit 3; fi'
    retries: 2
    backoff: {delay: 0.1}
  slow:
    run: [sh, -c, 'echo \$\$ > $T/slow.pid; exec sleep 30']
    timeout: 1s
    kill_grace: 1s
    on_error: continue
Y
start_worker p1
rc=0; "$FLOW" run pol.yaml --redis "$REDIS_URL" --json > pol.json 2>err || rc=$?
check "a failed remote run exits 1 (on_error: continue)" [ "$rc" = 1 ]
check "flaky completed on its second attempt" python3 -c '
import json; d=json.load(open("pol.json")); t={x["task"]:x for x in d["tasks"]}
assert t["flaky"]["status"]=="completed" and t["flaky"]["attempts"]==2, t["flaky"]'
check "slow timed out on the worker" python3 -c '
import json; d=json.load(open("pol.json")); t={x["task"]:x for x in d["tasks"]}
assert t["slow"]["status"]=="failed" and "timed out" in t["slow"]["error"], t["slow"]'
check "the timed-out command was killed on the worker" wait_for 5 bash -c "! kill -0 \$(cat $T/slow.pid) 2>/dev/null"
stop_workers

# ---- 3. a worker SIGKILLed mid-task: another claims its entry ---------------
cat > kill.yaml <<Y
name: killw
defaults:
  executor: remote
tasks:
  long:
    shell: 'echo \$FLOW_WORKER >> $T/long.runs; [ "\$FLOW_WORKER" = k1 ] && exec sleep 30; echo done'
  other:
    run: [echo, '"x"']
Y
start_worker k1 --concurrency 1; K1=$WPID
"$FLOW" run kill.yaml --redis "$REDIS_URL" --json > kill.json 2>err &
RUNNER=$!
check "k1 started the long task" wait_for 10 grep -qs k1 "$T/long.runs"
kill -9 "$K1"
start_worker k2
rc=0; wait "$RUNNER" || rc=$?
check "the run completed after k2 claimed the entry (rc $rc)" [ "$rc" = 0 ]
check "long ran on k1 then k2" [ "$(tr '\n' ' ' < "$T/long.runs")" = "k1 k2 " ]
check "every task completed once" python3 -c '
import json; d=json.load(open("kill.json")); assert all(t["status"]=="completed" and t["attempts"]==1 for t in d["tasks"]), d["tasks"]'
stop_workers

# ---- 4. SIGTERM drains: the running task finishes ---------------------------
cat > drain.yaml <<Y
name: drain
defaults:
  executor: remote
tasks:
  t:
    shell: 'touch $T/drain.started; sleep 1; echo drained'
Y
start_worker d1; D1=$WPID
"$FLOW" run drain.yaml --redis "$REDIS_URL" -q > drain.out 2>err &
RUNNER=$!
check "d1 started the task" wait_for 10 test -e "$T/drain.started"
kill -TERM "$D1"
rc=0; wait "$D1" || rc=$?
check "the draining worker exited 0" [ "$rc" = 0 ]
rc=0; wait "$RUNNER" || rc=$?
check "the drained task completed (rc $rc)" [ "$rc" = 0 ] && expect_json "$(cat drain.out)" '"drained"' "drained output"
WORKERS=""

# ---- 5. the runner SIGKILLed, then resumed ------------------------------------
cat > crash.yaml <<Y
name: crash
defaults:
  executor: remote
tasks:
  a:
    shell: 'echo a >> $T/crash.runs; while [ ! -e $T/crash.go ]; do sleep 0.05; done; echo 1'
  b:
    shell: 'echo b >> $T/crash.runs; echo 2'
    after: [a]
Y
start_worker c1
"$FLOW" run crash.yaml --redis "$REDIS_URL" --id crash1 -q > /dev/null 2>err &
RUNNER=$!
check "a started on the worker" wait_for 10 grep -qs a "$T/crash.runs"
kill -9 "$RUNNER"; wait "$RUNNER" 2>/dev/null
touch "$T/crash.go"
check "a's completion is published while no runner is there" wait_for 10 bash -c \
    "redis-cli -p $REDIS_PORT XLEN flow:done:crash1 2>/dev/null | grep -q 1 || python3 -c '
import socket; s=socket.create_connection((\"127.0.0.1\",$REDIS_PORT)); s.sendall(b\"XLEN flow:done:crash1\r\n\"); import sys; sys.exit(0 if s.recv(64).startswith(b\":1\") else 1)'"
rc=0; out=$("$FLOW" resume crash1 --redis "$REDIS_URL" -q 2>err) || rc=$?
check "resume completes (rc $rc)" [ "$rc" = 0 ]
expect_json "$out" 2 "resumed result"
check "a ran once, b once" [ "$(tr '\n' ' ' < "$T/crash.runs")" = "a b " ]
stop_workers

# ---- 6. Redis restarted mid-run (append-only file) -----------------------------
redis_stop
redis_start "$T/redis" "appendfsync always"
cat > restart.yaml <<Y
name: restart
defaults:
  executor: remote
tasks:
  a:
    shell: 'echo a >> $T/restart.runs; while [ ! -e $T/restart.go ]; do sleep 0.05; done; echo 1'
  b:
    shell: 'echo b >> $T/restart.runs; echo 2'
    after: [a]
Y
start_worker r1
"$FLOW" run restart.yaml --redis "$REDIS_URL" -q > restart.out 2>err &
RUNNER=$!
check "a started before Redis went down" wait_for 10 grep -qs a "$T/restart.runs"
redis_kill
touch "$T/restart.go"
sleep 0.3 # Redis stays down a moment: the worker holds a's completion meanwhile
redis_start "$T/redis" "appendfsync always"
rc=0; wait "$RUNNER" || rc=$?
check "the run completed across the restart (rc $rc)" [ "$rc" = 0 ]
expect_json "$(cat restart.out)" 2 "restart result"
check "a ran once, b once" [ "$(tr '\n' ' ' < "$T/restart.runs")" = "a b " ]
stop_workers

# ---- 7. usage errors ------------------------------------------------------------
rc=0; FLOW_REDIS= "$FLOW" worker 2>err || rc=$?
check "flow worker without Redis: exit 2" [ "$rc" = 2 ] && check "names --redis" grep -q -- "--redis" err
rc=0; "$FLOW" worker --redis redis://127.0.0.1:1/0 2>err || rc=$?
check "flow worker with Redis down: exit 1, one line" [ "$rc" = 1 ] && [ "$(wc -l < err)" = 1 ]
rc=0; "$FLOW" worker --redis "$REDIS_URL" --claim-after xyz 2>err || rc=$?
check "bad --claim-after: exit 2" [ "$rc" = 2 ]
rc=0; "$FLOW" run "$T/restart.yaml" --redis http://x --store memory: 2>err || rc=$?
check "flow run with a malformed --redis: exit 2, names the URL" [ "$rc" = 2 ] && grep -q "http://x" err
rc=0; "$FLOW" run "$T/restart.yaml" --redis redis://127.0.0.1:1/0 --store memory: --quiet 2>err || rc=$?
check "flow run with Redis down: exit 1 at once, the connection's message" [ "$rc" = 1 ] &&
    grep -q "cannot connect to redis://127.0.0.1:1/0" err

# ---- 8. a timeout nobody answers: no worker serves the queue -----------------------
cat > "$T/nobody.yaml" <<'Y'
name: nobody
tasks:
  lonely:
    run: [sleep, "60"]
    executor: remote
    queue: nobody-serves-this
    timeout: 1s
    kill_grace: 0.5s
Y
s=$(date +%s%N)
rc=0; "$FLOW" run "$T/nobody.yaml" --redis "$REDIS_URL" --store memory: --quiet 2>err || rc=$?
took=$(( ($(date +%s%N) - s) / 1000000 ))
check "a remote timeout with no worker ends the attempt (exit 1 in ${took} ms)" [ "$rc" = 1 ] &&
    [ "$took" -lt 10000 ] && grep -q "timed out after 1s (no worker reported that it stopped)" err

# ---- 9. the state goes to Redis once per version, not in every entry --------------
# 60 entries of a 20 KB state queued with no worker there: each names a
# version of P:state:RUN instead of carrying the state (60 x 20 KB before).
# Then the workers run them, a task changes the state, and the second wave's
# commands read the new value from $FLOW_STATE.
blob=$(head -c 20000 /dev/zero | tr '\0' x)
cat > waves.yaml <<Y
name: waves
state:
  wave: 1
  blob: "$blob"
defaults:
  executor: remote
tasks:
  items:
    executor: thread
    noop: true
    input: [$(seq -s, 1 60)]
  first:
    foreach: "{{ tasks.items.output }}"
    after: items
    run: [sh, -c, 'echo "[\$(grep -o "\"wave\":[0-9]*" "\$FLOW_STATE" | cut -d: -f2), \$(wc -c < "\$FLOW_STATE")]"']
  bump:
    after: first
    run: [echo, "2"]
    save: wave
  second:
    foreach: "{{ tasks.items.output }}"
    after: bump
    run: [sh, -c, 'echo "[\$(grep -o "\"wave\":[0-9]*" "\$FLOW_STATE" | cut -d: -f2), \$(wc -c < "\$FLOW_STATE")]"']
Y
queued_of() { # RUN: how many entries of RUN the default queue holds
    redis_cmd XRANGE flow:q:default - + | python3 -c 'import json,sys
print(sum(1 for _, f in json.load(sys.stdin) if dict(zip(f[::2], f[1::2])).get("run") == sys.argv[1]))' "$1"
}
"$FLOW" run waves.yaml --redis "$REDIS_URL" --id waves1 --json > waves.json 2>err &
RUNNER=$!
waves_queued() { [ "$(queued_of waves1)" = 60 ]; }
check "the first wave is queued (60 entries)" wait_for 20 waves_queued
redis_cmd XRANGE flow:q:default - + > queued.json
redis_cmd HGETALL flow:state:waves1 > states.json
check "each entry names a state version and carries no state" python3 -c '
import json
entries = [f for _, f in json.load(open("queued.json")) if "waves1" in f]
assert len(entries) == 60, len(entries)
states = json.load(open("states.json")); versions = dict(zip(states[::2], states[1::2]))
size = 0
for f in entries:
    f = dict(zip(f[::2], f[1::2])); spec = json.loads(f["spec"]); size += len(f["spec"])
    assert "state" not in spec and spec["state_v"] in versions, spec
assert size < 60 * 1000, size
assert len(versions) == 1, list(versions)
st = json.loads(list(versions.values())[0])
assert st["wave"] == 1 and len(st["blob"]) == 20000, st["wave"]'
start_worker s1; start_worker s2
rc=0; wait "$RUNNER" || rc=$?
check "the run completes (rc $rc)" [ "$rc" = 0 ]
check "the first wave read wave 1, the second wave 2, with the whole state" python3 -c '
import json; d = json.load(open("waves.json"))
outs = {}
for t in d["tasks"]:
    outs.setdefault(t["task"], t["output"]) # a foreach first: the list of its items
assert len(outs["first"]) == 60 and len(outs["second"]) == 60, outs
assert all(o[0] == 1 and o[1] > 20000 for o in outs["first"]), outs["first"][:3]
assert all(o[0] == 2 and o[1] > 20000 for o in outs["second"]), outs["second"][:3]'
check "the state versions are deleted with the run" \
    [ "$(redis_cmd EXISTS flow:state:waves1)" = 0 ]

# ---- 10. a state that changes at every step keeps a few versions in Redis ---------
# 40 remote steps one after another, each writing the state: the versions no
# running attempt uses go, so the last step finds a handful, not 40.
{
    echo "name: steps"; echo "defaults: {executor: remote}"; echo "tasks:"
    echo "  s1: {run: [echo, '1'], save: n}"
    for i in $(seq 2 40); do echo "  s$i: {run: [echo, '$i'], save: n, after: s$((i - 1))}"; done
} > steps.yaml
cat >> steps.yaml <<Y
  last:
    after: s40
    run: [sh, -c, 'touch $T/steps.started; while [ ! -e $T/steps.go ]; do sleep 0.05; done; grep -o "\"n\":[0-9]*" "\$FLOW_STATE" | cut -d: -f2']
Y
"$FLOW" run steps.yaml --redis "$REDIS_URL" --id steps1 -q > steps.out 2>err &
RUNNER=$!
check "the last step is running" wait_for 30 test -e "$T/steps.started"
versions=$(redis_cmd HLEN flow:state:steps1)
check "P:state:RUN holds a few versions, not 41 ($versions)" [ "$versions" -ge 1 ] &&
    [ "$versions" -le 20 ]
touch "$T/steps.go"
rc=0; wait "$RUNNER" || rc=$?
check "the steps complete (rc $rc)" [ "$rc" = 0 ]
expect_json "$(cat steps.out)" 40 "the last step read the state the 40th wrote"
stop_workers

# ---- 11. a state version Redis lost is written again ----------------------------
# The entry is queued, then its state version is deleted: the worker fails
# the attempt, saying so, and the retry's entry (the same version, written
# as far as the runner knows) is refused by the submit script until the
# runner writes the version again.
cat > lost.yaml <<'Y'
name: lost
state: {greeting: hello}
tasks:
  a:
    executor: remote
    run: [sh, -c, 'grep -o "\"greeting\":\"[a-z]*\"" "$FLOW_STATE" | cut -d: -f2']
    retries: 1
    backoff: {delay: 0.1}
Y
"$FLOW" run lost.yaml --redis "$REDIS_URL" --id lost1 --json > lost.json 2>err &
RUNNER=$!
lost_queued() { [ "$(queued_of lost1)" = 1 ]; }
check "the entry is queued" wait_for 20 lost_queued
redis_cmd DEL flow:state:lost1 > /dev/null
start_worker l1
rc=0; wait "$RUNNER" || rc=$?
check "the run completes on the second attempt (rc $rc)" [ "$rc" = 0 ] && python3 -c '
import json; d = json.load(open("lost.json")); (t,) = [x for x in d["tasks"] if x["task"] == "a"]
assert t["status"] == "completed" and t["attempts"] == 2 and t["output"] == "hello", t'
"$FLOW" logs lost1 --json > lostlog.json 2>err
check "the first attempt failed, naming the lost version" python3 -c '
import json; recs = json.load(open("lostlog.json"))
errs = [json.dumps(r) for r in recs if "is not in Redis" in json.dumps(r)]
assert errs and "the state of run lost1 (version " in errs[0], errs'
check "the submit script refused the retry until its version was written again" python3 -c '
import json, sys; info = json.loads(sys.argv[1])
assert "errorstat_NOSTATE:count=" in info, info' "$(redis_cmd INFO errorstats)"
stop_workers

# ---- 12. Redis hangs (SIGSTOP): the worker still reaps what ends ---------------------
# Its main thread waits for a Redis reply half a second at most, then goes
# back to its commands; what it could not write is written once Redis answers.
cat > hang.yaml <<Y
name: hang
defaults:
  executor: remote
tasks:
  h:
    shell: 'echo \$\$ > $T/hang.pid; while [ ! -e $T/hang.go ]; do sleep 0.05; done; echo 3'
Y
start_worker h1
"$FLOW" run hang.yaml --redis "$REDIS_URL" --store memory: -q > hang.out 2>err &
RUNNER=$!
check "h started on the worker" wait_for 10 test -s "$T/hang.pid"
kill -STOP "$REDIS_PID"
sleep 0.5 # the worker is waiting for Redis now (it checks the cancel keys every 100 ms)
touch "$T/hang.go"
reaped() { [ ! -e "/proc/$(cat "$T/hang.pid")" ]; }
check "while Redis hangs, the worker reaps its ended command within 2 s" wait_for 2 reaped
kill -CONT "$REDIS_PID"
rc=0; wait "$RUNNER" || rc=$?
check "the run completed once Redis answered again (rc $rc)" [ "$rc" = 0 ]
expect_json "$(cat hang.out)" 3 "hang result"
stop_workers

redis_stop
finish
