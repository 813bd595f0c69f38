#!/usr/bin/env bash
# `flow serve`: every route of the HTTP API with curl against a real serve on
# a free loopback port, its errors, the token, SIGTERM pausing its runs and the
# next serve resuming them, takeover of a run whose runner was SIGKILLed, and a
# feedback deadline applied to a run nobody runs.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
unset FLOW_STORE
export FLOW_STORE=sqlite:$T/s.db
mkdir flows
cat > flows/hello.yaml <<'EOF'
name: hello
description: two steps and an approval
tasks:
  a:
    shell: echo '{"n":1}'
  b:
    after: [a]
    shell: echo '{"n":2}'
  ok:
    after: [b]
    feedback: {type: approval, message: ship it?}
EOF
cat > flows/quick.yaml <<'EOF'
name: quick
tasks:
  one:
    shell: echo '{"x":"{{ inputs.x }}"}'
EOF
cat > flows/slow.yaml <<'EOF'
name: slow
tasks:
  one:
    shell: echo one >> marks
  two:
    after: [one]
    shell: touch two.started; sleep 3; echo two >> marks
  three:
    after: [two]
    shell: echo three >> marks
EOF
cat > flows/ask.yaml <<'EOF'
name: ask
tasks:
  q:
    feedback:
      type: selection
      message: which color?
      options: [red, blue]
  t:
    feedback: {type: text, message: why?}
EOF
printf 'name: broken\ntasks:\n  a:\n    run: "not a list"\n' > flows/broken.yaml

SERVE_PID=""
PORT=""
# serve_start LOGFILE ARGS...: a serve on a free port, $PORT and $SERVE_PID set.
serve_start() {
    local log=$1
    shift
    SERVE_LOG=$log
    "$FLOW" serve --listen 127.0.0.1:0 --flows flows "$@" 2> "$log" &
    SERVE_PID=$!
    wait_until 10 grep -q 'listening on' "$log" || { fail "serve did not start: $(cat "$log")"; return 1; }
    PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\)\/.*/\1/p' "$log")
}
SERVE_LOG=""
# serve_stop: SIGTERM; a serve that does not exit 0 (a sanitizer's report
# included) fails the test, its log shown.
serve_stop() {
    local rc
    kill -TERM "$SERVE_PID" 2>/dev/null
    wait "$SERVE_PID"
    rc=$?
    [ "$rc" = 0 ] || fail "serve exited $rc: $(tail -c 2000 "$SERVE_LOG")"
    return $rc
}
trap 'kill -9 $SERVE_PID 2>/dev/null; for p in $REDIS_PIDS; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT

# api METHOD PATH [BODY]: the body in ./body, the status in $code.
api() {
    local args=(-s -o body -w '%{http_code}' -X "$1" "http://127.0.0.1:$PORT$2")
    [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
    code=$(curl "${args[@]}" "${CURL_EXTRA[@]}")
}
CURL_EXTRA=()
# field EXPR: a python expression on the JSON body `j`.
field() { python3 -c "import json,sys; j=json.load(open('body')); v=($1); print(v)"; }
# expect ACTUAL EXPECTED WHAT
expect() { if [ "$1" = "$2" ]; then pass "$3"; else fail "$3: got '$1', expected '$2' (HTTP $code)"; fi; }
status_of() { api GET "/api/v1/runs/$1" && field 'j["status"]'; }
# api_is RUN STATUS: is the run's own status STATUS (its tasks have one too)?
api_is() { [ "$(status_of "$1" 2>/dev/null)" = "$2" ]; }

serve_start serve.log
api GET /healthz
expect "$code $(field 'j["ok"], j["store"]')" "200 (True, 'sqlite:$T/s.db')" "healthz is 200 and names the store"

api GET /api/v1/flows
expect "$(field '[f["name"] for f in j["flows"]]')" "['ask', 'broken', 'hello', 'quick', 'slow']" "flows lists the files of --flows, sorted"
check "a flow that does not load says why" \
    [ "$(field '[f["error"] is not None for f in j["flows"] if f["name"]=="broken"][0]')" = True ]
expect "$(field '[(f["description"], f["tasks"]) for f in j["flows"] if f["name"]=="hello"][0]')" "('two steps and an approval', 3)" "a flow's description and task count"

api GET /api/v1/flows/hello/graph
check "a flow's graph as JSON" [ "$code" = 200 -a "$(field 'sorted(t["name"] for t in j["tasks"])')" = "['a', 'b', 'ok']" ]
code=$(curl -s -D headers -o graph.svg -w '%{http_code}' "http://127.0.0.1:$PORT/api/v1/flows/hello/graph?format=svg&style=0")
check "a flow's graph as SVG, one group a task, without its style" \
    sh -c "[ $code = 200 ] && grep -qi 'content-type: image/svg+xml' headers && grep -q 'id=\"t-ok\"' graph.svg && ! grep -q '<style' graph.svg && python3 -c 'import xml.etree.ElementTree as E; E.parse(\"graph.svg\")'"
api GET /api/v1/flows/nosuch/graph
check "graph of an unknown flow is 404" [ "$code" = 404 ]

# --- starting runs -------------------------------------------------------
api POST /api/v1/runs '{"flow":"quick","id":"q1","inputs":{"x":"hi"}}'
check "POST /runs is 201 with the id" [ "$code" = 201 -a "$(field 'j["id"]')" = q1 ]
wait_until 10 sh -c "[ \"\$(curl -s http://127.0.0.1:$PORT/api/v1/runs/q1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"status\"])')\" = completed ]"
api GET /api/v1/runs/q1
expect "$(field 'j["status"], j["result"]')" "('completed', {'x': 'hi'})" "the run completed with its inputs"
check "a run has a duration" [ "$(field 'j["duration"] >= 0')" = True ]
api POST /api/v1/runs '{"flow":"quick","id":"q1"}'
check "an existing id is 409 and not started again" [ "$code" = 409 -a "$(field 'j["error"]["code"]')" = exists ]
api POST /api/v1/runs '{"flow":"nosuch"}'
check "an unknown flow is 404" [ "$code" = 404 -a "$(field 'j["error"]["code"]')" = not_found ]
api POST /api/v1/runs '{"flow":"../etc/passwd"}'
check "a path is not a flow name (400)" [ "$code" = 400 ]
api POST /api/v1/runs '{"flow":"quick",'
check "malformed JSON is a 400 naming where" [ "$code" = 400 -a "$(field '"line 1" in j["error"]["message"]')" = True ]
api POST /api/v1/runs '[1,2]'
check "a body that is not an object is a 400" [ "$code" = 400 ]
api POST /api/v1/runs '{"flow":"quick","inputs":[1]}'
check "inputs that are not an object are a 400" [ "$code" = 400 ]
api POST /api/v1/runs '{"flow":"broken"}'
check "a flow file that does not load is a 422, saying why" [ "$code" = 422 -a "$(field '"run" in j["error"]["message"]')" = True ]
head -c 2000000 /dev/zero | tr '\0' ' ' > big.json
code=$(curl -s -o body -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary @big.json "http://127.0.0.1:$PORT/api/v1/runs")
check "a body over 1 MiB is a 413" [ "$code" = 413 ]
api DELETE /api/v1/runs
check "a wrong method is a 405" [ "$code" = 405 ]
api GET /api/v1/nosuch
check "an unknown route is a 404 JSON error" [ "$code" = 404 -a "$(field 'j["error"]["code"]')" = not_found ]
api GET /api/v1/runs/nosuch
check "an unknown run is a 404" [ "$code" = 404 ]
# Bytes that are not UTF-8 in what a request names: still the error it is.
api GET /api/v1/runs/no%FFsuch
check "a run id that is not UTF-8 is a 404, not a 500" [ "$code" = 404 -a "$(field 'j["error"]["code"]')" = not_found ]
api GET '/api/v1/runs?status=%FF'
check "a status that is not UTF-8 is a 400" [ "$code" = 400 ]
check "the serve is alive after every bad request" kill -0 "$SERVE_PID"

# --- listing -------------------------------------------------------------
for i in 2 3 4 5; do api POST /api/v1/runs "{\"flow\":\"quick\",\"id\":\"q$i\",\"inputs\":{\"x\":\"$i\"}}"; sleep 0.02; done
wait_until 10 sh -c "curl -s 'http://127.0.0.1:$PORT/api/v1/runs?status=completed' | grep -q '\"q5\"'"
api GET '/api/v1/runs?flow=quick&limit=2'
expect "$(field '[r["id"] for r in j["runs"]]')" "['q5', 'q4']" "runs newest first, limited"
cursor=$(field 'j["next"]')
api GET "/api/v1/runs?flow=quick&limit=2&cursor=$(python3 -c 'import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1]))' "$cursor")"
expect "$(field '[r["id"] for r in j["runs"]]')" "['q3', 'q2']" "the cursor gives the next page"
api GET '/api/v1/runs?status=completed,failed&flow=quick&limit=1000'
expect "$(field 'len(j["runs"]), j["next"]')" "(5, None)" "status filter (a comma list) and flow filter"
api GET '/api/v1/runs?status=bogus'
check "an unknown status is a 400" [ "$code" = 400 ]
api GET '/api/v1/runs?limit=0'
check "a bad limit is a 400" [ "$code" = 400 ]

api GET /api/v1/runs/q1/journal
expect "$(field 'j["records"][0]["seq"], j["records"][0]["type"]')" "(0, 'run_created')" "the journal from its first record"
api GET '/api/v1/runs/q1/journal?after=1&limit=2'
expect "$(field '[r["seq"] for r in j["records"]], j["next"]')" "([2, 3], 3)" "journal after a record, limited"
api GET /api/v1/runs/q1/graph
check "a run's graph" [ "$code" = 200 -a "$(field '[t["name"] for t in j["tasks"]]')" = "['one']" ]

# --- events --------------------------------------------------------------
timeout 10 curl -sN "http://127.0.0.1:$PORT/api/v1/runs/q1/events" > sse1
check "events of an ended run: its records from the first, its status, then the end" \
    sh -c "grep -q '^id: 0\$' sse1 && grep -q '^event: record' sse1 && grep -q '^data: {\"id\":\"q1\",\"status\":\"completed\"}' sse1 && grep -q '^event: end' sse1"
timeout 10 curl -sN -H 'Last-Event-ID: 2' "http://127.0.0.1:$PORT/api/v1/runs/q1/events" > sse2
check "Last-Event-ID resumes after that record" sh -c "! grep -q '^id: [12]\$' sse2 && grep -q '^id: 3\$' sse2"
timeout 10 curl -sN -H 'Last-Event-ID: bogus' "http://127.0.0.1:$PORT/api/v1/runs/q1/events" > sse2b
check "a Last-Event-ID that is not a number gives every record" grep -q '^id: 0$' sse2b

# --- people --------------------------------------------------------------
api POST /api/v1/runs '{"flow":"hello","id":"h1"}'
timeout 20 curl -sN "http://127.0.0.1:$PORT/api/v1/runs/h1/events" > sse3 &
sse_pid=$!
wait_until 10 sh -c "curl -s http://127.0.0.1:$PORT/api/v1/feedback | grep -q '\"h1\"'"
api GET /api/v1/feedback
expect "$(field '[(q["run"], q["task"], q["type"]) for q in j["feedback"]]')" "[('h1', 'ok', 'approval')]" "open requests across runs"
req=$(field 'j["feedback"][0]["request"]')
api GET /api/v1/runs/h1
expect "$(field 'j["status"], len(j["feedback"])')" "('running', 1)" "a run lists its open requests and waits running"
api POST "/api/v1/runs/h1/feedback/$req" '{"text":"yes"}'
check "an answer of the wrong kind is a 400" [ "$code" = 400 ]
api POST "/api/v1/runs/h1/feedback/$req" '{"approve":true,"reject":true}'
check "two answers at once are a 400" [ "$code" = 400 ]
api POST "/api/v1/runs/h1/feedback/nosuch" '{"approve":true}'
check "an unknown request is a 404" [ "$code" = 404 ]
api POST "/api/v1/runs/h1/feedback/$req" '{"approve":true,"by":"ann"}'
check "an approval is taken" [ "$code" = 200 -a "$(field 'j["answer"], j["by"]')" = "(True, 'ann')" ]
api POST "/api/v1/runs/h1/feedback/$req" '{"reject":true,"by":"bob"}'
check "a second answer is a 409 naming the first" [ "$code" = 409 -a "$(field '"ann" in j["error"]["message"]')" = True ]
wait "$sse_pid"
check "the live stream saw the run through to its end" \
    sh -c "grep -q 'feedback_answered\|answer' sse3 && grep -q '\"status\":\"completed\"' sse3 && grep -q '^event: end' sse3"
api GET /api/v1/runs/h1
expect "$(field 'j["status"], j["result"]["approved"], j["result"]["by"]')" "('completed', True, 'ann')" "the answer is the run's result"

api POST /api/v1/runs '{"flow":"ask","id":"k1"}'
wait_until 10 sh -c "curl -s http://127.0.0.1:$PORT/api/v1/runs/k1 | grep -q '\"selection\"'"
api GET /api/v1/runs/k1
qs=$(field '[q["request"] for q in j["feedback"] if q["type"]=="selection"][0]')
qt=$(field '[q["request"] for q in j["feedback"] if q["type"]=="text"][0]')
api POST "/api/v1/runs/k1/feedback/$qs" '{"select":"green"}'
check "an option that is not offered is a 400" [ "$code" = 400 ]
api POST "/api/v1/runs/k1/feedback/$qs" '{"select":"blue"}'
check "a selection is taken" [ "$code" = 200 ]
api POST "/api/v1/runs/k1/feedback/$qt" '{"text":"because"}'
check "a text answer is taken" [ "$code" = 200 ]
wait_until 10 sh -c "[ \"\$(curl -s http://127.0.0.1:$PORT/api/v1/runs/k1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"status\"])')\" = completed ]"
api GET /api/v1/runs/k1
expect "$(field 'j["result"]["q"]["selected"], j["result"]["t"]["text"]')" "('blue', 'because')" "answers are the tasks' outputs"

# --- a run waiting for people can be cancelled ------------------------------
api POST /api/v1/runs '{"flow":"hello","id":"h2"}'
wait_until 10 sh -c "curl -s http://127.0.0.1:$PORT/api/v1/feedback | grep -q '\"h2\"'"
api POST /api/v1/runs/h2/cancel '{"reason":"not today"}'
expect "$code" 202 "cancel of a run waiting for an approval is 202"
wait_until 10 api_is h2 cancelled
api GET /api/v1/runs/h2
expect "$(field 'j["status"], [t["status"] for t in j["tasks"] if t["task"]=="ok"]')" "('cancelled', ['cancelled'])" "the waiting run ended cancelled, its request with it"
"$FLOW" run flows/hello.yaml --id h3 --wait > /dev/null 2> h3.err &
runner=$!
wait_until 10 sh -c "\"$FLOW\" feedback h3 2>/dev/null | grep -q ok"
"$FLOW" cancel h3 > /dev/null 2>&1
wait $runner
expect "$?" 4 "flow run --wait: a cancel ends it (exit 4)"

# --- pause, resume, cancel -----------------------------------------------
rm -f marks two.started
api POST /api/v1/runs '{"flow":"slow","id":"s1"}'
wait_for two.started
api POST /api/v1/runs/s1/pause '{"reason":"lunch"}'
check "pause is 202" [ "$code" = 202 ]
wait_until 10 sh -c "[ \"\$(curl -s http://127.0.0.1:$PORT/api/v1/runs/s1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"status\"])')\" = paused ]"
check "the run paused after its running task" [ "$(status_of s1)" = paused -a "$(runs_of two)" = 1 ]
api POST /api/v1/runs/s1/resume
check "resume is 202" [ "$code" = 202 ]
wait_until 10 sh -c "[ \"\$(curl -s http://127.0.0.1:$PORT/api/v1/runs/s1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"status\"])')\" = completed ]"
check "the resumed run completed, nothing ran twice" [ "$(runs_of one)$(runs_of two)$(runs_of three)" = 111 ]
api POST /api/v1/runs/s1/pause
expect "$code" 409 "pausing an ended run is a 409"
api POST /api/v1/runs/s1/resume
check "resuming a completed run is a 409" [ "$code" = 409 ]
rm -f two.started
api POST /api/v1/runs '{"flow":"slow","id":"s2"}'
wait_for two.started
api POST /api/v1/runs/s2/cancel '{"reason":"wrong input"}'
check "cancel is 202" [ "$code" = 202 ]
wait_until 10 sh -c "[ \"\$(curl -s http://127.0.0.1:$PORT/api/v1/runs/s2 | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"status\"])')\" = cancelled ]"
api GET /api/v1/runs/s2
expect "$(field 'j["status"], "wrong input" in (j["error"] or "")')" "('cancelled', True)" "the run was cancelled with the reason"
api POST /api/v1/runs/nosuch/pause
check "pausing an unknown run is a 404" [ "$code" = 404 ]

# --- retry -----------------------------------------------------------------
cat > flows/flaky.yaml <<'EOF'
name: flaky
tasks:
  first:
    shell: echo first >> marks
  second:
    after: [first]
    shell: test -e fixed && echo '{"ok":true}'
EOF
rm -f marks fixed
api POST /api/v1/runs '{"flow":"flaky","id":"f1"}'
wait_until 10 api_is f1 failed
api POST /api/v1/runs/f1/resume
expect "$code" 409 "resuming a failed run is a 409 (retry it)"
touch fixed
api POST /api/v1/runs/f1/retry '{"tasks":"second"}'
expect "$code" 400 "retry: tasks that are not a list are a 400"
api POST /api/v1/runs/f1/retry '{"tasks":["nosuch"]}'
expect "$code" 400 "retry: an unknown task is a 400"
api POST /api/v1/runs/f1/retry
expect "$code" 202 "retry is 202"
wait_until 10 api_is f1 completed
api GET /api/v1/runs/f1
expect "$(field 'j["status"], [t["attempts"] for t in j["tasks"] if t["task"]=="second"]')" "('completed', [2])" "the retried run completed, its failed task on attempt 2"
expect "$(runs_of first)" 1 "retry: the completed task did not run again"
api POST /api/v1/runs/f1/retry
expect "$code" 409 "retrying a completed run is a 409"

# --- workers and metrics -------------------------------------------------
api GET /api/v1/workers
expect "$code $(field 'j["workers"], j["redis"]')" "200 ([], None)" "no Redis: no workers"
api GET /metrics
check "metrics: runs by status" grep -q '^flow_runs{status="completed"} [1-9]' body
check "metrics: task durations as a histogram" grep -q '^flow_task_duration_seconds_bucket{flow="quick",task="one",le="+Inf"} 5' body
check "metrics: journal commit latency" grep -q '^flow_journal_commit_seconds_count [1-9]' body
check "metrics: queue depth and HTTP requests" \
    sh -c "grep -q '^flow_ready_queue_depth ' body && grep -q '^flow_http_request_duration_seconds_count{route=\"/api/v1/runs\",code=\"201\"}' body"
check "metrics are Prometheus text" sh -c "curl -sI http://127.0.0.1:$PORT/metrics | grep -qi 'content-type: text/plain; version=0.0.4'"

# --- the page ------------------------------------------------------------
code=$(curl -s -D headers -o body -w '%{http_code}' "http://127.0.0.1:$PORT/")
check "the page is served with a strict CSP" \
    sh -c "[ $code = 200 ] && grep -qi \"content-security-policy: default-src 'self'\" headers && grep -qi 'x-content-type-options: nosniff' headers"

# --- garbage: random paths, methods, headers and bodies, raw over a socket --
python3 - "$PORT" <<'PY' > garbage.out 2>&1
import random, socket, sys
port = int(sys.argv[1])
rnd = random.Random(12)
paths = ["/api/v1/runs", "/api/v1/runs/q1", "/api/v1/runs/q1/feedback/x", "/api/v1/flows/%2e%2e/graph",
         "/api/v1/runs/%00", "/api/v1//runs", "/" + "a/" * 50, "/api/v1/runs/q1/events?x=" + "%" * 10,
         "/api/v1/runs?limit=99999999999999999999", "/api/v1/runs?cursor=%7C%7C", "/assets/../../etc/passwd"]
methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "G\x01T"]
bodies = [b"", b"{", b"null", b'{"flow":1}', b'{"flow":"quick","inputs":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}',
          bytes(rnd.getrandbits(8) for _ in range(3000)), b'{"approve":"yes"}', b'{"tasks":[1,2]}']
for i in range(300):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    m = rnd.choice(methods); p = rnd.choice(paths); b = rnd.choice(bodies)
    if rnd.random() < 0.1:
        req = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 400)))
    else:
        req = (f"{m} {p} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(b)}\r\n"
               f"Last-Event-ID: {rnd.choice(['-1', 'abc', '99999999999999999999'])}\r\n\r\n").encode() + b
    try:
        s.sendall(req)
        s.settimeout(0.3)
        s.recv(65536)
    except OSError:
        pass
    s.close()
print("sent 300")
PY
check "garbage requests: the serve is still alive" kill -0 "$SERVE_PID"
api GET /healthz
expect "$code" 200 "garbage requests: the serve still answers"

# --- SIGTERM pauses, the next serve resumes --------------------------------
rm -f marks two.started
api POST /api/v1/runs '{"flow":"slow","id":"s3"}'
wait_for two.started
serve_stop
rc=$?
check "SIGTERM: the serve exits 0" [ "$rc" = 0 ]
check "SIGTERM: its run is paused, saying by whom" \
    sh -c "\"$FLOW\" status s3 --json | python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(not (j[\"status\"]==\"paused\" and j[\"error\"]==\"serve stopped\"))'"
rm -f two.started
"$FLOW" run flows/slow.yaml --id s4 > /dev/null 2>&1 &
runner=$!
wait_for two.started
kill -9 $runner
wait $runner 2>/dev/null
check "a runner SIGKILLed: its run is stopped" run_is s4 stopped
# a run paused by a person stays paused
rm -f two.started
"$FLOW" run flows/slow.yaml --id s5 > /dev/null 2>&1 &
runner=$!
wait_for two.started
"$FLOW" pause s5 > /dev/null 2>&1
wait $runner
serve_start serve2.log
check "the next serve completed the run the last one paused" wait_until 15 run_is s3 completed
check "the next serve says it resumed it" grep -q "resumed run 's3'" serve2.log
check "the serve completed the run whose runner died" wait_until 15 run_is s4 completed
check "the serve says it took it over" grep -q "took over run 's4'" serve2.log
check "a run a person paused stays paused" run_is s5 paused

# --- a deadline passes while nobody runs the flow ------------------------
cat > flows/deadline.yaml <<'EOF'
name: deadline
tasks:
  ok:
    feedback: {type: approval, message: go?, timeout: 1s, default: approve}
EOF
"$FLOW" run flows/deadline.yaml --id d1 > /dev/null 2>&1
check "a run waiting for people pauses (exit 3)" [ $? = 3 ]
wait_until 15 run_is d1 completed
check "the serve applied the deadline: the default answer stands" \
    sh -c "\"$FLOW\" status d1 --json | python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(not (j[\"status\"]==\"completed\" and j[\"result\"][\"approved\"] is True))'"
serve_stop

# --- the token -----------------------------------------------------------
"$FLOW" serve --listen 0.0.0.0:0 --flows flows 2> err
check "another address without --token-file is refused (exit 2)" [ $? = 2 ] && grep -q 'token-file' err
echo 'correct-horse-battery-staple' > token
chmod 644 token
"$FLOW" serve --listen 127.0.0.1:0 --flows flows --token-file token 2> err
check "a token file others can read is refused" [ $? = 2 ] && grep -q 'chmod 600' err
chmod 600 token
serve_start serve3.log --token-file token
api GET /api/v1/runs
check "without the token: 401" [ "$code" = 401 ]
CURL_EXTRA=(-H 'Authorization: Bearer wrong-token-wrong-token')
api GET /api/v1/runs
check "a wrong token: 401" [ "$code" = 401 ]
CURL_EXTRA=(-H 'Authorization: Bearer correct-horse-battery-staple')
api GET /api/v1/runs
check "the token: 200" [ "$code" = 200 ]
api GET /metrics
check "metrics need the token too" [ "$code" = 200 ]
CURL_EXTRA=()
api GET /metrics
check "metrics without the token: 401" [ "$code" = 401 ]
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")
check "the page itself loads without the token (it asks for it)" [ "$code" = 200 ]
serve_stop

# --- workers of the Redis executor, and a remote task run through the serve --
if redis_start "$T/redis"; then
    cat > flows/remote.yaml <<'EOF'
name: remote
tasks:
  far:
    executor: remote
    shell: echo "{\"where\":\"$FLOW_WORKER\"}"
EOF
    "$FLOW" worker --redis "$REDIS_URL" --name w-one > worker.log 2>&1 &
    worker=$!
    serve_start serve4.log --redis "$REDIS_URL"
    wait_until 10 sh -c "curl -s http://127.0.0.1:$PORT/api/v1/workers | grep -q w-one"
    api GET /api/v1/workers
    expect "$code $(field '[w["name"] for w in j["workers"]], j["redis"]')" "200 (['w-one'], True)" "workers: the live workers of --redis"
    api POST /api/v1/runs '{"flow":"remote","id":"far1"}'
    wait_until 15 api_is far1 completed
    api GET /api/v1/runs/far1
    expect "$(field 'j["status"], j["result"]')" "('completed', {'where': 'w-one'})" "a remote task of a served run ran on the worker"
    api GET /metrics
    check "metrics: the workers" grep -q '^flow_workers 1$' body
    serve_stop
    kill -TERM $worker; wait $worker
else
    fail "redis-server did not start"
fi

"$FLOW" serve --flows nosuchdir 2> err
check "a --flows that is not a directory is refused" [ $? = 2 ]
"$FLOW" serve --listen 127.0.0.1:99999 2> err
check "a bad --listen is refused" [ $? = 2 ]
finish
