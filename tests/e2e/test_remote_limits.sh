#!/usr/bin/env bash
# test_remote_limits.sh -- resources and priorities on the remote executor
# with a real redis-server and real `flow worker` processes
# (docs/internals/distribution.md, "Resources" and "Priorities"): a task
# that asks a gpu runs on the worker that has one, and two at once never
# share it; two tasks of cpu 2 on a worker of cpu 2 never overlap, two of
# cpu 1 do; `flow workers` shows capacity and use; a task that no live
# worker could start waits on the runner (not queued, not bounced between
# workers) with its reason in the log, and runs once a worker that fits
# starts; an entry that only a busy worker fits stays parked meanwhile; and
# a worker takes higher-priority entries of other runners first.
set -u
source "$(dirname "$0")/lib.sh"
cd "$T"
export FLOW_STORE="sqlite:$T/flow.db"
redis_start "$T/redis" || { fail "redis-server"; finish; exit 1; }
WORKERS=""

wait_for() { wait_until "$@"; } # SECONDS CMD... (lib.sh)
start_worker() { # NAME [ARGS...]
    local name=$1; shift
    "$FLOW" worker --redis "$REDIS_URL" --name "$name" --claim-after 2s "$@" >"$name.log" 2>&1 &
    WPID=$!
    WORKERS="$WORKERS $WPID"
}
stop_workers() { for p in $WORKERS; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; WORKERS=""; }
trap 'for p in $WORKERS; do kill -9 "$p" 2>/dev/null; done; for p in $REDIS_PIDS; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
# workers_json: `flow workers --json` into workers.json
workers_json() { "$FLOW" workers --redis "$REDIS_URL" --json > workers.json 2>err; }
# no_overlap FILE...: the [start, end] times in the files (one "start end"
# line each) do not overlap; overlap FILE FILE: those two do
no_overlap() {
    python3 - "$@" <<'PY'
import sys
iv = sorted(tuple(map(float, open(f).read().split())) for f in sys.argv[1:])
sys.exit(0 if all(a[1] <= b[0] for a, b in zip(iv, iv[1:])) else 1)
PY
}
overlap() { [ -s "$1" ] && [ -s "$2" ] && ! no_overlap "$1" "$2"; }
# done_of NAME: tasks done by worker NAME (flow workers --json)
done_of() {
    workers_json && python3 -c '
import json, sys; print({x["name"]: x for x in json.load(open("workers.json"))}[sys.argv[1]]["done"])' "$1"
}
# queued N: the default queue's stream holds N entries or more
queued() { [ "$(redis_cmd XLEN flow:q:default)" -ge "$1" ]; }
# times TASK: a shell line that writes "START END" of its sleep into TASK.t
times() { echo "s=\$(date +%s.%N); sleep $2; echo \$s \$(date +%s.%N) > $T/$1.t; echo \$FLOW_WORKER > $T/$1.w"; }

# ---- 1. gpu tasks run on the worker that has a gpu, one at a time -------------
cat > gpu.yaml <<Y
name: gpu
defaults:
  executor: remote
tasks:
  g1: {shell: '$(times g1 0.3)', resources: {gpu: 1}}
  g2: {shell: '$(times g2 0.3)', resources: {gpu: 1}}
  g3: {shell: '$(times g3 0.3)', resources: {gpu: 1}}
  g4: {shell: '$(times g4 0.3)', resources: {gpu: 1}}
  c1: {shell: '$(times c1 0.1)'}
Y
start_worker nogpu --resources gpu=0 --concurrency 4
start_worker gpu --resources cpu=4,memory=2G,gpu=1 --concurrency 4
check "both workers are live" wait_for 5 bash -c "\"$FLOW\" workers --redis $REDIS_URL | grep -q '^nogpu ' && \"$FLOW\" workers --redis $REDIS_URL | grep -q '^gpu '"
rc=0; "$FLOW" run gpu.yaml --redis "$REDIS_URL" -q > gpu.out 2>err || rc=$?
check "the gpu run completed (rc $rc)" [ "$rc" = 0 ]
check "every gpu task ran on the worker with a gpu ($(cat g?.w | tr '\n' ' '))" \
    [ "$(cat g1.w g2.w g3.w g4.w | sort -u)" = gpu ]
check "the gpu tasks never ran at once (gpu=1)" no_overlap g1.t g2.t g3.t g4.t
check "a task that asks nothing ran too ($(cat c1.w))" [ -s c1.w ]
# in_use: what the jobs running hold, as of the last heartbeat (every second)
in_use_is() { # WORKER JSON
    workers_json && python3 -c '
import json, sys; w = {x["name"]: x for x in json.load(open("workers.json"))}
sys.exit(w[sys.argv[1]]["in_use"] != json.loads(sys.argv[2]))' "$1" "$2"
}
check "flow workers --json: the gpu worker's use back to 0" \
    wait_for 3 in_use_is gpu '{"cpu": 0, "memory": 0, "gpu": 0}'
check "flow workers --json: each worker's capacity" python3 -c '
import json; w={x["name"]: x for x in json.load(open("workers.json"))}
g, n = w["gpu"], w["nogpu"]
assert g["resources"] == {"cpu": 4, "memory": 2 * 1024**3, "gpu": 1}, g
assert n["resources"]["gpu"] == 0 and n["resources"]["cpu"] >= 1 and n["resources"]["memory"] > 0, n'
"$FLOW" workers --redis "$REDIS_URL" > workers.txt 2>err
check "flow workers shows CPU, MEMORY and GPU as used/capacity" \
    grep -Eq '^gpu +.* 0/4 +0/2G +0/1 ' workers.txt

# While a gpu task runs, its worker shows the gpu in use; another gpu task
# waits parked for it (no other worker takes it, none reads it again).
cat > busygpu.yaml <<Y
name: busygpu
defaults:
  executor: remote
tasks:
  long: {shell: 'touch $T/long.started; i=0; while [ ! -e $T/release ] && [ \$i -lt 400 ]; do sleep 0.05; i=\$((i + 1)); done; echo \$FLOW_WORKER > $T/long.w', resources: {gpu: 1, cpu: 1}}
Y
cat > nextgpu.yaml <<Y
name: nextgpu
defaults:
  executor: remote
tasks:
  next: {shell: 'echo \$FLOW_WORKER > $T/next.w', resources: {gpu: 1}}
Y
"$FLOW" run busygpu.yaml --redis "$REDIS_URL" -q > /dev/null 2>err &
R1=$!
check "the long gpu task started" wait_for 10 test -e long.started
"$FLOW" run nextgpu.yaml --redis "$REDIS_URL" -q > /dev/null 2>err &
R2=$!
parked() { # the entry of `next` is pending with the parked consumer, read at most twice
    redis_cmd XPENDING flow:q:default workers - + 10 > pending.json
    python3 -c '
import json, sys; p = json.load(open("pending.json"))
sys.exit(0 if any(e[1] == "parked (resources)" and e[3] <= 2 for e in p) else 1)'
}
check "the second gpu task is parked while the gpu is busy" wait_for 5 parked
check "the busy worker shows its gpu and a cpu in use" \
    wait_for 3 in_use_is gpu '{"cpu": 1, "memory": 0, "gpu": 1}'
sleep 0.5
check "... and stays parked, not read again by the worker without a gpu" parked
touch release # the long task ends now (a busy machine must not end it before)
rc=0; wait "$R1" || rc=$?; rc2=0; wait "$R2" || rc2=$?
check "both gpu runs completed (rc $rc, $rc2)" [ "$rc" = 0 ] && [ "$rc2" = 0 ]
check "the parked task ran on the gpu worker once it was free" [ "$(cat next.w)" = gpu ]
stop_workers

# ---- 2. cpu: two tasks of cpu 2 on a worker of cpu 2 never overlap -----------
cat > cpu.yaml <<Y
name: cpu
defaults:
  executor: remote
tasks:
  a: {shell: '$(times a 0.5)', resources: {cpu: 2}}
  b: {shell: '$(times b 0.5)', resources: {cpu: 2}}
Y
cat > half.yaml <<Y
name: half
defaults:
  executor: remote
tasks:
  h1: {shell: '$(times h1 0.5)', resources: {cpu: 1}}
  h2: {shell: '$(times h2 0.5)', resources: {cpu: 1}}
Y
start_worker cpu2 --resources cpu=2,gpu=0 --concurrency 4
rc=0; "$FLOW" run cpu.yaml --redis "$REDIS_URL" -q > /dev/null 2>err || rc=$?
check "the cpu run completed (rc $rc)" [ "$rc" = 0 ]
check "two tasks of cpu 2 on a worker of cpu 2 never overlap" no_overlap a.t b.t
rc=0; "$FLOW" run half.yaml --redis "$REDIS_URL" -q > /dev/null 2>err || rc=$?
check "two tasks of cpu 1 on it run at once (rc $rc)" [ "$rc" = 0 ] && overlap h1.t h2.t
stop_workers

# ---- 3. no live worker could start it: it waits on the runner ----------------
cat > wait.yaml <<Y
name: waitgpu
defaults:
  executor: remote
tasks:
  train: {shell: 'echo \$FLOW_WORKER > $T/train.w; echo trained', resources: {gpu: 1}}
Y
start_worker cpuonly --resources gpu=0
check "cpuonly is live" wait_for 5 bash -c "\"$FLOW\" workers --redis $REDIS_URL | grep -q '^cpuonly '"
"$FLOW" run wait.yaml --redis "$REDIS_URL" > wait.out 2> wait.err &
RUNNER=$!
check "the runner says why the task waits (in its log)" wait_for 5 grep -q \
    "task 'train' waits (resources: gpu 1, more than any live worker of queue 'default' has (the most: gpu 0))" wait.err
sleep 1.5
check "meanwhile it did not run" [ ! -e train.w ]
check "... and was not queued: the queue's stream is empty" [ "$(redis_cmd XLEN flow:q:default)" = 0 ]
check "... so no worker took it (cpuonly's done count: $(done_of cpuonly))" [ "$(done_of cpuonly)" = 0 ]
check "the runner still waits" kill -0 "$RUNNER"
start_worker gpu1 --resources gpu=1
rc=0; wait "$RUNNER" || rc=$?
check "once a gpu worker started, the task ran on it (rc $rc, $(cat train.w 2>/dev/null))" \
    [ "$rc" = 0 ] && [ "$(cat train.w)" = gpu1 ]
expect_json "$(cat wait.out)" '"trained"' "the waiting task's output"
stop_workers

# ---- 4. priority: higher entries first, across runners -------------------------
cat > hold.yaml <<Y
name: hold
defaults:
  executor: remote
tasks:
  hold: {shell: 'touch $T/hold.started; i=0; while [ ! -e $T/hold.go ] && [ \$i -lt 600 ]; do sleep 0.05; i=\$((i+1)); done'}
Y
cat > low.yaml <<Y
name: low
defaults:
  executor: remote
  priority: 0
tasks:
  l1: {shell: 'echo l1 >> $T/order'}
  l2: {shell: 'echo l2 >> $T/order'}
  l3: {shell: 'echo l3 >> $T/order'}
Y
cat > high.yaml <<Y
name: high
defaults:
  executor: remote
  priority: 10
tasks:
  h1: {shell: 'echo h1 >> $T/order'}
  h2: {shell: 'echo h2 >> $T/order'}
  h3: {shell: 'echo h3 >> $T/order'}
Y
rm -f order hold.go
start_worker one --concurrency 1
"$FLOW" run hold.yaml --redis "$REDIS_URL" -q > /dev/null 2>err &
RH=$!
check "the worker is busy" wait_for 10 test -e hold.started
"$FLOW" run low.yaml --redis "$REDIS_URL" -q > /dev/null 2>err &
RL=$!
check "the low entries are queued first" wait_for 5 queued 3
"$FLOW" run high.yaml --redis "$REDIS_URL" -q > /dev/null 2>err &
RHI=$!
# The worker is held until the high entries are queued too: then it chooses.
high_queued() { [ "$(redis_cmd XLEN flow:q:default@10)" -ge 3 ]; }
check "the high entries are queued behind them" wait_for 30 high_queued
touch hold.go
rc=0; for p in $RH $RL $RHI; do wait "$p" || rc=$?; done
check "the three runs completed (rc $rc)" [ "$rc" = 0 ]
check "the high-priority entries ran before the low ones ($(tr '\n' ' ' < order))" \
    [ "$(head -3 order | sort | tr '\n' ' ')" = "h1 h2 h3 " ] && [ "$(tail -3 order | sort | tr '\n' ' ')" = "l1 l2 l3 " ]
check "priority 10 has a stream of its own; 0 keeps the queue's" \
    [ "$(redis_cmd EXISTS flow:q:default@10)" = 1 ] && [ "$(redis_cmd ZRANGE flow:levels:default 0 -1)" = '["10"]' ]
stop_workers

redis_stop
finish
