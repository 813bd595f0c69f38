#!/usr/bin/env bash
# test_http.sh -- `http:` tasks (docs/file-format.md, "HTTP tasks") run by
# `flow run` against the stand-in server (tests/support/http_standin.py) on
# 127.0.0.1: JSON and text bodies, templates in the method, url, headers and
# body, a secret in a header and in the url (redacted in the journal, in
# errors, in the sqlite file), `expect`, statuses that fail at once (404)
# and ones that are retried (503, 429, after Retry-After), a closed port
# (retried), the request's timeout and the task's, the size limit, TLS
# verification on by default (a self-signed certificate is refused; trusted
# with `ca_file`), a failure that stays failed through a resume, and the
# errors of the file at their positions.
set -u
source "$(dirname "$0")/lib.sh"
cd "$T"

# A self-signed certificate for 127.0.0.1 (the HTTPS listener).
if ! openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >openssl.log 2>&1; then
    fail "openssl could not make a certificate: $(head -3 openssl.log)"
    finish
    exit 1
fi
standin_start "$T/standin" --cert cert.pem --key key.pem || { fail "stand-in"; finish; exit 1; }
P=$STANDIN_PORT
S=$STANDIN_TLS_PORT
B="http://127.0.0.1:$P"
DB="$T/db/flow.db"
export FLOW_STORE="sqlite:$DB"

# jq-like: field PATH of the JSON on stdin (python3 expression on `d`)
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(eval(sys.argv[1])))' "$1"; }
status_json() { "$FLOW" status "$1" --json; }
count_of() { curl_get "/count/$1" | field 'd["count"]'; }
curl_get() { python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "$B$1"; }

# ---- 1. bodies, templates ------------------------------------------------
cat >get.yaml <<EOF
name: get
tasks:
  json:
    http: {url: "$B/json"}
  text:
    http: {url: "$B/text"}
  echo:
    http:
      method: "{{ inputs.verb }}"
      url: "$B/echo?q={{ inputs.q }}&n={{ tasks.json.output.n }}&w={{ inputs.w | url }}"
      headers:
        X-Thing: "{{ inputs.q }}-x"
        X-Count: 3
      body: {a: "{{ inputs.q }}", n: "{{ tasks.json.output.n }}", list: [1, "{{ inputs.q }}"]}
      expect: [200, 201]
    after: json
  raw:
    http:
      method: POST
      url: "$B/echo"
      body: "plain {{ inputs.q }}"
EOF
rc=0; "$FLOW" run get.yaml --id get1 --input q=hello --input verb=put --input 'w=a b&c=d/é' >out 2>err || rc=$?
check "get.yaml completes ($rc)" [ "$rc" = 0 ]
st=$(status_json get1)
expect_json "$(echo "$st" | field '[t["output"] for t in d["tasks"] if t["task"] == "json"][0]')" \
    '{"hello": "world", "n": 1}' "a JSON body is the output, parsed"
expect_json "$(echo "$st" | field '[t["output"] for t in d["tasks"] if t["task"] == "text"][0]')" \
    '"plain text"' "a text body is the output, a string"
echo_out=$(echo "$st" | field '[t["output"] for t in d["tasks"] if t["task"] == "echo"][0]')
expect_json "$(echo "$echo_out" | field '[d["method"], d["query"], d["headers"]["x-thing"], d["headers"]["x-count"], d["headers"]["content-type"]]')" \
    '["PUT", {"q": "hello", "n": "1", "w": "a b&c=d/é"}, "hello-x", "3", "application/json"]' \
    "method, url (| url encodes a value), headers rendered (a method from a template, upper-cased)"
expect_json "$(echo "$echo_out" | field 'd["json"]')" '{"a": "hello", "n": 1, "list": [1, "hello"]}' \
    "a mapping body is sent as JSON, its templates rendered (types kept)"
raw_out=$(echo "$st" | field '[t["output"] for t in d["tasks"] if t["task"] == "raw"][0]')
expect_json "$(echo "$raw_out" | field '[d["body"], d["headers"]["content-type"]]')" \
    '["plain hello", "text/plain; charset=utf-8"]' "a string body is sent as it is, as text"
expect_json "$(echo "$st" | field '[t["info"]["http"]["status"] for t in d["tasks"] if t["task"] == "json"][0]')" \
    '200' "the status is journaled with the completion (info.http)"

# ---- 2. secrets: in a header and the url; never in the store --------------
export NET_TOKEN='tok-net-9f8e7d6c'
cat >secret.yaml <<EOF
name: secret
secrets: [NET_TOKEN]
tasks:
  call:
    http:
      url: "$B/echo?key={{ secrets.NET_TOKEN }}"
      headers: {Authorization: "Bearer {{ secrets.NET_TOKEN }}"}
  missing:
    after: call
    http: {url: "$B/status/404?key={{ secrets.NET_TOKEN }}"}
EOF
rc=0; "$FLOW" run secret.yaml --id sec1 >out 2>err || rc=$?
check "secret.yaml fails at the 404 (exit 1: $rc)" [ "$rc" = 1 ]
st=$(status_json sec1)
expect_json "$(echo "$st" | field '[t["output"]["headers"]["authorization"] for t in d["tasks"] if t["task"] == "call"][0]')" \
    '"Bearer ***"' "the server got the header; the journal keeps it redacted"
err_missing=$(echo "$st" | field '[t["error"] for t in d["tasks"] if t["task"] == "missing"][0]')
check "the error names the status, the url (redacted) and the body: $err_missing" \
    grep -q 'HTTP 404 from GET http://127.0.0.1:[0-9]*/status/404?key=\*\*\*: status 404: nothing here' <<<"$err_missing"
check "flow run's error is redacted too" grep -qF 'key=***' err
"$FLOW" logs sec1 --json >logs.json 2>&1
if grep -qF "$NET_TOKEN" "$DB"* logs.json out err; then
    fail "the secret is in the store or in what flow printed"
else
    pass "the secret is nowhere in the sqlite files nor in flow's output"
fi

# A header that carries a secret is not sent on to a redirect's host: the redirect is the
# answer. Without one, redirects are followed. A secret put in the url with `| url` is
# redacted in its percent-encoded form too.
export NET_ODD='tok+odd/9f8e=7d'
cat >redir.yaml <<EOF
name: redir
secrets: [NET_TOKEN, NET_ODD]
tasks:
  plain:
    http: {url: "$B/redirect?to=/json"}
  keyed:
    http:
      url: "$B/redirect?to=/echo"
      headers: {X-Api-Key: "{{ secrets.NET_TOKEN }}"}
    on_error: continue
  odd:
    http: {url: "$B/status/503?k={{ secrets.NET_ODD | url }}"}
    on_error: continue
EOF
rc=0; "$FLOW" run redir.yaml --id red1 >out 2>err || rc=$?
st=$(status_json red1)
expect_json "$(echo "$st" | field '[t["output"] for t in d["tasks"] if t["task"] == "plain"][0]')" \
    '{"hello": "world", "n": 1}' "a redirect is followed"
check "with a secret in a header, it is not: the 302 fails the task, naming it" \
    grep -q "HTTP 302 from GET" <<<"$(echo "$st" | field '[t["error"] for t in d["tasks"] if t["task"] == "keyed"][0]')"
if grep -qF 'tok%2Bodd%2F9f8e%3D7d' "$DB"* out err; then
    fail "a secret percent-encoded by | url is in the store or in what flow printed"
else
    pass "a secret percent-encoded by | url is redacted too"
fi

# ---- 3. a 404 is not retried; 503 and 429 are, after Retry-After ----------
cat >status.yaml <<EOF
name: status
tasks:
  gone:
    retries: 3
    backoff: {delay: 10ms}
    http: {url: "$B/flaky/gone?fail=100&status=404"}
EOF
rc=0; "$FLOW" run status.yaml --id st1 >out 2>err || rc=$?
check "a 404 fails the run (exit 1: $rc)" [ "$rc" = 1 ]
check "a 404 is asked once, whatever the retries ($(count_of gone))" [ "$(count_of gone)" = 1 ]
expect_json "$(status_json st1 | field '[t["attempts"] for t in d["tasks"]][0]')" 1 "one attempt"

cat >later.yaml <<EOF
name: later
tasks:
  busy:
    retries: 3
    backoff: {delay: 10ms}
    http: {url: "$B/flaky/busy?fail=2&status=503&retry_after=1"}
  limited:
    retries: 2
    backoff: {delay: 10ms}
    http: {url: "$B/flaky/limited?fail=1&status=429"}
  expected:
    http: {url: "$B/status/404", expect: 404}
EOF
rc=0; "$FLOW" run later.yaml --id lat1 >out 2>err || rc=$?
check "later.yaml completes ($rc)" [ "$rc" = 0 ]
check "503 was retried until it worked: 3 requests ($(count_of busy))" [ "$(count_of busy)" = 3 ]
gaps=$(curl_get /count/busy | field '[round(d["times"][i+1] - d["times"][i], 2) for i in range(len(d["times"]) - 1)]')
check "the retries waited Retry-After (1s), not the 10ms backoff: $gaps" \
    python3 -c 'import json,sys; g=json.loads(sys.argv[1]); sys.exit(not (len(g) == 2 and all(0.9 <= x < 3 for x in g)))' "$gaps"
check "429 without Retry-After: retried after the backoff ($(count_of limited))" [ "$(count_of limited)" = 2 ]
"$FLOW" logs lat1 --json >logs.json
expect_json "$(field '[r["delay"] for r in d if r["type"] == "act_retrying" and r["task"] == "busy"]' <logs.json)" \
    '[1.0, 1.0]' "the journal's act_retrying holds the delay taken"
expect_json "$(status_json lat1 | field '[t["output"] for t in d["tasks"] if t["task"] == "expected"][0]')" \
    '"status 404: nothing here"' "expect: 404 takes a 404 as success"

# ---- 4. a closed port: retried -------------------------------------------
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >closed.yaml <<EOF
name: closed
tasks:
  nobody:
    retries: 1
    backoff: {delay: 10ms}
    http: {url: "http://127.0.0.1:$closed/x"}
EOF
rc=0; "$FLOW" run closed.yaml --id cl1 >out 2>err || rc=$?
check "nobody listens: the run fails ($rc)" [ "$rc" = 1 ]
expect_json "$(status_json cl1 | field '[t["attempts"] for t in d["tasks"]][0]')" 2 \
    "a connection error is retried"
check "the error says the connection failed" grep -qi "connect" err

# ---- 5. timeouts, the size limit -----------------------------------------
cat >slow.yaml <<EOF
name: slow
tasks:
  own:
    http: {url: "$B/slow?seconds=5", timeout: 1s}
  task:
    timeout: 1s
    http: {url: "$B/slow?seconds=5"}
EOF
t0=$(date +%s.%N)
rc=0; "$FLOW" run slow.yaml --id slow1 >out 2>err || rc=$?
took=$(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 1))")
check "slow.yaml fails ($rc)" [ "$rc" = 1 ]
check "the timeouts stopped the requests early (${took}s)" python3 -c "import sys; sys.exit(not $took < 4.5)"
st=$(status_json slow1)
check "the request's timeout: 'no complete answer within 1s'" \
    grep -q "no complete answer within 1s" <<<"$(echo "$st" | field '[t["error"] for t in d["tasks"] if t["task"] == "own"]')"
check "the task's timeout cancels the request" \
    grep -q "timed out after 1s" <<<"$(echo "$st" | field '[t["error"] for t in d["tasks"] if t["task"] == "task"]')"

cat >big.yaml <<EOF
name: big
tasks:
  big:
    retries: 2
    backoff: {delay: 10ms}
    http: {url: "$B/big?bytes=3000000", max_size: 1M}
  small:
    http: {url: "$B/big?bytes=1000", max_size: 1M}
    output: text
EOF
rc=0; "$FLOW" run big.yaml --id big1 >out 2>err || rc=$?
check "big.yaml fails ($rc)" [ "$rc" = 1 ]
st=$(status_json big1)
check "over max_size: a clear error" grep -q "over the limit of 1048576 bytes (max_size)" \
    <<<"$(echo "$st" | field '[t["error"] for t in d["tasks"] if t["task"] == "big"]')"
expect_json "$(echo "$st" | field '[t["attempts"] for t in d["tasks"] if t["task"] == "big"][0]')" 1 \
    "a body too big is not retried"

# ---- 6. TLS: verified by default -----------------------------------------
cat >tls.yaml <<EOF
name: tls
tasks:
  strict:
    retries: 2
    backoff: {delay: 10ms}
    http: {url: "https://127.0.0.1:$S/json"}
EOF
cat >tls_ca.yaml <<EOF
name: tls_ca
tasks:
  trusted:
    http: {url: "https://127.0.0.1:$S/json", ca_file: cert.pem}
EOF
rc=0; "$FLOW" run tls.yaml --id tls1 >out 2>err || rc=$?
check "a self-signed certificate is refused ($rc)" [ "$rc" = 1 ]
check "the error says TLS verification failed" grep -q "TLS verification failed" err
expect_json "$(status_json tls1 | field '[t["attempts"] for t in d["tasks"]][0]')" 1 \
    "a refused certificate is not retried"
rc=0; "$FLOW" run tls_ca.yaml --id tls2 >out 2>err || rc=$?
check "with ca_file (relative to the file) it is trusted ($rc)" [ "$rc" = 0 ]
expect_json "$(cat out)" '{"hello": "world", "n": 1}' "the HTTPS answer is the output"

# ---- 7. a failure that asked for no retry stays failed through a resume ---
cat >resume.yaml <<EOF
name: resume
tasks:
  gone:
    retries: 3
    on_error: continue
    http: {url: "$B/flaky/resumed?fail=100&status=410"}
  pause:
    optional: gone
    shell: '"\$FLOW_BIN" ctl pause "lunch"'
  last:
    after: pause
    shell: echo done
EOF
rc=0; "$FLOW" run resume.yaml --id res1 >out 2>err || rc=$?
check "resume.yaml pauses (exit 3: $rc)" [ "$rc" = 3 ]
rc=0; "$FLOW" resume res1 >out 2>err || rc=$?
check "the resumed run ends failed, the 410 kept (exit 1: $rc)" [ "$rc" = 1 ]
check "the 410 was asked once in all ($(count_of resumed))" [ "$(count_of resumed)" = 1 ]

# ---- 8. killed while it waits for Retry-After: the resume waits the rest ----
cat >crash.yaml <<EOF
name: crash
tasks:
  wait:
    retries: 2
    backoff: {delay: 10ms}
    http: {url: "$B/flaky/crash?fail=1&status=503&retry_after=3"}
EOF
"$FLOW" run crash.yaml --id cr1 >out 2>err &
pid=$!
wait_until 10 sh -c "\"$FLOW\" logs cr1 2>/dev/null | grep -q act_retrying"
kill -KILL "$pid"
{ wait "$pid"; } 2>/dev/null
rc=0; "$FLOW" resume cr1 >out 2>err || rc=$?
check "the resumed run completes ($rc)" [ "$rc" = 0 ]
gap=$(curl_get /count/crash | field 'round(d["times"][1] - d["times"][0], 2)')
check "the retry came 3s after the 503 (Retry-After), not at once on resume: ${gap}s" \
    python3 -c "import sys; sys.exit(not 2.8 <= $gap < 6)"

# ---- 9. errors in the file, at their positions ----------------------------
cat >bad.yaml <<'EOF'
name: bad
secrets: [NET_TOKEN]
tasks:
  a:
    http: {url: "http://x/", metod: GET}
  b:
    http: {url: "ftp://x/y"}
  c:
    http:
      url: "http://x/"
      expect: [200, 999]
  d:
    http:
      url: "http://x/"
      headers: {"Bad Name": x}
  e:
    http: {url: "http://x/", method: "{{ secrets.NET_TOKEN }}"}
  f:
    executor: remote
    http: {url: "http://x/"}
  g:
    http: {url: "http://x/{{ tasks.nope.output }}"}
  h:
    http: {url: "http://x/", timeout: 5 minutes}
  i:
    http: "http://x/"
EOF
rc=0; "$FLOW" validate bad.yaml >out 2>err || rc=$?
check "bad.yaml is invalid (exit 2: $rc)" [ "$rc" = 2 ]
for want in \
    "bad.yaml:5:30: error: unknown key 'metod' in 'http' of task 'a' (did you mean 'method'?)" \
    "bad.yaml:7:17: error: 'url' in 'http' of task 'b' must start with http:// or https://" \
    "bad.yaml:11:21: error: 'expect' in 'http' of task 'c': an HTTP status is an integer from 100 to 599" \
    "bad.yaml:15:17: error: bad header name 'Bad Name'" \
    "bad.yaml:17:38: error: '{{ secrets.NET_TOKEN }}' in 'method' in 'http' of task 'e'" \
    "task 'f': an 'http' task runs on the engine's threads" \
    "bad.yaml:22:17: error: unknown task 'nope'" \
    "bad.yaml:24:39: error: bad duration '5 minutes' for 'timeout' in 'http' of task 'h'" \
    "bad.yaml:26:11: error: 'http' of task 'i' must be a mapping"; do
    check "reported: $want" grep -qF "$want" err
done

finish
