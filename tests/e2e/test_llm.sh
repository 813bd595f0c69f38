#!/usr/bin/env bash
# test_llm.sh -- `llm:` tasks (docs/file-format.md, "Model tasks") run by
# `flow run` against the stand-in's chat-completions endpoint
# (tests/support/http_standin.py, which wants the key `sk-...` below): a
# prompt and a list of messages rendered from the run, the answer as the
# output (parsed with json: true, also inside a ``` fence), the token usage
# journaled (`flow status` NOTE and --json), the key never in the store nor
# in anything printed, a wrong key (401: not retried), a non-JSON answer to
# json: true (retried), a 429 with Retry-After, $FLOW_LLM_URL missing or
# naming the endpoint itself, $FLOW_LLM_MODEL, and the errors of the file.
set -u
source "$(dirname "$0")/lib.sh"
cd "$T"

KEY='sk-standin-5b1e9c7d2a'
standin_start "$T/standin" --api-key "$KEY" || { fail "stand-in"; finish; exit 1; }
B="http://127.0.0.1:$STANDIN_PORT"
DB="$T/db/flow.db"
export FLOW_STORE="sqlite:$DB"
export FLOW_LLM_URL="$B/v1" FLOW_LLM_KEY="$KEY"
unset FLOW_LLM_MODEL

field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(eval(sys.argv[1])))' "$1"; }
calls() { python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))["count"])' "$B/calls/$1"; }

# ---- 1. a prompt, messages, usage ----------------------------------------
cat >pipe.yaml <<'EOF'
name: pipe
tasks:
  draft:
    llm:
      model: echo
      prompt: "Write about {{ inputs.topic }}"
  review:
    after: draft
    llm:
      model: json-echo
      json: true
      temperature: 0.2
      max_tokens: 50
      messages:
        - {role: system, content: "You review drafts."}
        - {role: user, content: "Review: {{ tasks.draft.output }}"}
  fenced:
    after: draft
    llm: {model: fenced, prompt: "{{ tasks.draft.output }}", json: true}
EOF
rc=0; "$FLOW" run pipe.yaml --id p1 --input topic=owls >out 2>err || rc=$?
check "pipe.yaml completes ($rc)" [ "$rc" = 0 ]
"$FLOW" status p1 --json >st.json
expect_json "$(field '[t["output"] for t in d["tasks"] if t["task"] == "draft"][0]' <st.json)" \
    '"echo: Write about owls"' "the prompt is the user's message; the answer is the output"
expect_json "$(field '[t["output"] for t in d["tasks"] if t["task"] == "review"][0]' <st.json)" \
    '{"model": "json-echo", "messages": 2, "last": "Review: echo: Write about owls", "format": "json_object", "temperature": 0.2, "max_tokens": 50}' \
    "messages rendered, json: true parsed and asked for (response_format), temperature, max_tokens"
expect_json "$(field '[t["output"]["last"] for t in d["tasks"] if t["task"] == "fenced"][0]' <st.json)" \
    '"echo: Write about owls"' "an answer in a \`\`\`json fence is parsed"
expect_json "$(field '[t["info"]["usage"] for t in d["tasks"] if t["task"] == "draft"][0]' <st.json)" \
    '{"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "model": "echo-standin"}' \
    "the usage is journaled with the completion (info.usage)"
"$FLOW" status p1 >st.txt
check "flow status shows the tokens in its NOTE column" grep -Eq "draft +completed .*tokens 3\+4" st.txt
"$FLOW" logs p1 >logs.txt
"$FLOW" logs p1 --json >logs.json
"$FLOW" status --json >list.json
if grep -aqF "$KEY" "$DB"* out err st.json st.txt logs.txt logs.json list.json; then
    fail "the key is in the store or in what flow printed"
else
    pass "the key is nowhere in the sqlite files nor in flow's output"
fi

# ---- 1b. a prompt file's version as the user's message --------------------
mkdir -p prompts
cat >prompts/summarize.yaml <<'EOF'
- label: production
  version: 1
  template: "Summarize in {{ max_words }} words: {{ text }}"
- label: development
  version: 2
  template: "[DEV] {{ text }}"
EOF
cat >named.yaml <<'EOF'
name: named
tasks:
  summary:
    llm:
      model: echo
      prompt: {name: summarize, vars: {text: "{{ inputs.text }}", max_words: 5}}
  dev:
    llm:
      model: echo
      prompt: {name: summarize, label: development, vars: {text: "{{ inputs.text }}"}}
EOF
rc=0; "$FLOW" run named.yaml --id n1 --input text=owls >out 2>err || rc=$?
check "llm with prompt: {name, vars} completes ($rc)" [ "$rc" = 0 ]
"$FLOW" status n1 --json >st.json
expect_json "$(field '[[t["output"], t["info"]["prompt"]["version"]] for t in d["tasks"]]' <st.json)" \
    '[["echo: Summarize in 5 words: owls", 1], ["echo: [DEV] owls", 2]]' \
    "the prompt file's version is the user's message, and it is journaled with the usage"
"$FLOW" status n1 >st.txt
check "flow status notes the prompt and the tokens" \
    grep -Eq "summary .*prompt summarize v1 \(production\), tokens [0-9]+\+[0-9]+" st.txt
printf 'name: bad\ntasks:\n  s:\n    llm:\n      model: echo\n      prompt: {name: summarize, label: staging, vars: {text: x}}\n' >badp.yaml
rc=0; "$FLOW" validate badp.yaml >out 2>err || rc=$?
check "an unknown label in llm's prompt: exit 2 at its line" \
    bash -c '[ "$1" = 2 ] && grep -q "^badp.yaml:6:.*no version labelled '"'"'staging'"'"'" err' _ "$rc"
printf 'name: bad\ntasks:\n  s:\n    llm:\n      model: echo\n      prompt: {name: summarize, vars: {text: x}}\n' >badp.yaml
rc=0; "$FLOW" validate badp.yaml >out 2>err || rc=$?
check "a variable llm's prompt leaves out: exit 2 naming it" \
    bash -c '[ "$1" = 2 ] && grep -q "max_words" err' _ "$rc"

# ---- 2. a wrong key: 401, not retried; the key not in the message ---------
cat >wrong.yaml <<'EOF'
name: wrong
tasks:
  ask:
    retries: 3
    backoff: {delay: 10ms}
    llm: {model: echo, prompt: hi}
EOF
before=$(calls echo)
rc=0; FLOW_LLM_KEY=sk-wrong-key-000 "$FLOW" run wrong.yaml --id w1 >out 2>err || rc=$?
check "a wrong key fails the run ($rc)" [ "$rc" = 1 ]
check "the error says 401 and names the key's variable" grep -qF 'HTTP 401 from POST' err
check "... check \$FLOW_LLM_KEY" grep -qF 'check $FLOW_LLM_KEY' err
check "asked once: a 401 is not retried" [ "$(calls echo)" = "$before" ]
"$FLOW" status w1 --json | field '[t["attempts"] for t in d["tasks"]]' >att
expect_json "$(cat att)" '[1]' "one attempt"
if grep -aqF "sk-wrong-key-000" "$DB"* out err; then fail "the wrong key was kept"; else pass "the wrong key is kept nowhere"; fi

# ---- 3. json: true and an answer that is not JSON: retried ----------------
cat >notjson.yaml <<'EOF'
name: notjson
tasks:
  never:
    retries: 2
    backoff: {delay: 10ms}
    on_error: continue
    llm: {model: not-json, prompt: "give JSON", json: true}
  second:
    retries: 1
    backoff: {delay: 10ms}
    llm: {model: flaky-json, prompt: "give JSON", json: true}
EOF
rc=0; "$FLOW" run notjson.yaml --id nj1 >out 2>err || rc=$?
check "notjson.yaml fails (the first task: $rc)" [ "$rc" = 1 ]
check "a non-JSON answer was retried: 3 calls ($(calls not-json))" [ "$(calls not-json)" = 3 ]
check "the error says the answer is not JSON" grep -qF "the model's answer is not JSON (json: true)" err
"$FLOW" status nj1 --json >st.json
expect_json "$(field '[[t["status"], t["attempts"]] for t in d["tasks"] if t["task"] == "second"][0]' <st.json)" \
    '["completed", 2]' "a JSON answer on the retry completes the task"

# ---- 4. 429 with Retry-After ----------------------------------------------
cat >busy.yaml <<'EOF'
name: busy
tasks:
  ask:
    retries: 2
    backoff: {delay: 10ms}
    llm: {model: busy, prompt: "hello"}
EOF
t0=$(date +%s.%N)
rc=0; "$FLOW" run busy.yaml --id b1 >out 2>err || rc=$?
took=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
check "busy.yaml completes ($rc)" [ "$rc" = 0 ]
check "429 retried after its Retry-After of 1s, not the 10ms backoff (${took}s)" \
    python3 -c "import sys; sys.exit(not $took >= 0.95)"
check "the progress says so" grep -qE "retrying +ask in 1.0s" err

# ---- 5. the environment -----------------------------------------------------
cat >env.yaml <<'EOF'
name: env
tasks:
  ask:
    retries: 2
    llm: {prompt: "Say {{ inputs.word }}"}
EOF
rc=0; FLOW_LLM_MODEL=echo "$FLOW" run env.yaml --id e1 --input word=yes >out 2>err || rc=$?
check "the model from \$FLOW_LLM_MODEL ($rc)" [ "$rc" = 0 ]
expect_json "$(cat out)" '"echo: Say yes"' "... answers"
rc=0; FLOW_LLM_MODEL=echo FLOW_LLM_URL="$B/chat/completions" "$FLOW" run env.yaml --id e2 --input word=ok >out 2>err || rc=$?
check "a \$FLOW_LLM_URL that names the endpoint itself is used as it is ($rc)" [ "$rc" = 0 ]
rc=0; (unset FLOW_LLM_URL; FLOW_LLM_MODEL=echo "$FLOW" run env.yaml --id e3 --input word=x >out 2>err) || rc=$?
check "no \$FLOW_LLM_URL: the run fails ($rc)" [ "$rc" = 1 ]
check "... saying what to set" grep -qF '$FLOW_LLM_URL is not set' err
expect_json "$("$FLOW" status e3 --json | field '[t["attempts"] for t in d["tasks"]]')" '[1]' \
    "... at once, without retrying"
rc=0; "$FLOW" run env.yaml --id e4 --input word=x >out 2>err || rc=$?
check "no model anywhere: the run fails ($rc), saying so" grep -qF "give 'model' or set \$FLOW_LLM_MODEL" err
rc=0; (unset FLOW_LLM_KEY; FLOW_LLM_MODEL=echo "$FLOW" run env.yaml --id e5 --input word=x >out 2>err) || rc=$?
check "no key: no Authorization, and the stand-in says 401 ($rc)" grep -qF "HTTP 401" err

# ---- 6. the seed's content pipeline drafts with the model ---------------------
rc=0; FLOW_LLM_MODEL=echo "$FLOW" run "$FLOW_SOURCE_DIR/examples/seeds/crewai_content_pipeline.yaml" \
    --id cp1 --input topic=owls >out 2>err || rc=$?
check "crewai_content_pipeline.yaml completes with a model ($rc)" [ "$rc" = 0 ]
expect_json "$(field '[d["writer"], d["draft"], d["review"]["verdict"]]' <out)" \
    '["model", "echo: Write initial draft: three sentences about owls for a newsletter.", "approved"]' \
    "the model wrote the draft, the review approved it"

# ---- 7. errors in the file ---------------------------------------------------
cat >bad.yaml <<'EOF'
name: bad
tasks:
  a:
    llm: {model: m}
  b:
    llm:
      prompt: hi
      messages: [{role: user, content: hi}]
  c:
    llm:
      messages:
        - {role: user, contents: hi}
  d:
    llm: {prompt: hi, temperature: 7}
  e:
    llm: {prompt: "{{ secrets.FLOW_LLM_KEY }}"}
  f:
    llm: {prompt: hi, jsn: true}
EOF
rc=0; "$FLOW" validate bad.yaml >out 2>err || rc=$?
check "bad.yaml is invalid (exit 2: $rc)" [ "$rc" = 2 ]
for want in \
    "bad.yaml:4:10: error: 'llm' of task 'a' needs either 'prompt' (the user's message) or 'messages'" \
    "bad.yaml:8:17: error: 'llm' of task 'b' needs either 'prompt' (the user's message) or 'messages' (a list of {role, content}), not both" \
    "bad.yaml:12:24: error: unknown key 'contents' in item 1 of 'messages' in 'llm' of task 'c' (did you mean 'content'?)" \
    "bad.yaml:14:36: error: 'temperature' in 'llm' of task 'd' must be a number from 0 to 2" \
    "bad.yaml:16:19: error: '{{ secrets.FLOW_LLM_KEY }}' in 'prompt' in 'llm' of task 'e'" \
    "bad.yaml:18:23: error: unknown key 'jsn' in 'llm' of task 'f' (did you mean 'json'?)"; do
    check "reported: $want" grep -qF "$want" err
done

finish
