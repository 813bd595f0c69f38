#!/bin/bash
# Compressed storage (docs/internals/store.md, "Compression") through the CLI:
# a command task prints a 1 MiB compressible JSON output and writes a large
# state; `flow status --json`, `flow logs`, the HTTP API and its event stream
# give them back intact, while the SQLite file (and a disk store's run)
# stays small -- and holds megabytes with FLOW_STORE_COMPRESS=0, whose store
# reads back the same. A run killed after the large output was journaled
# resumes without running that task again, its output read back from the
# deflated record; so does one retried after a later task failed. On a redis
# store (a redis-server of the test's own), with the task run by a remote
# worker too, the output reads back intact and Redis keeps little.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
unset FLOW_STORE FLOW_STORE_COMPRESS

# A 1.1 MB output: a log of one repeated line and 2000 rows; it appends the
# task's name to ./marks when it runs.
cat >gen.py <<'EOF'
import json
with open("marks", "a") as m:
    m.write("big\n")
rows = [{"id": i % 10, "name": "row", "ok": True} for i in range(2000)]
log = "2024-05-01T12:00:00Z INFO worker 7: processed batch, all good. " * 16384
print(json.dumps({"log": log, "rows": rows, "n": len(rows)}))
EOF
python3 -c 'exec(open("gen.py").read().replace("marks", "/dev/null"))' >expected.json
# A 100 kB state value (an argument of `flow ctl set`: under the 128 KiB a
# single argument may have).
python3 -c 'import json; print(json.dumps({"item-%04d" % i: "done and verified" for i in range(3500)}))' >state.json
cat >big.yaml <<'EOF'
name: big
tasks:
  big:
    run: [python3, gen.py]
  keep:
    after: big
    shell: flow ctl set seen "$(cat state.json)"; echo '"kept"'
EOF
export PATH="$(dirname "$FLOW"):$PATH" # `flow ctl` inside the task

# same_json FILE EXPR: the JSON of FILE, at python expression EXPR over `j`,
# equals expected.json.
same_json() {
    python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(eval(sys.argv[2]) != json.load(open("expected.json")))' "$1" "$2"
}
size_of() { stat -c %s "$1"; }

# --- sqlite, compressed -------------------------------------------------------
"$FLOW" run big.yaml --id b1 --store "sqlite:$T/on.db" >out 2>err
rc=$?
check "a run with a 1 MiB output completes" test "$rc" = 0
"$FLOW" status b1 --json --store "sqlite:$T/on.db" >status.json 2>err
check "flow status --json gives the output back intact" same_json status.json 'j["tasks"][0]["output"]'
check "... and the state" python3 -c '
import json
j = json.load(open("status.json"))
raise SystemExit(j["state"]["seen"] != json.load(open("state.json")))'
on=$(size_of on.db)
check "the SQLite file stays small ($on bytes for 2.3 MB of JSON)" test "$on" -lt 262144
"$FLOW" logs b1 --json --store "sqlite:$T/on.db" >logs.json 2>err
check "flow logs --json has the output in its act_completed record" python3 -c '
import json
recs = json.load(open("logs.json"))
done = [r for r in recs if r.get("type") == "act_completed" and r.get("task") == "big"]
raise SystemExit(len(done) != 1 or done[0]["output"] != json.load(open("expected.json")))'

# --- the same with compression off: how earlier versions wrote --------------
FLOW_STORE_COMPRESS=0 "$FLOW" run big.yaml --id b1 --store "sqlite:$T/off.db" >out 2>err
rc=$?
check "with FLOW_STORE_COMPRESS=0 the run completes too" test "$rc" = 0
off=$(size_of off.db)
check "... and its file holds the megabyte ($off bytes)" test "$off" -gt 1100000
"$FLOW" status b1 --json --store "sqlite:$T/off.db" >status.json 2>err
check "a store written uncompressed reads back with compression on" \
    same_json status.json 'j["tasks"][0]["output"]'
echo "sqlite: $on bytes compressed, $off bytes not"

# --- a disk store -------------------------------------------------------------
"$FLOW" run big.yaml --id d1 --store "disk:$T/d" >out 2>err
rc=$?
check "on a disk store the run completes" test "$rc" = 0
"$FLOW" status d1 --json --store "disk:$T/d" >status.json 2>err
check "... flow status --json gives the output back" same_json status.json 'j["tasks"][0]["output"]'
check "... the state too" python3 -c '
import json
raise SystemExit(json.load(open("status.json"))["state"]["seen"] != json.load(open("state.json")))'
dsize=$(find d/runs/d1 -type f -printf "%s\n" | awk "{ n += \$1 } END { print n }")
check "... and the run's files stay small ($dsize bytes)" test "$dsize" -lt 65536

# --- the HTTP API and its event stream ----------------------------------------
mkdir -p flows && cp big.yaml flows/
"$FLOW" serve --listen 127.0.0.1:0 --flows flows --store "sqlite:$T/on.db" 2>serve.log &
SERVE_PID=$!
trap 'kill -9 $SERVE_PID 2>/dev/null; for p in $REDIS_PIDS; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
if wait_until 10 grep -q 'listening on' serve.log; then
    PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\)\/.*/\1/p' serve.log)
    curl -s "http://127.0.0.1:$PORT/api/v1/runs/b1" >api.json
    check "the API gives the output back intact" same_json api.json 'j["tasks"][0]["output"]'
    timeout 20 curl -sN "http://127.0.0.1:$PORT/api/v1/runs/b1/events" >sse
    check "the event stream carries the output in its act_completed record" python3 -c '
import json
recs = [json.loads(l[6:]) for l in open("sse") if l.startswith("data: ")]
done = [r for r in recs if r.get("type") == "act_completed" and r.get("task") == "big"]
raise SystemExit(len(done) != 1 or done[0]["output"] != json.load(open("expected.json")))'
    kill -TERM "$SERVE_PID"
    wait "$SERVE_PID"
    rc=$?
    check "the serve exits 0" test "$rc" = 0
else
    fail "serve did not start: $(cat serve.log)"
fi

# --- kill -9 after the large output, resume -------------------------------------
cat >slow.yaml <<'EOF'
name: slow
tasks:
  big:
    run: [python3, gen.py]
  wait:
    after: big
    shell: test -e go || { touch wait.started; sleep 30; }; echo 1
  last:
    after: wait
    shell: echo '{{ tasks.big.output.n }}'
EOF
: >marks
"$FLOW" run slow.yaml --id k1 --store "sqlite:$T/on.db" >out 2>err &
pid=$!
wait_until 20 test -e wait.started
for i in $(seq 200); do
    "$FLOW" status k1 --store "sqlite:$T/on.db" 2>/dev/null | grep -Eq "^ +2 +wait +running " && break
    sleep 0.05
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null
touch go # the interrupted task runs again, at once this time
timeout 60 "$FLOW" resume k1 --store "sqlite:$T/on.db" >out 2>err
rc=$?
check "the run killed after its large output resumes to completion" test "$rc" = 0
check "... the large output's task did not run again" test "$(runs_of big)" = 1
check "... and the task after it read the output back (n = 2000)" grep -qx 2000 out
"$FLOW" status k1 --json --store "sqlite:$T/on.db" >status.json 2>err
check "... whose status shows it intact" same_json status.json \
    '[t for t in j["tasks"] if t["task"] == "big"][0]["output"]'

# --- flow retry of a run that failed after the large output -----------------------
cat >again.yaml <<'EOF'
name: again
tasks:
  big:
    run: [python3, gen.py]
  flaky:
    after: big
    shell: test -e ok || exit 1; echo '{{ tasks.big.output.n }}'
EOF
: >marks
"$FLOW" run again.yaml --id r1 --store "sqlite:$T/on.db" >out 2>err
rc=$?
check "a run whose task after the large output fails exits 1" test "$rc" = 1
touch ok
"$FLOW" retry r1 --store "sqlite:$T/on.db" >out 2>err
rc=$?
check "flow retry completes it" test "$rc" = 0
check "... without running the large output's task again" test "$(runs_of big)" = 1
check "... the retried task reading that output back (n = 2000)" grep -qx 2000 out

# --- a redis store, and the task on a remote worker ---------------------------------
if redis_start "$T/redis"; then
    RS="$REDIS_URL?prefix=cz"
    "$FLOW" run big.yaml --id b1 --store "$RS" >out 2>err
    rc=$?
    check "on a redis store the run completes" test "$rc" = 0
    "$FLOW" status b1 --json --store "$RS" >status.json 2>err
    check "... flow status --json gives the output back" same_json status.json 'j["tasks"][0]["output"]'
    used=$(( $(redis_cmd MEMORY USAGE cz:journal:b1 SAMPLES 0) + $(redis_cmd MEMORY USAGE cz:run:b1 SAMPLES 0) ))
    check "... and Redis keeps little of it ($used bytes)" test "$used" -lt 65536
    # The output made on a worker, sent back over Redis, journaled by the runner.
    sed 's|^    run: \[python3, gen.py\]|    executor: remote\n    run: [python3, '"$T"'/gen.py]|' big.yaml >remote.yaml
    "$FLOW" worker --redis "$REDIS_URL" --name w1 >w1.log 2>&1 &
    WPID=$!
    trap 'kill -9 $SERVE_PID $WPID 2>/dev/null; for p in $REDIS_PIDS; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
    timeout 60 "$FLOW" run remote.yaml --id w1 --store "$RS" --redis "$REDIS_URL" >out 2>err
    rc=$?
    check "a remote task with a 1 MiB output completes on a worker" test "$rc" = 0
    "$FLOW" status w1 --json --store "$RS" >status.json 2>err
    check "... and its output reads back intact from the redis store" \
        same_json status.json 'j["tasks"][0]["output"]'
    "$FLOW" logs w1 --json --store "$RS" >logs.json 2>err
    check "... where its completion names the worker" python3 -c '
import json
done = [r for r in json.load(open("logs.json")) if r.get("type") == "act_completed" and r.get("task") == "big"]
raise SystemExit(len(done) != 1 or done[0].get("worker") != "w1")'
    kill -TERM "$WPID"
    wait "$WPID" 2>/dev/null
else
    fail "redis-server did not start"
fi

finish
