#!/usr/bin/env bash
# Cached outputs (docs/file-format.md "Caching") through the program: a
# command task that takes a second and counts its runs in a file runs once
# for two `flow run`s with the same key -- the second completes from the
# cache in much less than its second, says so in its progress, in `flow
# status RUN` and its --json, and gives the same result -- another key runs
# it again, --no-cache runs it and replaces the entry, the ttl expires it,
# `flow gc` removes expired entries and says how many (--clear-cache: all),
# and it works the same on disk: and redis:// stores. A key that cannot be
# rendered fails the attempt naming it; a bad `cache:` is refused at
# FILE:LINE:COL.
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
export FLOW_STORE="sqlite:$T/flow.db" # fresh: entries and run ids of an earlier go would count

# The task appends a line to `count` and outputs how many lines it has.
cat >slow.yaml <<'EOF'
name: slow
tasks:
  fetch:
    shell: 'sleep 1; echo "$FLOW_RUN_ID" >> count; wc -l < count'
    output: json
    cache: {key: "{{ inputs.url }}", ttl: 1h}
  report:
    after: fetch
    run: [echo, "fetched {{ inputs.url }}: {{ tasks.fetch.output }}"]
EOF
# The same count with a ttl of a second: its entries expire while the test
# waits, never while a slow build runs the others.
cat >brief.yaml <<'EOF'
name: brief
tasks:
  stamp:
    shell: 'echo "$FLOW_RUN_ID" >> count; wc -l < count'
    output: json
    cache: {key: "{{ inputs.k }}", ttl: 1s}
EOF
ran() { if [ -f count ]; then wc -l <count | tr -d ' '; else echo 0; fi; }
now() { echo "$EPOCHREALTIME"; }
# took START: seconds since START (read before anything else starts)
took() {
    local end=$EPOCHREALTIME
    python3 -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$end"
}
# A hit is a store read and a completion: well under the task's second (a
# sanitizer's build is slower at everything).
if [ -n "${FLOW_SANITIZE:-}" ]; then FAST=3; else FAST=0.5; fi
fast() { python3 -c 'import sys; sys.exit(not float(sys.argv[1]) < float(sys.argv[2]))' "$1" "$FAST"; }

# --- a miss, then a hit -------------------------------------------------------
"$FLOW" run slow.yaml --id c1 -i url=a >out1 2>err1
rc=$?
check "the first run completes ($rc)" test "$rc" = 0
check "... running the task once" test "$(ran)" = 1
check "... its progress shows it ran" grep -Eq "completed fetch \([0-9.]+s\)" err1
t0=$(now)
"$FLOW" run slow.yaml --id c2 -i url=a >out2 2>err2
rc=$?
secs=$(took "$t0")
# On a busy machine one run may wait for a core: the best of three hits.
for i in 1 2; do
    fast "$secs" && break
    t0=$(now)
    "$FLOW" run slow.yaml -i url=a >/dev/null 2>&1
    secs=$(python3 -c 'import sys; print(min(float(sys.argv[1]), float(sys.argv[2])))' "$secs" "$(took "$t0")")
done
check "the second run completes ($rc)" test "$rc" = 0
check "... without running the task (count $(ran))" test "$(ran)" = 1
check "... in much less than the task's second (${secs}s)" fast "$secs"
check "... with the same result" cmp out1 out2
expect_json "$(cat out2)" '"fetched a: 1"' "... the cached output"
check "... its progress says cached" grep -q "completed fetch (cached)" err2
check "... and shows no start of it" bash -c '! grep -q "started   fetch" err2'
"$FLOW" status c2 >st 2>err
check "flow status RUN shows the activation cached" grep -Eq "^ +1 +fetch +completed +1 .* cached *$" st
check "... and the one that ran not" bash -c '! grep -Eq "^ +2 +report .*cached" st'
"$FLOW" status c2 --json >st.json 2>err
check "flow status RUN --json: info {cached: true, cached_at}" python3 -c '
import json
t = json.load(open("st.json"))["tasks"][0]
assert t["task"] == "fetch" and t["status"] == "completed", t
assert t["info"]["cached"] is True and t["info"]["cached_at"].endswith("Z"), t
assert t["output"] == 1 and t["attempts"] == 1, t'
"$FLOW" status c1 --json >st.json 2>err
check "... the run that computed it has no such info" python3 -c '
import json
t = json.load(open("st.json"))["tasks"][0]
assert "cached" not in (t.get("info") or {}), t'
"$FLOW" logs c2 >logs 2>err
check "flow logs: the cached completion, with no act_started of its own" \
    bash -c 'grep -q "act_completed" logs && [ "$(grep -c "act_started" logs)" = 1 ]'

# --- another key, --no-cache ---------------------------------------------------
"$FLOW" run slow.yaml -i url=b >out 2>err
check "another key runs the task (count $(ran))" test "$(ran)" = 2
"$FLOW" run slow.yaml --no-cache -i url=a >out 2>err
check "--no-cache runs it although an entry is there (count $(ran))" test "$(ran)" = 3
expect_json "$(cat out)" '"fetched a: 3"' "... with its new output"
check "... and its progress says nothing of a cache" bash -c '! grep -q cached err'
t0=$(now)
"$FLOW" run slow.yaml -i url=a >out 2>err
secs=$(took "$t0")
expect_json "$(cat out)" '"fetched a: 3"' "the next run gets the entry --no-cache wrote"
check "... from the cache (count $(ran), ${secs}s)" bash -c '[ "$(wc -l < count)" = 3 ]'

# --- expiry and flow gc ------------------------------------------------------------
"$FLOW" run brief.yaml -i k=x >out 2>err
"$FLOW" run brief.yaml -i k=y >out 2>err
n=$(ran)
sleep 1.2
"$FLOW" run brief.yaml -i k=x >out 2>err
check "once its ttl has gone by, the entry is not used (count $(ran))" test "$(ran)" = $((n + 1))
expect_json "$(cat out)" "$((n + 1))" "... the task ran again"
sleep 1.2
"$FLOW" gc 2>err
check "flow gc removes the expired entries (x and y) and says how many" grep -q "^removed 2 expired cache entries$" err
check "... besides the runs" grep -q "^deleted 0 runs$" err
"$FLOW" gc --json >out 2>err
expect_json "$(cat out)" '{"deleted": 0, "older_than": 604800, "cache_removed": 0}' "flow gc --json: cache_removed"
"$FLOW" run slow.yaml -i url=c >out 2>err
"$FLOW" gc 2>err
check "entries that have not expired stay" grep -q "^removed 0 expired cache entries$" err
"$FLOW" gc --clear-cache 2>err
check "--clear-cache removes them all (a, b and c)" grep -q "^removed 3 cache entries$" err
n=$(ran)
"$FLOW" run slow.yaml -i url=c >out 2>err
check "... and the task runs again" test "$(ran)" = $((n + 1))

# --- other stores -----------------------------------------------------------------------
for kind in disk redis; do
    case $kind in
    disk) S="disk:$T/d" ;;
    redis)
        redis_start "$T/redis" || { fail "no redis-server"; continue; }
        S="$REDIS_URL?prefix=ca"
        ;;
    esac
    n=$(ran)
    "$FLOW" run slow.yaml --store "$S" -i url=z >out1 2>err1
    t0=$(now)
    "$FLOW" run slow.yaml --store "$S" -i url=z --id "$kind-hit" >out2 2>err2
    secs=$(took "$t0")
    if ! fast "$secs"; then
        t0=$(now)
        "$FLOW" run slow.yaml --store "$S" -i url=z >/dev/null 2>&1
        secs=$(took "$t0")
    fi
    check "$kind: the second run is a hit (ran $(($(ran) - n)) time, ${secs}s)" \
        bash -c '[ "$1" = 1 ] && grep -q "completed fetch (cached)" err2' _ $(($(ran) - n))
    check "$kind: ... in much less than a second" fast "$secs"
    check "$kind: ... same result" cmp out1 out2
    "$FLOW" status "$kind-hit" --store "$S" >st 2>err
    check "$kind: flow status shows it cached" grep -Eq "^ +1 +fetch +completed .* cached *$" st
    "$FLOW" gc --clear-cache --store "$S" 2>err
    check "$kind: flow gc --clear-cache removes its entry" grep -q "^removed 1 cache entry$" err
done
if [ -n "${REDIS_URL:-}" ]; then
    "$FLOW" run slow.yaml --store "$REDIS_URL?prefix=cb" -i url=y >out 2>err
    keys=$(redis_cmd KEYS 'cb:cache:*')
    key=$(python3 -c 'import json, sys; k = json.loads(sys.argv[1]); print(k[0] if len(k) == 1 else "")' "$keys")
    pttl=$(redis_cmd PTTL "$key")
    check "redis: one key P:cache:N, dropped by Redis within its ttl (PTTL $pttl)" \
        bash -c '[ -n "$1" ] && [ "$2" -gt 0 ] && [ "$2" -le 3600000 ]' _ "$key" "$pttl"
fi

# --- errors ----------------------------------------------------------------------------------
cat >badkey.yaml <<'EOF'
name: badkey
tasks:
  fetch:
    run: [echo, hi]
    cache: {key: "{{ inputs.url.host }}"}
EOF
"$FLOW" run badkey.yaml >out 2>err
rc=$?
check "a key that cannot be rendered fails the run (exit $rc)" test "$rc" = 1
check "... naming the cache key" grep -Eq "failed +fetch: the cache key of task 'fetch': 'inputs.url' is not set" err
cat >bad.yaml <<'EOF'
name: bad
tasks:
  fetch:
    run: [echo, hi]
    cache: {key: "{{ inputs.url }}", ttl: forever}
  join:
    after: fetch
    cache: {key: x}
EOF
"$FLOW" validate bad.yaml >out 2>err
rc=$?
check "a bad cache: is refused (exit $rc)" test "$rc" = 2
check "... at FILE:LINE:COL naming the field" \
    grep -q "bad.yaml:5:43: error: bad duration 'forever' for 'ttl' of 'cache' of task 'fetch'" err
check "... and cache on a no-op" \
    grep -q "bad.yaml:8:5: error: 'cache' needs a body that computes the output in task 'join'" err

finish
