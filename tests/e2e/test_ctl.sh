#!/bin/bash
# `flow ctl` (docs/cli.md): the exact lines each subcommand appends
# to $FLOW_CONTROL, usage and environment errors, concurrent writers, and the effect
# of the directives on real runs: set, next-task, next-iteration, parallel --then,
# terminate, cancel, emit to `on:` and `connect` targets, output, checkpoint, and
# directives of a failed attempt discarded. Tasks call "$FLOW" (exported) directly.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1

FLOW=$(cd "$(dirname "$FLOW")" && pwd)/$(basename "$FLOW")
export FLOW
unset FLOW_CONTROL FLOW_OUTPUT

check() { # check WHAT CONDITION...
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what (rc=$rc, stderr: ${err:0:600})"; fi
}

# ctl ARGS...: run `flow ctl` with $FLOW_CONTROL=ctl.jsonl and $FLOW_OUTPUT=out.txt
# in the environment; sets rc, out, err.
ctl() {
    out=$(FLOW_CONTROL="$T/ctl.jsonl" FLOW_OUTPUT="$T/out.txt" "$FLOW" ctl "$@" 2>"$T/ctl.err")
    rc=$?
    err=$(cat "$T/ctl.err")
}

# line_is WHAT ARGS... '::' EXPECTED: `flow ctl ARGS` appends exactly EXPECTED.
line_is() {
    local what=$1 args=() expected
    shift
    while [ "$1" != "::" ]; do
        args+=("$1")
        shift
    done
    expected=$2
    rm -f ctl.jsonl
    ctl "${args[@]}"
    if [ "$rc" = 0 ] && [ "$(cat ctl.jsonl)" = "$expected" ] && [ "$(wc -l <ctl.jsonl)" = 1 ]; then
        pass "line: $what"
    else
        fail "line: $what: rc=$rc, wrote '$(cat ctl.jsonl 2>/dev/null)'," \
            "expected '$expected' ($err)"
    fi
}

# run_flow NAME [ARGS...] <<'EOF' ... : writes stdin to NAME.yaml, runs it;
# sets rc, out, err.
run_flow() {
    local name=$1
    shift
    cat >"$name.yaml"
    out=$("$FLOW" run "$name.yaml" "$@" 2>"$name.err" </dev/null)
    rc=$?
    err=$(cat "$name.err")
}

# started TASK: how many times TASK started in the last run's progress lines.
started() {
    grep -Ec " started +$1 \(attempt" <<<"$err"
}

# ---------------------------------------------------------------------------
# The lines each subcommand writes

line_is "set number" set count 3 :: '{"set":{"count":3}}'
line_is "set short real" set score 0.92 :: '{"set":{"score":0.92}}'
line_is "set negative number" set delta -3 :: '{"set":{"delta":-3}}'
line_is "set text that is not JSON" set name 'hello world' :: '{"set":{"name":"hello world"}}'
line_is "set JSON string" set name '"quoted"' :: '{"set":{"name":"quoted"}}'
line_is "set object" set cfg '{"a": [1, true, null]}' :: '{"set":{"cfg":{"a":[1,true,null]}}}'
line_is "set newline in text" set msg $'two\nlines' :: '{"set":{"msg":"two\nlines"}}'
line_is "emit without payload" emit tick :: '{"emit":{"event":"tick"}}'
line_is "emit with payload" emit tick '{"n": 1}' :: '{"emit":{"event":"tick","data":{"n":1}}}'
line_is "next-task" next-task later :: '{"next_task":{"task":"later"}}'
line_is "next-task with input" next-task later '[1,2]' :: \
    '{"next_task":{"task":"later","input":[1,2]}}'
line_is "next-iteration" next-iteration :: '{"next_iteration":{}}'
line_is "next-iteration with input" next-iteration 4 :: '{"next_iteration":{"input":4}}'
line_is "parallel" parallel a b=2 'c={"k":"v"}' :: \
    '{"parallel":[{"task":"a"},{"task":"b","input":2},{"task":"c","input":{"k":"v"}}]}'
line_is "parallel --then" parallel w=1 w=2 --then join :: \
    '{"parallel":[{"task":"w","input":1},{"task":"w","input":2}],"then":"join"}'
line_is "parallel --then= form" parallel --then=join w :: \
    '{"parallel":[{"task":"w"}],"then":"join"}'
line_is "terminate" terminate :: '{"terminate":{}}'
line_is "terminate with result" terminate '{"done": true}' :: \
    '{"terminate":{"result":{"done":true}}}'
line_is "cancel" cancel :: '{"cancel":{}}'
line_is "cancel with reason words" cancel budget exceeded: '42' :: \
    '{"cancel":{"error":"budget exceeded: 42"}}'
line_is "checkpoint" checkpoint :: '{"checkpoint":true}'
line_is "-- ends the options" set flag -- -x :: '{"set":{"flag":"-x"}}'

# Appends: two calls, two lines, in order.
rm -f ctl.jsonl
ctl set a 1
ctl set b 2
check "appends in order" test "$(cat ctl.jsonl)" = $'{"set":{"a":1}}\n{"set":{"b":2}}'

# output replaces $FLOW_OUTPUT; nothing goes to $FLOW_CONTROL.
rm -f ctl.jsonl out.txt
ctl output first
ctl output '{"x": 1}'
check "output replaces \$FLOW_OUTPUT" test "$(cat out.txt)" = '{"x": 1}'
check "output writes no directive" test ! -e ctl.jsonl

# Concurrent writers never interleave: 40 processes, 40 whole lines.
rm -f ctl.jsonl
big=$(head -c 3000 /dev/zero | tr '\0' x)
for i in $(seq 1 40); do
    FLOW_CONTROL="$T/ctl.jsonl" "$FLOW" ctl set "k$i" "$big$i" &
done
wait
cat >whole_lines.py <<'EOF'
import json, sys
keys = set()
for line in open(sys.argv[1]):
    d = json.loads(line)
    keys.update(d["set"].keys())
sys.exit(keys != {"k%d" % i for i in range(1, 41)})
EOF
rc=0
python3 whole_lines.py "$T/ctl.jsonl" || rc=$?
check "40 concurrent writers: 40 whole lines" test "$rc" = 0

# ---------------------------------------------------------------------------
# Errors

out=$("$FLOW" ctl set k 1 2>"$T/ctl.err")
rc=$?
err=$(cat "$T/ctl.err")
check "outside a task: exit 2" test "$rc" = 2
check "outside a task: message" test "$err" = \
    'flow ctl: not inside a flow task ($FLOW_CONTROL is not set)'

out=$(FLOW_CONTROL= "$FLOW" ctl checkpoint 2>&1)
rc=$?
check "empty \$FLOW_CONTROL: exit 2" test "$rc" = 2

out=$("$FLOW" ctl output x 2>&1)
rc=$?
check "output outside a task: exit 2, names \$FLOW_OUTPUT" \
    test "$rc" = 2 -a "$out" = 'flow ctl: not inside a flow task ($FLOW_OUTPUT is not set)'

usage_error() { # usage_error WHAT PATTERN ARGS...
    local what=$1 pattern=$2
    shift 2
    rm -f ctl.jsonl
    ctl "$@"
    if [ "$rc" = 2 ] && grep -Eq -- "$pattern" <<<"$err" && [ "$(wc -l <<<"$err")" = 1 ] &&
        [ ! -e ctl.jsonl ]; then
        pass "usage: $what"
    else
        fail "usage: $what: rc=$rc, stderr '$err', want /$pattern/"
    fi
}
usage_error "no subcommand" "^flow ctl: missing SUBCOMMAND" 
usage_error "unknown subcommand" \
    "^flow ctl: unknown subcommand 'frob' \(see 'flow ctl --help'\)$" frob
usage_error "set without value" "^flow ctl: set needs KEY JSON \(see 'flow ctl set --help'\)$" set k
usage_error "set without key" "set needs KEY JSON" set
usage_error "set empty key" "non-empty KEY" set '' 1
usage_error "set extra argument" "unexpected argument 'extra' for set" set k 1 extra
usage_error "emit without event" "emit needs EVENT" emit
usage_error "next-task without task" "next-task needs TASK" next-task
usage_error "next-iteration two values" "unexpected argument '2'" next-iteration 1 2
usage_error "parallel without task" "parallel needs TASK" parallel --then j
usage_error "parallel --then without task" "'--then' of parallel needs a TASK" parallel a --then
usage_error "parallel empty task" "parallel needs TASK or TASK=JSON" parallel =1
usage_error "checkpoint with argument" "unexpected argument 'now'" checkpoint now
usage_error "output without text" "output needs TEXT" output
usage_error "unknown option" "unknown option '--frob' for set" set --frob k 1

out=$(FLOW_CONTROL=/nonexistent-dir/ctl "$FLOW" ctl set k 1 2>&1)
rc=$?
check "write error: exit 1" test "$rc" = 1
check "write error: message names the file" \
    grep -q "^flow ctl: cannot open \$FLOW_CONTROL '/nonexistent-dir/ctl': No such file" <<<"$out"

if [ -w /dev/full ]; then
    out=$(FLOW_CONTROL=/dev/full "$FLOW" ctl set k 1 2>&1)
    rc=$?
    check "disk full: exit 1" test "$rc" = 1
    check "disk full: message" grep -q "cannot write \$FLOW_CONTROL '/dev/full'" <<<"$out"
fi

# Help: no environment needed.
for sub in set emit next-task next-iteration parallel terminate cancel checkpoint output; do
    out=$("$FLOW" ctl "$sub" --help 2>&1)
    rc=$?
    check "ctl $sub --help" test "$rc" = 0 -a "$(head -1 <<<"$out" | cut -d' ' -f1-4)" = \
        "usage: flow ctl $sub"
done
out=$("$FLOW" ctl --help 2>&1)
rc=$?
check "ctl --help" grep -q "^usage: flow ctl SUBCOMMAND" <<<"$out"
out=$("$FLOW" help ctl)
rc=$?
check "flow help ctl" grep -q "^usage: flow ctl SUBCOMMAND" <<<"$out"
out=$("$FLOW" --help)
check "flow --help lists ctl" grep -q "^  ctl " <<<"$out"

# ---------------------------------------------------------------------------
# Effects on runs

# set: later tasks see the state in $FLOW_STATE.
run_flow set <<'EOF'
name: set
state: {kept: 1}
tasks:
  writer:
    shell: |
      "$FLOW" ctl set color blue
      "$FLOW" ctl set score 0.92
      "$FLOW" ctl set tags '["a", "b"]'
      echo written
  reader:
    after: writer
    shell: cat "$FLOW_STATE"
EOF
check "set: completed" test "$rc" = 0
expect_json "$out" '{"kept": 1, "color": "blue", "score": 0.92, "tags": ["a", "b"]}' \
    "set: the state a later task sees"

# Many background writers inside one task: every key lands.
run_flow setmany <<'EOF'
name: setmany
tasks:
  writer:
    shell: |
      for i in $(seq 1 25); do "$FLOW" ctl set "k$i" "$i" & done; wait
  reader:
    after: writer
    shell: 'python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$FLOW_STATE"'
EOF
check "25 background writers in a task: 25 keys" test "$rc" = 0 -a "$out" = 25

# next-task: a `start: false` task runs once, with the given input.
run_flow nexttask <<'EOF'
name: nexttask
result: "{{ tasks.later.output }}"
tasks:
  first:
    shell: '"$FLOW" ctl next-task later "{\"n\": 7}"; echo first'
  later:
    start: false
    shell: cat "$FLOW_INPUT"
  unasked:
    start: false
    run: [touch, unasked.marker]
EOF
check "next-task: completed" test "$rc" = 0
expect_json "$out" '{"n": 7}' "next-task: the task ran with the input"
check "next-task: ran once" test "$(started later)" = 1
check "next-task: a start: false task nobody asked for never runs" test ! -e unasked.marker

# next-task naming an unknown task: a clear task failure.
run_flow nextbad <<'EOF'
name: nextbad
tasks:
  first:
    shell: '"$FLOW" ctl next-task nosuch'
EOF
check "next-task unknown task: exit 1" test "$rc" = 1
check "next-task unknown task: names it" grep -q "nosuch" <<<"$err"

# next-iteration: the task runs again with the new input until it stops asking
# (the first activation gets the run inputs, {}).
run_flow iterate <<'EOF'
name: iterate
tasks:
  count:
    shell: |
      n=$(cat "$FLOW_INPUT")
      case $n in [0-9]*) ;; *) n=0 ;; esac
      [ "$n" -lt 3 ] && "$FLOW" ctl next-iteration $((n + 1))
      echo "$n"
EOF
check "next-iteration: completed" test "$rc" = 0
expect_json "$out" 3 "next-iteration: the last iteration's output"
check "next-iteration: four activations" test "$(started count)" = 4

# parallel --then: the join runs once, after all branches, outputs in order
# (the first branch finishes last).
run_flow parallel <<'EOF'
name: parallel
result: "{{ tasks.join.output }}"
tasks:
  split:
    shell: '"$FLOW" ctl parallel work=3 work=2 work=1 --then join'
  work:
    start: false
    shell: 'n=$(cat "$FLOW_INPUT"); sleep "0.$n"; echo $((n * 10))'
  join:
    start: false
    shell: cat "$FLOW_INPUT"
EOF
check "parallel --then: completed" test "$rc" = 0
expect_json "$out" '[30, 20, 10]' "parallel --then: outputs in branch order"
check "parallel --then: three branches" test "$(started work)" = 3
check "parallel --then: the join ran once" test "$(started join)" = 1

# terminate: exit 0 with the result; later tasks never run.
run_flow terminate <<'EOF'
name: terminate
tasks:
  decide:
    shell: '"$FLOW" ctl terminate "{\"done\": true}"; echo decided'
  later:
    after: decide
    run: [touch, later.marker]
EOF
check "terminate: exit 0" test "$rc" = 0
expect_json "$out" '{"done": true}' "terminate: the result"
check "terminate: later tasks never run" test ! -e later.marker

# cancel: exit 4, the reason on stderr, nothing after.
run_flow cancel <<'EOF'
name: cancel
tasks:
  guard:
    shell: '"$FLOW" ctl cancel budget exceeded'
  later:
    after: guard
    run: [touch, cancel.marker]
EOF
check "cancel: exit 4" test "$rc" = 4
check "cancel: the reason on stderr" grep -q "^cancelled: budget exceeded" <<<"$err"
check "cancel: later tasks never run" test ! -e cancel.marker

# A ctl call followed by exit 1: the directives are discarded.
run_flow discard <<'EOF'
name: discard
result: "{{ tasks.reader.output }}"
tasks:
  flaky:
    retries: 1
    backoff: {delay: 10ms}
    shell: |
      if [ "$FLOW_ATTEMPT" = 1 ]; then
        "$FLOW" ctl set from_failed true
        "$FLOW" ctl next-task marker
        "$FLOW" ctl terminate '"too early"'
        exit 1
      fi
      "$FLOW" ctl set from_second true
  marker:
    start: false
    run: [touch, discard.marker]
  reader:
    after: flaky
    shell: cat "$FLOW_STATE"
EOF
check "failed attempt: the run completed" test "$rc" = 0
expect_json "$out" '{"from_second": true}' "failed attempt: its set discarded, the retry's kept"
check "failed attempt: its next-task discarded" test ! -e discard.marker

run_flow discard2 <<'EOF'
name: discard2
tasks:
  bad:
    on_error: continue
    shell: '"$FLOW" ctl cancel should not count; exit 1'
  other:
    run: [echo, fine]
EOF
check "failed task's cancel discarded: the run fails (1), not cancelled (4)" test "$rc" = 1

# emit: an `on: EVENT` task runs once per emission, with the payload as input.
run_flow emit <<EOF
name: emit
tasks:
  producer:
    shell: |
      for i in 1 2 3; do "\$FLOW" ctl emit tick "{\"n\": \$i}"; done
      echo produced
  handler:
    on: tick
    shell: 'mkdir -p "$T/ticks" && cp "\$FLOW_INPUT" "$T/ticks/\$FLOW_ACTIVATION.json"'
EOF
check "emit: completed" test "$rc" = 0
check "emit: the handler ran once per emission" test "$(started handler)" = 3
if [ -d ticks ]; then
    got=$(python3 -c 'import json, sys
print(sorted(json.load(open(f))["n"] for f in sys.argv[1:]))' ticks/*.json)
else
    got=none
fi
check "emit: each payload was an input ($got)" test "$got" = "[1, 2, 3]"

# connect: the event routed with its keys renamed by `map`.
run_flow connect <<EOF
name: connect
tasks:
  producer:
    shell: '"\$FLOW" ctl emit progress "{\"pct\": 50, \"note\": \"half\"}"; echo done'
  sink:
    shell: 'cat "\$FLOW_INPUT" > "$T/sink.json"'
connect:
  - {from: producer.progress, to: sink, map: {pct: percent}}
EOF
check "connect: completed" test "$rc" = 0
if [ -f sink.json ]; then
    expect_json "$(cat sink.json)" '{"percent": 50, "note": "half"}' "connect: the payload mapped"
else
    fail "connect: the target never ran ($err)"
fi
check "connect: the target is not a start task (ran once)" test "$(started sink)" = 1

# output: wins over stdout.
run_flow output <<'EOF'
name: output
tasks:
  chatty:
    shell: 'echo "noise on stdout"; "$FLOW" ctl output "{\"answer\": 42}"'
EOF
check "output: completed" test "$rc" = 0
expect_json "$out" '{"answer": 42}' "output: the task's output"

# checkpoint: accepted, the run goes on.
run_flow checkpoint <<'EOF'
name: checkpoint
tasks:
  snap:
    shell: '"$FLOW" ctl checkpoint; echo snapped'
  after_snap:
    after: snap
    run: [echo, after]
EOF
check "checkpoint: the run completes" test "$rc" = 0 -a "$out" = '"after"'

# incr / append / merge: 30 commands updating the same keys at once lose nothing
# (a plain `set` of one key by all of them would keep only the last).
python3 -c 'import json; print(json.dumps({"items": list(range(1, 31))}))' > ops-inputs.json
run_flow ops --jobs 8 --inputs ops-inputs.json <<'EOF'
name: ops
state: {count: 5}
result: "{{ state }}"
tasks:
  each:
    foreach: "{{ inputs.items }}"
    concurrency: 30
    shell: |
      sleep 0.0$(( {{ item }} % 7 ))
      "$FLOW" ctl incr count
      "$FLOW" ctl incr total {{ item }}
      "$FLOW" ctl append seen {{ item }}
      "$FLOW" ctl merge by '{"k{{ item }}": {{ item }}}'
EOF
check "ops: completed" test "$rc" = 0
got=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(json.dumps([d["count"], d["total"], sorted(d["seen"]), len(d["by"])]))' "$out" 2>&1)
expect_json "$got" "[35, 465, $(python3 -c 'print(list(range(1, 31)))'), 30]" \
    "ops: every count, sum, item and key kept"

run_flow opsbad <<'EOF'
name: opsbad
state: {name: ann}
tasks:
  bump:
    shell: '"$FLOW" ctl incr name'
EOF
check "incr of a string: the task fails (exit 1)" test "$rc" = 1
check "incr of a string: says why" grep -q "cannot incr state key 'name': it holds a string" <<<"$err"
"$FLOW" ctl incr n abc >/dev/null 2>incr.err
check "ctl incr with a non-number: usage error (exit 2)" test $? = 2
check "ctl incr with a non-number: names it" grep -q "incr needs a number, not 'abc'" incr.err
"$FLOW" ctl merge m '[1]' >/dev/null 2>merge.err
check "ctl merge with a non-object: usage error (exit 2)" test $? = 2

finish
