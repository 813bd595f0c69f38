#!/usr/bin/env bash
# Limits across processes (docs/file-format.md "Limits"): real concurrent
# `flow run` processes on one store -- sqlite, disk and redis (a redis-server
# of its own) -- share a concurrency key's slots and a rate limit's window;
# a holder killed with SIGKILL frees its slot; waiting activations say why in
# flow status; resources refuse what could never fit; the flow's own
# concurrency holds whole runs.
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1

# Each element appends "start T" and "end T" (epoch seconds) to spans.
cat >conc.yaml <<'EOF'
name: conc
tasks:
  work:
    foreach: "{{ inputs.items }}"
    concurrency: {limit: 2, key: "shared-{{ inputs.group }}"}
    shell: 'echo "start $(date +%s.%N)" >> spans; sleep 0.25; echo "end $(date +%s.%N)" >> spans'
EOF
cat >rate.yaml <<'EOF'
name: rate
tasks:
  hit:
    foreach: "{{ inputs.items }}"
    rate_limit: {limit: "4/s", key: api}
    shell: 'echo "$(date +%s.%N)" >> hits'
EOF

# most_at_once FILE: the most "start"s not yet "end"ed at any time.
most_at_once() {
    python3 - "$1" <<'PY'
import sys
ev = []
for line in open(sys.argv[1]):
    kind, t = line.split()
    ev.append((float(t), 0 if kind == "end" else 1))
ev.sort()
n = most = 0
for _, d in ev:
    n += 1 if d else -1
    most = max(most, n)
print(most)
PY
}
# most_in_window FILE SECONDS: the most starts within any window. The times
# are taken by the commands, a process start after their token: the window
# looked at is 15% shorter, for that start's jitter on a loaded machine.
most_in_window() {
    python3 - "$1" "$2" <<'PY'
import sys
ts = sorted(float(l) for l in open(sys.argv[1]))
w = float(sys.argv[2])
print(max(sum(1 for u in ts if t <= u < t + w * 0.85) for t in ts))
PY
}

four='items:=[1,2,3,4,5,6]'
for kind in sqlite disk redis; do
    case $kind in
    sqlite) S="sqlite:$T/s.db" ;;
    disk) S="disk:$T/d" ;;
    redis)
        redis_start "$T/redis" || { fail "no redis-server"; continue; }
        S="$REDIS_URL?prefix=lim"
        ;;
    esac
    : >spans
    pids=""
    for p in 1 2 3; do
        "$FLOW" run conc.yaml --store "$S" --input "$four" --input group=g --quiet \
            >"out$p" 2>"err$p" &
        pids="$pids $!"
    done
    rc=0
    for p in $pids; do wait "$p" || rc=$?; done
    check "$kind: three processes finish their runs (rc=$rc)" test "$rc" = 0
    check "$kind: all 18 elements ran" test "$(grep -c '^start' spans)" = 18
    most=$(most_at_once spans)
    check "$kind: never more than 2 of the key at once, across processes (most: $most)" test "$most" = 2

    # A rate limit across two processes: 4 starts in any second.
    : >hits
    t0=$(date +%s.%N)
    "$FLOW" run rate.yaml --store "$S" --input 'items:=[1,2,3,4,5]' --quiet >/dev/null 2>err &
    a=$!
    "$FLOW" run rate.yaml --store "$S" --input 'items:=[1,2,3,4,5]' --quiet >/dev/null 2>err2 &
    b=$!
    wait "$a" "$b"
    took=$(python3 -c "import time; print('%.2f' % (time.time() - $t0))")
    n=$(wc -l <hits)
    w=$(most_in_window hits 1.0)
    check "$kind: 10 starts of two processes, at most 4 in any second (most $w, $n starts)" \
        test "$n" = 10 -a "$w" -le 4
    check "$kind: ... which takes two seconds at least ($took s)" \
        python3 -c "import sys; sys.exit(not $took >= 1.9)"
    [ "$kind" = redis ] && redis_stop
done

# --- a holder killed with SIGKILL frees its slot ------------------------------
S="sqlite:$T/k.db"
cat >hold.yaml <<'EOF'
name: hold
tasks:
  long:
    concurrency: {limit: 1, key: solo}
    shell: 'touch held; sleep 30'
EOF
cat >after.yaml <<'EOF'
name: after
tasks:
  quick:
    concurrency: {limit: 1, key: solo}
    shell: 'echo done'
EOF
"$FLOW" run hold.yaml --id holder --store "$S" --quiet >/dev/null 2>&1 &
holder=$!
wait_for held || fail "the holder did not start"
"$FLOW" run after.yaml --id waiter --store "$S" --quiet >wout 2>werr &
waiter=$!
wait_until 30 sh -c "'$FLOW' status waiter --store '$S' 2>/dev/null | grep -q \"concurrency key 'solo'\""
"$FLOW" status waiter --store "$S" >st 2>&1
check "a waiting element shows 'waiting' and why in flow status" \
    grep -q "quick .*waiting .*concurrency key 'solo': 1 at once, all held" st
"$FLOW" status waiter --store "$S" --json >stj 2>&1
check "... and in --json: status waiting, waiting_for" python3 -c '
import json, sys
t = json.load(open("stj"))["tasks"][0]
sys.exit(not (t["status"] == "waiting" and "solo" in t["waiting_for"]))'
kill -9 "$holder"
wait "$holder" 2>/dev/null
t0=$(date +%s.%N)
wait "$waiter"
rc=$?
took=$(python3 -c "import time; print('%.2f' % (time.time() - $t0))")
check "the waiter runs once the holder is killed (rc=$rc)" test "$rc" = 0
check "... within a few seconds, not the 15 s lease (${took} s)" \
    python3 -c "import sys; sys.exit(not $took < 5)"
"$FLOW" status waiter --store "$S" --json >stj 2>&1
check "... and reads completed, no longer waiting" python3 -c '
import json, sys
sys.exit(json.load(open("stj"))["tasks"][0]["status"] != "completed")'

# --- the flow's concurrency: one run per tenant at a time, across processes --
S="sqlite:$T/t.db"
cat >tenant.yaml <<'EOF'
name: tenant
concurrency: {limit: 1, key: "{{ inputs.tenant }}"}
tasks:
  step:
    shell: 'echo "start $(date +%s.%N)" >> "spans-{{ inputs.tenant }}"; sleep 0.3; echo "end $(date +%s.%N)" >> "spans-{{ inputs.tenant }}"'
  step2:
    after: step
    shell: 'echo "start $(date +%s.%N)" >> "spans-{{ inputs.tenant }}"; sleep 0.1; echo "end $(date +%s.%N)" >> "spans-{{ inputs.tenant }}"'
EOF
rm -f spans-a spans-b
pids=""
for t in a a b b; do
    "$FLOW" run tenant.yaml --store "$S" --input tenant=$t --quiet >/dev/null 2>&1 &
    pids="$pids $!"
done
rc=0
for p in $pids; do wait "$p" || rc=$?; done
check "four runs of two tenants complete (rc=$rc)" test "$rc" = 0
check "one run of a tenant at a time: its runs' steps never overlap" \
    test "$(most_at_once spans-a)" = 1 -a "$(most_at_once spans-b)" = 1
first_b=$(awk 'NR == 1 {print $2}' spans-b)
last_a=$(tail -1 spans-a | awk '{print $2}')
check "... while the other tenant's runs go on" python3 -c "import sys; sys.exit(not $first_b < $last_a)"

# --- resources ---------------------------------------------------------------
cat >gpu.yaml <<'EOF'
name: gpu
tasks:
  train:
    shell: 'echo trained'
    resources: {gpu: 1}
EOF
"$FLOW" run gpu.yaml --store memory: >out 2>err
rc=$?
check "a task that asks a gpu the engine has not: exit 2" test "$rc" = 2
check "... naming the task and the resource" grep -q "task 'train' asks gpu 1, more than this engine has (gpu 0)" err
"$FLOW" run gpu.yaml --store memory: --resources gpu=1 --quiet >out 2>err
check "with --resources gpu=1 it runs" grep -q trained out
"$FLOW" run gpu.yaml --store memory: --resources gpu=one >out 2>err
rc=$?
check "a bad --resources is a usage error (exit 2)" test "$rc" = 2 -a -n "$(grep "bad --resources 'gpu=one'" err)"
"$FLOW" validate gpu.yaml --resources gpu=0 >out 2>err
rc=$?
check "flow validate --resources gpu=0: exit 2, at the task" \
    test "$rc" = 2 -a -n "$(grep '^gpu.yaml:3:3: error: task' err)"

cat >cpu.yaml <<'EOF'
name: cpu
tasks:
  each:
    foreach: "{{ inputs.items }}"
    resources: {cpu: 1}
    shell: 'echo "start $(date +%s.%N)" >> cpus; sleep 0.2; echo "end $(date +%s.%N)" >> cpus'
EOF
: >cpus
"$FLOW" run cpu.yaml --store memory: --resources cpu=2 --jobs 8 --input 'items:=[1,2,3,4,5,6]' \
    --quiet >/dev/null 2>err
check "cpu=2 and tasks of cpu 1: two at once although --jobs 8 ($(most_at_once cpus))" \
    test "$(most_at_once cpus)" = 2

finish
