#!/usr/bin/env bash
# test_chaos.sh -- the remote executor under faults (docs/internals/
# distribution.md, "Delivery and failures"), with a real redis-server:
#   1. workers SIGKILLed at random moments, replaced (at least 20 trials)
#   2. a worker SIGSTOPped while it holds entries, claimed by another, then
#      SIGCONTed: its late completions are dropped
#   3. the clients' Redis connections killed (CLIENT KILL) mid-run
#   4. Redis SIGKILLed and restarted from its append-only file: appendfsync
#      always (nothing lost), everysec, and the loss of the last second (a
#      power cut: the append-only file put back as it was a moment before)
#   5. the runner SIGKILLed at random moments, then `flow resume` (>= 10)
#   6. nothing left running
# Every body appends "RUN ACT ATTEMPT WORKER" to bodies.log: the journal
# (`flow logs --json`) must hold one act_completed per activation, the
# result must equal a local run's, and a body may run twice (at least once
# delivery) but never after its completion was journaled.
# CHAOS_SEED=N repeats the random choices of a failed run.
set -u
source "$(dirname "$0")/lib.sh"
cd "$T"
export FLOW_STORE="sqlite:$T/flow.db"
mkdir -p "$T/tmp"
export TMPDIR="$T/tmp" # the workers' work directories: checked at the end
SEED=${CHAOS_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
echo "seed $SEED (CHAOS_SEED=$SEED repeats this run's choices)"
case "${FLOW_SANITIZE:-}" in
    *address* | *thread*) KILL_TRIALS=8 RUNNER_TRIALS=5 ;;
    *) KILL_TRIALS=20 RUNNER_TRIALS=10 ;;
esac
declare -A WPID=()   # worker name -> pid
NEXT_W=0
cleanup() {
    for p in "${WPID[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
    for p in $REDIS_PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
redis_start "$T/redis" || { fail "redis-server"; finish; exit 1; }

# rcmd ARG...: one command to our redis-server, its reply as JSON (lib.sh)
rcmd() { redis_cmd "$@"; }
aof_rewritten() { rcmd INFO persistence | grep -q 'aof_rewrite_in_progress:0'; }

# poll SECONDS CMD...: until CMD succeeds (false after SECONDS).
poll() {
    local n=$(($1 * 20)); shift
    while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.05; n=$((n - 1)); done
    return 1
}
start_worker() { # start_worker [ARGS...]: a new worker wN ($W), 2 slots
    NEXT_W=$((NEXT_W + 1)); W=w$NEXT_W
    "$FLOW" worker --redis "$REDIS_URL" --name "$W" --claim-after 1s -c 2 "$@" >"$W.log" 2>&1 &
    WPID[$W]=$!
}
stop_worker() { # stop_worker NAME: SIGTERM, and it must exit 0
    local p=${WPID[$1]} rc=0
    kill -TERM "$p" 2>/dev/null
    wait "$p" || rc=$?
    unset "WPID[$1]"
    [ "$rc" = 0 ] || fail "worker $1 exited $rc on SIGTERM: $(tail -3 "$1.log")"
}
stop_workers() { local n; for n in "${!WPID[@]}"; do stop_worker "$n"; done; }
# wait_run SECONDS PID: its exit status in $rc; a runner still there after
# SECONDS is a hang: killed, rc=hang.
wait_run() {
    if poll "$1" bash -c "! kill -0 $2 2>/dev/null"; then
        rc=0; wait "$2" || rc=$?
    else
        kill -9 "$2" 2>/dev/null; wait "$2" 2>/dev/null; rc=hang
    fi
}
lines_of() { grep -c "^$1 " bodies.log 2>/dev/null || true; }
at_least() { [ "$(lines_of "$1")" -ge "$2" ]; }

# The flow: src, a fan-out of 12 (each sleeps a little), their sum.
cat > chaos.yaml.in <<'Y'
name: chaos
defaults:
  executor: remote
tasks:
  src:
    shell: 'echo "$FLOW_RUN_ID $FLOW_ACTIVATION $FLOW_ATTEMPT ${FLOW_WORKER:-local}" >> @T@/bodies.log; echo "[1,2,3,4,5,6,7,8,9,10,11,12]"'
  sq:
    foreach: "{{ tasks.src.output }}"
    shell: 'echo "$FLOW_RUN_ID $FLOW_ACTIVATION $FLOW_ATTEMPT ${FLOW_WORKER:-local}" >> @T@/bodies.log; sleep 0.3; echo $(({{ item }} * {{ item }}))'
    after: [src]
  sum:
    shell: 'echo "$FLOW_RUN_ID $FLOW_ACTIVATION $FLOW_ATTEMPT ${FLOW_WORKER:-local}" >> @T@/bodies.log; python3 -c "import json; print(sum(json.load(open(\"$FLOW_INPUT\"))))"'
    after: [sq]
Y
sed "s|@T@|$T|g" chaos.yaml.in > chaos.yaml
sed '/executor: remote/d; /^defaults:/d' chaos.yaml > local.yaml
WANT=$("$FLOW" run local.yaml -q --id local 2>err)
expect_json "$WANT" 650 "the local run's result (1+4+...+144)"

# check_run RUN [VICTIM]: the journal holds exactly one act_completed per
# activation, nothing failed; prints "acts BODIES DUPS RECLAIMED" (bodies
# that ran more than once for the same attempt; activations that VICTIM
# started and another worker completed). Fails (1) on a problem.
cat > check.py <<'PY'
import collections, json, sys
recs = json.load(open(sys.argv[1]))
run, victim = sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
created = {r["activation"] for r in recs if r["type"] == "act_created"}
done = collections.Counter(r["activation"] for r in recs if r["type"] == "act_completed")
by = {r["activation"]: r.get("worker") for r in recs if r["type"] == "act_completed"}
bad = [r for r in recs if r["type"] in ("act_failed", "act_cancelled")]
bodies = collections.Counter()
ran_on = collections.defaultdict(set)
for line in open(sys.argv[4] if len(sys.argv) > 4 else "bodies.log"):
    f = line.split()
    if len(f) == 4 and f[0] == run:
        bodies[(int(f[1]), int(f[2]))] += 1
        ran_on[int(f[1])].add(f[3])
dups = sum(n - 1 for n in bodies.values())
reclaimed = sum(1 for a, ws in ran_on.items() if victim in ws and by.get(a) != victim)
problems = []
if set(done) != created: problems.append("not completed: %s" % sorted(created - set(done)))
twice = [a for a, n in done.items() if n > 1]
if twice: problems.append("completed more than once (duplicates applied): %s" % twice)
if bad: problems.append("failed/cancelled records: %s" % bad[:3])
nobody = [a for a in done if by.get(a) and not any(k[0] == a for k in bodies)]
if nobody: problems.append("completed without a body: %s" % nobody)
print(len(created), sum(bodies.values()), dups, len(twice), reclaimed)
if problems:
    print("; ".join(problems), file=sys.stderr)
    sys.exit(1)
PY
# journal_ok RUN [VICTIM]: check.py on RUN's journal; sets STATS.
journal_ok() {
    "$FLOW" logs "$1" --json > "$1.journal.json" 2>err || return 1
    STATS=$(python3 check.py "$1.journal.json" "$@" 2>err)
}
# completed_acts RUN: the activations the journal holds as completed.
completed_acts() {
    "$FLOW" status "$1" --json 2>/dev/null | python3 -c 'import json,sys
print(" ".join(str(t["activation"]) for t in json.load(sys.stdin)["tasks"] if t["status"] == "completed"))'
}
# ran_after RUN OFFSET ACTS...: the body lines of RUN after line OFFSET of
# bodies.log that name one of ACTS (completed activations that ran again).
ran_after() {
    local run=$1 off=$2; shift 2
    tail -n +"$((off + 1))" bodies.log | awk -v run="$run" -v acts=" $* " \
        '$1 == run && index(acts, " " $2 " ") { print }'
}

# ---- 1. workers SIGKILLed mid-run, repeatedly --------------------------------
start_worker; start_worker; start_worker
T_ACTS=0 T_BODIES=0 T_DUPS=0 T_APPLIED=0 T_RECLAIMED=0 ok_trials=0
for i in $(seq 1 "$KILL_TRIALS"); do
    run=k$i
    k=$((RANDOM % 10 + 1)) # kill once this many bodies of the run started
    "$FLOW" run chaos.yaml -q --id "$run" --redis "$REDIS_URL" > "$run.out" 2> "$run.err" &
    runner=$!
    poll 20 at_least "$run" "$k" || { fail "trial $i: $k bodies did not start"; }
    names=("${!WPID[@]}")
    if [ $((RANDOM % 4)) = 0 ]; then
        victim=${names[$((RANDOM % ${#names[@]}))]}   # any worker, maybe idle
    else
        victim=$(grep "^$run " bodies.log | tail -1 | cut -d' ' -f4) # one that is busy
        [ -n "${WPID[$victim]:-}" ] || victim=${names[0]}
    fi
    kill -9 "${WPID[$victim]}"; wait "${WPID[$victim]}" 2>/dev/null; unset "WPID[$victim]"
    start_worker
    wait_run 30 "$runner"
    if [ "$rc" != 0 ]; then
        fail "trial $i (kill $victim after $k bodies): the run ended with $rc: $(head -c 600 "$run.err")"
        continue
    fi
    if [ "$(cat "$run.out")" != "$WANT" ]; then
        fail "trial $i: result $(cat "$run.out"), expected $WANT"
        continue
    fi
    if ! journal_ok "$run" "$victim"; then
        fail "trial $i (kill $victim after $k bodies): $(cat err)"
        continue
    fi
    read -r acts bodies dups applied reclaimed <<<"$STATS"
    T_ACTS=$((T_ACTS + acts)) T_BODIES=$((T_BODIES + bodies)) T_DUPS=$((T_DUPS + dups))
    T_APPLIED=$((T_APPLIED + applied)) T_RECLAIMED=$((T_RECLAIMED + reclaimed))
    ok_trials=$((ok_trials + 1))
done
check "worker SIGKILL: $ok_trials/$KILL_TRIALS trials completed with the local result, each activation completed once ($T_ACTS activations, $T_BODIES bodies run, $T_DUPS ran twice, $T_RECLAIMED taken over from the killed worker, $T_APPLIED duplicates applied)" \
    [ "$ok_trials" = "$KILL_TRIALS" -a "$T_APPLIED" = 0 ]
check "worker SIGKILL: some kills hit a busy worker whose entries were taken over ($T_RECLAIMED)" [ "$T_RECLAIMED" -gt 0 ]
f0=$FAILED; stop_workers
check "worker SIGKILL: the surviving workers drained and exited 0" [ "$FAILED" = "$f0" ]

# ---- 2. a frozen worker: claimed by another, then thawed --------------------
cat > stop.yaml <<Y
name: frozen
defaults:
  executor: remote
tasks:
  hold:
    foreach: [1, 2, 3, 4]
    shell: 'echo "\$FLOW_RUN_ID \$FLOW_ACTIVATION \$FLOW_ATTEMPT \$FLOW_WORKER" >> $T/bodies.log; sleep 0.3; echo {{ item }}'
  gate:
    shell: 'echo "\$FLOW_RUN_ID \$FLOW_ACTIVATION \$FLOW_ATTEMPT \$FLOW_WORKER" >> $T/bodies.log; while [ ! -e $T/gate ]; do sleep 0.05; done; echo "{{ tasks.hold.output }}"'
    after: [hold]
Y
start_worker -c 4; A=$W
"$FLOW" run stop.yaml -q --id frozen --redis "$REDIS_URL" > frozen.out 2> frozen.err &
runner=$!
check "frozen: $A started the 4 bodies" poll 20 at_least frozen 4
kill -STOP "${WPID[$A]}"
start_worker -c 4; B=$W
by_b() { [ "$(grep -c "^frozen .* $B\$" bodies.log)" -ge "$1" ]; }
check "frozen: $B claimed and ran the 4 entries after --claim-after" poll 20 by_b 4
check "frozen: the run went on to its gate task (on $B)" poll 20 by_b 5
kill -CONT "${WPID[$A]}"
late_from_a() {
    rcmd XRANGE flow:done:frozen - + | python3 -c "import json,sys
sys.exit(sum(1 for e in json.load(sys.stdin) if '$A' in e[1]) < 4)"
}
check "frozen: thawed, $A published its 4 late completions" poll 20 late_from_a
touch gate
wait_run 20 "$runner"
check "frozen: the run completed (rc $rc)" [ "$rc" = 0 ]
expect_json "$(cat frozen.out)" "[1,2,3,4]" "frozen: result"
check "frozen: one act_completed per activation, none by the thawed worker: $(cat err)" journal_ok frozen
check "frozen: the 4 hold completions applied are $B's" python3 -c "
import json; r=[x for x in json.load(open('frozen.journal.json')) if x['type']=='act_completed' and x['task']=='hold' and x['activation']>1]
assert len(r)==4 and all(x['worker']=='$B' for x in r), r"
check "frozen: both workers alive" kill -0 "${WPID[$A]}" "${WPID[$B]}"
stop_workers

# ---- 3. connections killed mid-run (CLIENT KILL TYPE normal) ----------------
start_worker; start_worker
"$FLOW" run chaos.yaml -q --id ck --redis "$REDIS_URL" > ck.out 2> ck.err &
runner=$!
kills=0 clients=0
while kill -0 "$runner" 2>/dev/null && [ "$kills" -lt 6 ]; do
    sleep "0.$((RANDOM % 4 + 2))"
    n=$(rcmd CLIENT KILL TYPE normal) && kills=$((kills + 1)) clients=$((clients + n))
done
wait_run 30 "$runner"
check "client kill: the run completed across $kills kills ($clients connections closed) (rc $rc)" [ "$rc" = 0 ]
expect_json "$(cat ck.out)" "$WANT" "client kill: result"
check "client kill: one act_completed per activation: $(cat err)" journal_ok ck
echo "   client kill: $STATS (acts bodies ran-twice applied-twice)"
rc=0; out=$("$FLOW" run chaos.yaml -q --id ck2 --redis "$REDIS_URL" 2>ck2.err) || rc=$?
check "client kill: the same workers serve the next run (rc $rc)" [ "$rc" = 0 -a "$out" = "$WANT" ]
stop_workers

# ---- 4. Redis SIGKILLed and restarted from its append-only file ------------
# restart_redis_at RUN K CONF: SIGKILL Redis once K bodies of RUN started,
# restart it (same dir, port, config) 0.3 s later; OFFSET and DONE are the
# bodies.log length and the journal's completed activations at the kill.
restart_redis_at() {
    poll 20 at_least "$1" "$2" || fail "$1: $2 bodies did not start"
    redis_kill
    OFFSET=$(wc -l < bodies.log); DONE=$(completed_acts "$1")
    sleep 0.3
    redis_start "$T/redis" "$3" || fail "$1: redis-server did not restart"
}
redis_stop
redis_start "$T/redis" "appendfsync always"
start_worker; start_worker
"$FLOW" run chaos.yaml -q --id ra --redis "$REDIS_URL" > ra.out 2> ra.err &
runner=$!
restart_redis_at ra $((RANDOM % 8 + 2)) "appendfsync always"
wait_run 30 "$runner"
check "redis kill (always): the run completed (rc $rc)" [ "$rc" = 0 ]
expect_json "$(cat ra.out)" "$WANT" "redis kill (always): result"
check "redis kill (always): one act_completed per activation: $(cat err)" journal_ok ra
again=$(ran_after ra "$OFFSET" $DONE)
check "redis kill (always): no activation completed at the kill ran again [$again]" [ -z "$again" ]

redis_stop
redis_start "$T/redis" "appendfsync everysec"
"$FLOW" run chaos.yaml -q --id re --redis "$REDIS_URL" > re.out 2> re.err &
runner=$!
restart_redis_at re $((RANDOM % 8 + 2)) "appendfsync everysec"
wait_run 30 "$runner"
check "redis kill (everysec): the run completed (rc $rc)" [ "$rc" = 0 ]
expect_json "$(cat re.out)" "$WANT" "redis kill (everysec): result"
check "redis kill (everysec): one act_completed per activation: $(cat err)" journal_ok re
echo "   redis kill (everysec): ran again after the kill: $(ran_after re "$OFFSET" $DONE | wc -l)"
stop_workers

# The last second lost (everysec and a power cut): the append-only file is
# put back as it was before the fan-out was queued, then Redis restarts. No
# worker read the fan-out's entries: they are gone, and the runner must not
# wait for them forever.
cat > lost.yaml <<Y
name: lost
defaults:
  executor: remote
tasks:
  a:
    shell: 'echo "\$FLOW_RUN_ID \$FLOW_ACTIVATION \$FLOW_ATTEMPT \$FLOW_WORKER" >> $T/bodies.log; while [ ! -e $T/lost.go ]; do sleep 0.05; done; echo "[1,2,3]"'
  sq:
    foreach: "{{ tasks.a.output }}"
    shell: 'echo "\$FLOW_RUN_ID \$FLOW_ACTIVATION \$FLOW_ATTEMPT \$FLOW_WORKER" >> $T/bodies.log; echo \$(({{ item }} * {{ item }}))'
    after: [a]
  sum:
    shell: 'python3 -c "import json; print(sum(json.load(open(\"\$FLOW_INPUT\"))))"'
    after: [sq]
Y
start_worker; L=$W
"$FLOW" run lost.yaml -q --id lost --redis "$REDIS_URL" > lost.out 2> lost.err &
runner=$!
check "lost: a started" poll 20 at_least lost 1
rcmd BGREWRITEAOF > /dev/null # one base file: a copy taken now is consistent
poll 10 aof_rewritten
sleep 0.2
cp -a "$T/redis/appendonlydir" "$T/aof.before"
kill -TERM "${WPID[$L]}" # drains: finishes a, takes nothing more
touch lost.go
check "lost: $L drained" wait "${WPID[$L]}"
unset "WPID[$L]"
unread() { # unread N: N entries of the default queue are not delivered yet
    local last
    last=$(rcmd XINFO GROUPS flow:q:default | python3 -c 'import json,sys
g=json.load(sys.stdin)[0]; print(g[g.index("last-delivered-id")+1])')
    [ "$(rcmd XRANGE flow:q:default "($last" + | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -ge "$1" ]
}
check "lost: the fan-out is queued, no worker took it" poll 10 unread 3
redis_kill
rm -rf "$T/redis/appendonlydir"; mv "$T/aof.before" "$T/redis/appendonlydir"
redis_start "$T/redis" "appendfsync everysec"
start_worker
wait_run 20 "$runner"
check "lost: after the last second was lost the run still ended (rc $rc; 0 or 1 with a clear error, not a hang)" \
    [ "$rc" = 0 -o "$rc" = 1 ]
[ "$rc" = hang ] && echo "   lost: the runner waited for entries Redis lost: $(rcmd HGETALL flow:inflight:lost) in flight, queue $(rcmd XLEN flow:q:default)"
[ "$rc" = 0 ] && expect_json "$(cat lost.out)" 14 "lost: result"
stop_workers

# ---- 5. the runner SIGKILLed, then resumed ---------------------------------
start_worker; start_worker
kills=0 trial=0 T_AGAIN=0 ok_trials=0
while [ "$kills" -lt "$RUNNER_TRIALS" ] && [ "$trial" -lt $((RUNNER_TRIALS * 2)) ]; do
    trial=$((trial + 1)); run=rk$trial
    "$FLOW" run chaos.yaml -q --id "$run" --redis "$REDIS_URL" > "$run.out" 2> "$run.err" &
    runner=$!
    poll 20 at_least "$run" 1
    sleep "0.$(printf '%03d' $((RANDOM % 900)))"
    if kill -9 "$runner" 2>/dev/null; then
        wait "$runner" 2>/dev/null
        kills=$((kills + 1))
        OFFSET=$(wc -l < bodies.log); DONE=$(completed_acts "$run")
        rc=0; "$FLOW" resume "$run" -q --redis "$REDIS_URL" > "$run.out" 2> "$run.err" || rc=$?
    else
        wait_run 30 "$runner"; OFFSET=$(wc -l < bodies.log); DONE=""
    fi
    if [ "$rc" != 0 ] || [ "$(cat "$run.out")" != "$WANT" ]; then
        fail "runner kill $run: rc $rc, result $(cat "$run.out"): $(head -c 600 "$run.err")"
        continue
    fi
    if ! journal_ok "$run"; then fail "runner kill $run: $(cat err)"; continue; fi
    again=$(ran_after "$run" "$OFFSET" $DONE)
    if [ -n "$again" ]; then fail "runner kill $run: completed before the kill, ran again: $again"; continue; fi
    read -r acts bodies dups applied reclaimed <<<"$STATS"
    T_AGAIN=$((T_AGAIN + dups))
    ok_trials=$((ok_trials + 1))
done
check "runner SIGKILL: $kills kills in $trial trials, $ok_trials resumed to the local result, one completion per activation, no journaled activation ran again ($T_AGAIN bodies ran twice)" \
    [ "$kills" -ge "$RUNNER_TRIALS" -a "$ok_trials" = "$trial" ]
stop_workers

# ---- 6. nothing left -----------------------------------------------------------
redis_stop
# (the patterns' [x] keep pgrep from finding a shell that holds them)
none_left() { ! pgrep -f -- "$1" >/dev/null; }
check "no worker left" none_left "[-]-redis $REDIS_URL"
check "no task process left" poll 5 none_left "[$]FLOW_RUN_ID.*$T/bodies.log"
check "no redis-server left" none_left "[r]edis-server.*:$REDIS_PORT"
left=$(find "$T/tmp" -mindepth 1 -maxdepth 1 | wc -l)
echo "   work directories left by SIGKILLed workers: $left"
finish
