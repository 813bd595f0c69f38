#!/bin/bash
# Run-time failures and policies through `flow run`: a command that does not
# exist, 100 MB on stdout, a task that ignores SIGTERM past its timeout,
# retries, on_error continue/ignore/fallback, state and results.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1

# run_flow NAME [ARGS...] <<'EOF' ... : writes stdin to NAME.yaml, runs it;
# sets rc, out, err.
run_flow() {
    local name=$1
    shift
    cat > "$name.yaml"
    out=$("$FLOW" run "$name.yaml" "$@" 2>"$name.err" </dev/null)
    rc=$?
    err=$(cat "$name.err")
}

check() { # check WHAT CONDITION...
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what (rc=$rc, stderr: ${err:0:600})"; fi
}

run_flow notfound <<'EOF'
name: nf
tasks:
  a:
    run: [no-such-command-xyz, --flag]
EOF
check "missing command: exit 1" test "$rc" = 1
check "missing command: clear message" grep -q "command not found: 'no-such-command-xyz'" <<<"$err"

run_flow bigout <<'EOF'
name: big
tasks:
  spew:
    run: [head, -c, "100000000", /dev/zero]
EOF
check "100 MB stdout: exit 1" test "$rc" = 1
check "100 MB stdout: names the limit" grep -q "output limit" <<<"$err"

# Ignores SIGTERM: killed with SIGKILL after the grace period, promptly.
start=$(date +%s%N)
run_flow deaf <<'EOF'
name: deaf
tasks:
  hold:
    timeout: 500ms
    kill_grace: 500ms
    shell: trap "" TERM; sleep 30.4242; echo done
EOF
elapsed=$((($(date +%s%N) - start) / 1000000))
check "timeout: exit 1" test "$rc" = 1
check "timeout: says timed out" grep -q "timed out" <<<"$err"
check "timeout: killed within seconds ($elapsed ms)" test "$elapsed" -lt 5000
sleep 0.2
check "timeout: nothing left behind" bash -c '! pgrep -f "sleep 30[.]4242" >/dev/null'

# Retries: fails twice, then succeeds; three attempts.
run_flow retry <<'EOF'
name: retry
tasks:
  flaky:
    retries: 3
    backoff: {delay: 50ms, factor: 2}
    cwd: .
    shell: 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ] && echo ok || exit 1'
EOF
check "retries: completed" test "$rc" = 0
check "retries: three attempts" test "$(cat count)" = 3
check "retries: retry lines" test "$(grep -c retrying <<<"$err")" = 2

# on_error: continue skips the dependants, the rest goes on, the run fails.
run_flow cont <<'EOF'
name: cont
tasks:
  bad:
    on_error: continue
    shell: exit 3
  after_bad:
    after: bad
    run: [touch, never-created]
  good:
    run: [echo, fine]
EOF
check "continue: exit 1" test "$rc" = 1
check "continue: dependant skipped" grep -q "skipped *after_bad" <<<"$err"
check "continue: dependant did not run" test ! -e never-created
check "continue: other branch ran" grep -q "completed *good" <<<"$err"
check "continue: exit status in message" grep -q "exited with status 3" <<<"$err"

# on_error: ignore counts as completed with null; fallback stands in.
run_flow strategies <<'EOF'
name: strategies
tasks:
  ignored:
    on_error: ignore
    shell: exit 1
  uses_ignored:
    after: ignored
    shell: cat "$FLOW_INPUT"
  primary:
    on_error: {fallback: backup}
    shell: echo "primary broke" >&2; exit 2
  backup:
    run: [echo, '{"from": "backup"}']
  report:
    after: [uses_ignored, primary]
    input: {ignored: "{{ tasks.uses_ignored.output }}", primary: "{{ tasks.primary.output }}"}
EOF
check "strategies: completed" test "$rc" = 0
expect_json "$out" '{"ignored": null, "primary": {"from": "backup"}}' "strategies: result"

# State: save, set directives, result template.
run_flow state <<'EOF'
name: state
state: {count: 1}
tasks:
  produce:
    run: [echo, "{\"n\": 41}"]
    save: produced
  bump:
    after: produce
    shell: |
      echo '{"set": {"count": 2}}' >> "$FLOW_CONTROL"
      echo bumped
  show:
    after: bump
    shell: cat "$FLOW_STATE"
result: "{{ tasks.show.output }}"
EOF
check "state: completed" test "$rc" = 0
expect_json "$out" '{"count": 2, "produced": {"n": 41}}' "state: saved output and set directive"

# A template naming a task with no output: clear failure naming it.
run_flow tmplfail <<'EOF'
name: tmpl
tasks:
  maybe:
    on_error: continue
    shell: exit 1
  user:
    optional: [maybe]
    run: [echo, "{{ tasks.maybe.output }}"]
EOF
check "template error: exit 1" test "$rc" = 1
check "template error: names the task" grep -q "task 'maybe' has no output" <<<"$err"

finish
