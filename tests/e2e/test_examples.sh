#!/bin/bash
# The examples run and do what their comments say: the C ports of the seeds
# (built by make into build/examples/) and the pipeline of `make run`.
set -u
. "$(dirname "$0")/lib.sh"

EX="$FLOW_BUILD_DIR/examples"

# CrewAI "multiple start points merged with and_": one merge, all three sources.
out=$("$EX/parallel_merge") || fail "parallel_merge exited $?"
expect_json "$out" '{"from_a": "a", "from_b": "b", "from_c": "c", "size": 30}' "parallel_merge result"

# CrewAI "retry with exponential backoff": fails twice, succeeds on attempt 3,
# after waiting base then 2*base.
out=$("$EX/retry_backoff" 2 0.1 2>"$T/retry.err") || fail "retry_backoff exited $?"
expect_json "$out" '"success"' "retry_backoff result"
grep -q "attempt 3" "$T/retry.err" || fail "retry_backoff: no third attempt: $(cat "$T/retry.err")"
grep -q "attempt 4" "$T/retry.err" && fail "retry_backoff: a fourth attempt after success"
t3=$(awk '/attempt 3/ {print $1+0}' "$T/retry.err")
awk -v t="$t3" 'BEGIN { exit !(t >= 0.29) }' || fail "retry_backoff: backoff too short ($t3 s)"
pass "retry_backoff retries with exponential delays"

# Retries exhausted: the fallback stands in with the error and the count.
out=$("$EX/retry_backoff" 9 0.01 2>/dev/null) || fail "retry_backoff (exhausted) exited $?"
expect_json "$out" '{"error": "APIError: service unavailable (call 4)", "retries": 3}' \
    "retry_backoff fallback result"

# The complete example of docs/c-api.md: a join, a retry, a state write.
out=$("$EX/quickstart" grace 2>"$T/quick.err") || fail "quickstart exited $?"
expect_json "$out" '{"quota_left": 58, "user": "grace", "visits": 42}' "quickstart result"
grep -q "retrying fetch_quota" "$T/quick.err" && pass "quickstart observer saw the retry" ||
    fail "quickstart: no retry event: $(cat "$T/quick.err")"
"$EX/quickstart" "" >/dev/null 2>"$T/quick2.err" && fail "quickstart without a name succeeded" ||
    grep -q "input 'name' is missing" "$T/quick2.err" && pass "quickstart reports its failure" ||
    fail "quickstart: no clear failure: $(cat "$T/quick2.err")"

# A durable run from C: paused by a task, resumed, then started again from a checkpoint.
out=$(cd "$T" && "$EX/durable_resume" 2>"$T/durable.err") || fail "durable_resume exited $?: $(cat "$T/durable.err")"
echo "$out" | grep -q "ingest ran 1 time(s), review 1, publish 2" &&
    pass "durable_resume: nothing that completed ran again" ||
    fail "durable_resume: $out $(cat "$T/durable.err")"

# Human feedback from C: paused, answered through the store, resumed.
out=$(cd "$T" && "$EX/feedback_review" 2>"$T/feedback.err") || fail "feedback_review exited $?: $(cat "$T/feedback.err")"
echo "$out" | grep -q 'result {"decision":"ship","by":"release-manager"} (the task ran 2 times)' &&
    pass "feedback_review: the answer reaches the task" || fail "feedback_review: $out"

# examples/durable/try.sh: kill -9, status, resume, in a store of its own.
out=$(FLOW="$FLOW" sh "$FLOW_SOURCE_DIR/examples/durable/try.sh" 2>&1) || fail "try.sh exited $?: $out"
echo "$out" | grep -q '"sum": 55' && pass "try.sh: the resumed run completes" || fail "try.sh: $out"

# examples/limits/try.sh: two processes share a key's 2 slots and a rate limit.
out=$(FLOW="$FLOW" sh "$FLOW_SOURCE_DIR/examples/limits/try.sh" 2>&1) || fail "limits try.sh exited $?: $out"
echo "$out" | grep -q 'most calls at once: 2$' && [ "$(echo "$out" | grep -c '"calls": 6')" = 2 ] &&
    pass "limits try.sh: 12 calls of two processes, 2 at once" || fail "limits try.sh: $out"
echo "$out" | grep -qE "waiting +0 .*(concurrency key 'partner-api': 2 at once, all held|rate limit 'partner-api.call': 5 per 1s)" &&
    pass "limits try.sh: flow status shows the calls held back, and why" ||
    fail "limits try.sh: no waiting call in flow status: $out"

# examples/cache/try.sh: the second run from the cache, the third runs the revised document only.
out=$(FLOW="$FLOW" sh "$FLOW_SOURCE_DIR/examples/cache/try.sh" 2>&1) || fail "cache try.sh exited $?: $out"
echo "$out" | grep -q '^first: 0 of 3 summaries from the cache, result {"documents":3}$' &&
    echo "$out" | grep -q '^second: 3 of 3 summaries from the cache, result {"documents":3}$' &&
    echo "$out" | grep -q '^third: 2 of 3 summaries from the cache, result {"documents":3}$' &&
    pass "cache try.sh: a run from the cache, then only the revised document" ||
    fail "cache try.sh: $out"
echo "$out" | grep -qE '^ +2 +summarize\[0\] .* cached *$' &&
    pass "cache try.sh: flow status says cached" || fail "cache try.sh: no cached note: $out"
# HTTP and model tasks against the stand-in server (examples/http/try.sh starts it).
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
out=$(FLOW="$FLOW" sh "$FLOW_SOURCE_DIR/examples/http/try.sh" 2>&1) || fail "http try.sh exited $?: $out"
echo "$out" | grep -q '"attempts": 2' && echo "$out" | grep -q '"missing": null' &&
    echo "$out" | grep -q '"title": "echo: A title for record 42' &&
    pass "http try.sh: a 503 retried after Retry-After, a 404 ignored, a model's title" ||
    fail "http try.sh: $out"
echo "$out" | grep -qE "title +completed .*tokens [0-9]+\+[0-9]+" &&
    pass "http try.sh: flow status shows the model's tokens" || fail "http try.sh: no tokens: $out"

# The pipeline of `make run`.
out=$("$FLOW" run "$FLOW_SOURCE_DIR/examples/pipeline/pipeline.yaml" --input rows=12 --quiet) ||
    fail "pipeline exited $?"
expect_json "$out" '{"regions": [{"region": "north", "orders": 4, "total": 114},
  {"region": "south", "orders": 4, "total": 218}, {"region": "west", "orders": 4, "total": 266}],
  "rates": {"EUR": 0.92, "GBP": 0.79}, "rows": 12}' "pipeline result"

finish
