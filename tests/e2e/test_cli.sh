#!/usr/bin/env bash
# test_cli.sh -- end-to-end tests of the `flow` command line (docs/cli.md): help and
# version, usage errors, validate, graph, run (results, failures, inputs, progress
# lines, --quiet, --json, --start, cancellation) and SIGINT/SIGTERM handling.
# Run by ctest with $FLOW = the built binary. Needs only bash and procps (pgrep).
set -u

FLOW=${FLOW:?set FLOW to the path of the flow binary}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/flow-e2e-cli.XXXXXX") || exit 1
BG_PID=""
cleanup() {
    if [ -n "$BG_PID" ]; then
        kill -KILL "$BG_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
cd "$TMP" || exit 1

pass=0
fail=0
ok() {
    pass=$((pass + 1))
    echo "ok   $1"
}
ko() {
    fail=$((fail + 1))
    echo "FAIL $1"
    shift
    for line in "$@"; do
        echo "     $line"
    done
    echo "     --- stdout:"
    sed 's/^/     | /' "$TMP/out" 2>/dev/null | head -30
    echo "     --- stderr:"
    sed 's/^/     | /' "$TMP/err" 2>/dev/null | head -30
}

# run CMD...: run with stdin from /dev/null; sets $rc, keeps $TMP/out and $TMP/err.
run() {
    "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
    rc=$?
}

# expect NAME WANT_RC [CHECK...]: each CHECK is "out~TEXT" / "err~TEXT" (contains the
# fixed text), "out!TEXT" / "err!TEXT" (does not contain it), "out=~RE" / "err=~RE"
# (a line matches the extended regex), "out==TEXT" / "err==TEXT" (whole file equals
# TEXT plus a newline), "err#N" (exactly N lines).
expect() {
    local name=$1 want=$2
    shift 2
    local problems=() check stream text file
    if [ "$rc" != "$want" ]; then
        problems+=("exit status $rc, expected $want")
    fi
    for check in "$@"; do
        stream=${check:0:3}
        file="$TMP/$stream"
        case "${check:3}" in
        '=~'*)
            text=${check:5}
            grep -Eq -- "$text" "$file" || problems+=("$stream has no line matching /$text/")
            ;;
        '=='*)
            text=${check:5}
            [ "$(cat "$file")" = "$text" ] || problems+=("$stream is not exactly '$text'")
            ;;
        '~'*)
            text=${check:4}
            grep -Fq -- "$text" "$file" || problems+=("$stream lacks '$text'")
            ;;
        '!'*)
            text=${check:4}
            if grep -Fq -- "$text" "$file"; then problems+=("$stream has '$text'"); fi
            ;;
        '#'*)
            text=${check:4}
            local count
            count=$(wc -l <"$file")
            [ "$count" -eq "$text" ] || problems+=("$stream has $count lines, expected $text")
            ;;
        *)
            problems+=("bad check '$check'")
            ;;
        esac
    done
    if [ ${#problems[@]} -eq 0 ]; then
        ok "$name"
    else
        ko "$name" "${problems[@]}"
    fi
}

# squeeze FILE: the file without any whitespace (compare JSON regardless of layout).
squeeze() {
    tr -d ' \n\t' <"$1"
}

# expect_json NAME FRAGMENT...: stdout, whitespace removed, contains every fragment.
expect_json() {
    local name=$1 frag problems=()
    shift
    local flat
    flat=$(squeeze "$TMP/out")
    for frag in "$@"; do
        case "$flat" in
        *"$frag"*) ;;
        *) problems+=("stdout lacks $frag") ;;
        esac
    done
    if [ ${#problems[@]} -eq 0 ]; then
        ok "$name"
    else
        ko "$name" "${problems[@]}"
    fi
}

# ---------------------------------------------------------------------------
# Workflow files

cat >ok.yaml <<'EOF'
name: ok
tasks:
  a:
    run: [echo, a]
  b:
    after: a
    run: [echo, b]
  c:
    after: b
    noop: true
EOF

cat >bad.yaml <<'EOF'
name: bad
tasks:
  a:
    run: [echo, a]
    after: nosuch
EOF

cat >badkey.yaml <<'EOF'
name: badkey
tasks:
  touch:
    run: [touch, ran.marker]
  other:
    run: [echo, x]
    colour: blue
EOF

cat >graph.yaml <<'EOF'
name: graph
tasks:
  fetch:
    run: [echo, '{"score": 0.9}']
  enrich:
    run: [echo, enriched]
  join:
    after: [fetch, enrich]
    run: [echo, joined]
  race:
    after_any: [fetch, enrich]
    run: [echo, first]
  tail:
    after: join
    optional: [race]
    run: [echo, tail]
  route:
    after: tail
    router: true
    run: [echo, needs_review]
  review:
    on: needs_review
    run: [echo, reviewed]
  risky:
    after: tail
    run: ["false"]
    on_error: {fallback: rescue}
  rescue:
    run: [echo, rescued]
EOF

cat >child.yaml <<'EOF'
name: child
tasks:
  load:
    run: [echo, loaded]
  store:
    after: load
    run: [echo, stored]
EOF

# Nested flow, foreach, connect, routers' labels, `flow ctl emit` labels, a label
# nobody names. Task ids follow the file order: pre t0 ... fanout t12.
cat >graph2.yaml <<'EOF'
name: graph2
tasks:
  pre:
    run: [echo, '["a.png", "b.png"]']
  resize:
    after: pre
    foreach: "{{ input }}"
    concurrency: 4
    run: [echo, "{{ item }}"]
  nested:
    after: resize
    flow: child.yaml
  producer:
    shell: 'flow ctl emit progress "{\"pct\": 5}"'
  sink:
    run: [echo, sunk]
  route:
    after: nested
    router: true
    shell: 'test -s "$FLOW_INPUT" && echo approved || echo rejected'
  ok_path:
    on: approved
    run: [echo, ok]
  ko_path:
    on: rejected
    run: [echo, ko]
  opt:
    after: pre
    optional: [producer]
    run: [echo, opt]
  ticker:
    shell: 'flow ctl emit tick'
  on_tick:
    on: tick
    run: [echo, tick]
  puzzled:
    on: mystery
    run: [echo, "?"]
  fanout:
    after: pre
    foreach: "{{ input }}"
    run: [echo, "{{ item }}"]
connect:
  - {from: producer.progress, to: sink, map: {pct: percent}}
EOF

# Two routers: one names its labels, one is opaque (its output is computed).
cat >routers.yaml <<'EOF'
name: routers
tasks:
  a:
    run: [echo, x]
  named:
    after: a
    router: true
    shell: 'echo left || echo right'
  computed:
    after: a
    router: true
    run: [cat, labels.txt]
  l:
    on: left
    run: [echo, l]
  r:
    on: right
    run: [echo, r]
  u:
    on: up
    run: [echo, u]
EOF

cat >pipeline.yaml <<'EOF'
name: pipeline
tasks:
  a:
    run: [echo, '{"x": 1}']
  b:
    run: [echo, '{"y": 2}']
  both:
    after: [a, b]
    shell: 'cat "$FLOW_INPUT"'
  first:
    after_any: [a, b]
    run: [echo, first]
  final:
    after: [both, first]
    shell: 'cat "$FLOW_INPUT"'
EOF

cat >failing.yaml <<'EOF'
name: failing
tasks:
  warmup:
    run: [echo, hi]
  boom:
    after: warmup
    shell: 'echo "disk on fire" >&2; exit 3'
EOF

cat >greet.yaml <<'EOF'
name: greet
tasks:
  hello:
    run: [echo, "hello {{ inputs.name }}"]
EOF

cat >echo_inputs.yaml <<'EOF'
name: echo_inputs
tasks:
  show:
    shell: 'cat "$FLOW_INPUT"'
EOF

cat >entry.yaml <<'EOF'
name: entry
tasks:
  a:
    run: [echo, from_a]
  b:
    after: a
    entry: true
    shell: 'cat "$FLOW_INPUT"'
EOF

cat >cancel.yaml <<'EOF'
name: cancel
tasks:
  stopper:
    shell: 'echo "{\"cancel\": {\"error\": \"stop here\"}}" >> "$FLOW_CONTROL"'
  never:
    after: stopper
    run: [touch, never.marker]
EOF

cat >slow.yaml <<'EOF'
name: slow
tasks:
  one:
    run: [sleep, "0.3"]
  two:
    after: one
    run: [sleep, "0.3"]
EOF

MARK="30.$$"
cat >sleepy.yaml <<EOF
name: sleepy
tasks:
  nap:
    run: [sleep, "$MARK"]
EOF

# ---------------------------------------------------------------------------
# Help, version, usage errors

run "$FLOW" --version
expect "--version" 0 "out==flow 0.1.0" "err#0"

run "$FLOW" --help
expect "--help" 0 "out~usage: flow" "out~run" "out~validate" "out~graph" "err#0"

for cmd in run validate graph ctl; do
    run "$FLOW" "$cmd" --help
    expect "$cmd --help" 0 "out~usage: flow $cmd" "err#0"
    run "$FLOW" help "$cmd"
    expect "help $cmd" 0 "out~usage: flow $cmd"
done
run "$FLOW" run -h
expect "run -h" 0 "out~usage: flow run" "out~--input" "out~Exit status"

run "$FLOW"
expect "no command" 2 "err~usage: flow"

run "$FLOW" frobnicate
expect "unknown command" 2 "err=~^flow: unknown command 'frobnicate'" "err#1"

run "$FLOW" rnu ok.yaml
expect "unknown command suggests" 2 "err~did you mean 'run'?"

run "$FLOW" --bogus
expect "unknown global option" 2 "err=~^flow: unknown option '--bogus'" "err#1"

run "$FLOW" run --jbos ok.yaml
expect "unknown option for run" 2 \
    "err==flow: unknown option '--jbos' for 'run' (see 'flow run --help')"

run "$FLOW" run ok.yaml --jbos
expect "unknown option after the file" 2 "err~unknown option '--jbos' for 'run'" "err#1"

run "$FLOW" validate --nope ok.yaml
expect "unknown option for validate" 2 "err~unknown option '--nope' for 'validate'"

run "$FLOW" run
expect "run without FILE" 2 "err=~^flow: .*FILE" "err#1"

run "$FLOW" validate
expect "validate without FILE" 2 "err=~^flow: .*FILE" "err#1"

run "$FLOW" run ok.yaml --jobs
expect "missing option value" 2 "err~'--jobs'" "err#1"

run "$FLOW" run ok.yaml --jobs many
expect "bad --jobs" 2 "err~'many'" "err#1"

run "$FLOW" run ok.yaml --jobs=-1
expect "negative --jobs" 2 "err~'-1'" "err#1"

run "$FLOW" run ok.yaml extra.yaml
expect "extra argument" 2 "err~unexpected argument 'extra.yaml'"

run "$FLOW" run ok.yaml --store nosuch:x
expect "unknown store scheme" 2 \
    "err==flow: unknown store scheme 'nosuch' in 'nosuch:x' (built in: sqlite, disk, memory, redis)"

run "$FLOW" run ok.yaml --store "sqlite:$TMP/s1/flow.db"
expect "--store sqlite:PATH" 0 "out~\"b\""
[ -f "$TMP/s1/flow.db" ] && ok "--store creates the store" || ko "--store creates the store" "no $TMP/s1/flow.db"

run "$FLOW" run ok.yaml --detach --store "sqlite:$TMP/s2/flow.db"
expect "--detach prints the run id" 0 "out=~^[0-9]{8}-[0-9]{6}-[0-9a-f]{12}$" "err#0"
detached=$(cat "$TMP/out")
for i in $(seq 1 100); do
    [ "$("$FLOW" status "$detached" --json --store "sqlite:$TMP/s2/flow.db" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)" = completed ] && break
    sleep 0.05
done
run "$FLOW" status "$detached" --json --store "sqlite:$TMP/s2/flow.db"
expect "--detach: the run completes in the background" 0 'out=~^  "status": "completed"'

run "$FLOW" graph ok.yaml --format png
expect "unknown graph format" 2 "err~unknown format 'png'"

# ---------------------------------------------------------------------------
# validate

run "$FLOW" validate ok.yaml
expect "validate ok" 0 "out==ok: ok.yaml: 3 tasks" "err#0"

run "$FLOW" validate bad.yaml
expect "validate unknown task" 2 "err=~^bad\.yaml:[45]:[0-9]+: error: .*nosuch" "err!(bad.yaml" "out#0"

run "$FLOW" validate badkey.yaml
expect "validate unknown key" 2 "err=~^badkey\.yaml:7:[0-9]+: error: unknown key 'colour'"

printf 'name: broken\ntasks: [unclosed\n' >syntax.yaml
run "$FLOW" validate syntax.yaml
expect "validate syntax error" 2 "err=~^syntax\.yaml:[0-9]+:[0-9]+: error: syntax error"

run "$FLOW" validate missing.yaml
expect "validate missing file" 2 "err=~^missing\.yaml: error: cannot open 'missing\.yaml'"

run "$FLOW" validate --json ok.yaml
expect "validate --json ok" 0 "err#0"
expect_json "validate --json ok body" '"valid":true' '"errors":[]' '"warnings":'

run "$FLOW" validate bad.yaml --json
expect "validate --json invalid" 2 "err#0"
expect_json "validate --json invalid body" '"valid":false' 'nosuch'

# ---------------------------------------------------------------------------
# graph

run "$FLOW" graph graph.yaml
expect "graph mermaid" 0 "out=~^flowchart TD$" "out~fetch" "out~enrich" "out~join" \
    "out~race" "out~tail" "out~review" "out~rescue" "out~-->" "out~-.->|any|" \
    "out~-.->|optional|" "out~-.->|on error|" "out~needs_review" 'out~{"route"}'

run "$FLOW" graph --format dot graph.yaml
expect "graph dot" 0 "out=~^digraph " "out~->" "out~style=dashed" 'out~label="any"' \
    'out~label="optional"' 'out~label="on error"' "out~shape=diamond" 'out~"needs_review"' \
    'out~"fetch"' "out=~^}$"

run "$FLOW" graph graph.yaml -f json
expect "graph json" 0 'out~"tasks"' 'out~"edges"' 'out~"name": "fetch"'
expect_json "graph json kinds" '"kind":"after"' '"kind":"after_any"' '"kind":"optional"' \
    '"kind":"fallback"' '"router":true'

run "$FLOW" graph bad.yaml
expect "graph of an invalid file" 2 "err=~^bad\.yaml:[45]:[0-9]+: error: .*nosuch" "out#0"

# Nested flows, foreach, connect, labels and who may emit them (docs/cli.md legend).
run "$FLOW" graph graph2.yaml
expect "graph mermaid: nested flow as a subgraph" 0 \
    'out~    subgraph t2 ["nested<br/>(flow: child)"]' 'out~        t2_t0(["load"])' \
    'out~        t2_t1["store"]' 'out~        t2_t0 --> t2_t1' 'out=~^    end$' \
    'out~    t1 --> t2' 'out~    t2 --> t5'
expect "graph mermaid: foreach notes" 0 'out~t1["resize<br/>(foreach, 4 at once)"]' \
    'out~t12["fanout<br/>(foreach)"]'
expect "graph mermaid: connect with its map" 0 'out~    t3 --o|"progress (pct→percent)"| t4'
expect "graph mermaid: optional dotted" 0 'out~    t3 -.->|optional| t8'
expect "graph mermaid: labels and who may emit them" 0 'out~l0{{"approved"}}' \
    'out~l0 --> t6' 'out~l1 --> t7' 'out~    t5 -.-> l0' 'out~    t5 -.-> l1' \
    'out=~^    t9 -.-> l[0-9]+$' 'out~{{"mystery"}}' 'out!t3 -.-> l'
if [ "$(grep -c -- '-.-> l' "$TMP/out")" = 3 ]; then
    ok "graph mermaid: a label nobody names has no emitter"
else
    ko "graph mermaid: a label nobody names has no emitter" "want 3 may-emit edges"
fi

run "$FLOW" graph graph2.yaml --format dot
expect "graph dot: nested flow as a cluster" 0 'out~compound=true;' \
    'out~    subgraph cluster_t2 {' 'out~        label="nested\n(flow: child)";' \
    'out~        t2_t0 [label="load", style="rounded,bold"];' \
    'out~    t1 -> t2_t0 [lhead=cluster_t2];' 'out~    t2_t1 -> t5 [ltail=cluster_t2];'
expect "graph dot: foreach, connect, may emit" 0 \
    'out~t1 [label="resize\n(foreach, 4 at once)"];' \
    'out~t3 -> t4 [color=blue, fontcolor=blue, arrowhead=dot, label="progress (pct→percent)"];' \
    'out~t5 -> l0 [style=dotted, arrowhead=empty];' \
    'out~t3 -> t8 [style=dotted, label="optional"];'
if command -v dot >/dev/null 2>&1; then
    cp "$TMP/out" "$TMP/graph2.dot"
    run dot -Tsvg "$TMP/graph2.dot"
    expect "graph dot: Graphviz accepts it" 0 "out~<svg"
fi

run "$FLOW" graph graph2.yaml -f json
expect "graph json: nested flow, foreach, connect" 0
expect_json "graph json: nested flow, foreach, connect body" '"kind":"flow"' '"subflow":{' \
    '"name":"child"' '"foreach":"{{input}}"' '"concurrency":4' '"kind":"connect"' \
    '"event":"progress"' '"map":{"pct":"percent"}'

run "$FLOW" graph routers.yaml
expect "graph: a router names its labels, the opaque one gets the rest" 0 \
    'out~    t1 -.-> l0' 'out~    t1 -.-> l1' 'out~    t2 -.-> l2' 'out!t2 -.-> l0' \
    'out!t1 -.-> l2'

# ---------------------------------------------------------------------------
# run: results, events, failures

run "$FLOW" run pipeline.yaml
expect "run pipeline" 0 "err=~^run [^ ]+$" "err=~^completed in [0-9.]+s: 5 tasks, 0 failed" \
    "err=~^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} started +a \(attempt 1\)$" \
    "err=~^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} completed +final \([0-9]+\.[0-9]+s\)$"
expect_json "run pipeline result" '"first":"first"' '"a":{"x":1}' '"b":{"y":2}'
if [ "$(head -1 "$TMP/err" | cut -c1-4)" = "run " ]; then
    ok "run id is the first line of stderr"
else
    ko "run id is the first line of stderr"
fi
n_started=$(grep -Ec ' started +[a-z]+ \(attempt' "$TMP/err")
n_done=$(grep -Ec ' completed +[a-z]+ \(' "$TMP/err")
n_first=$(grep -Ec ' started +first ' "$TMP/err")
if [ "$n_started" -eq 5 ] && [ "$n_done" -eq 5 ] && [ "$n_first" -eq 1 ]; then
    ok "one line per task event, after_any fired once"
else
    ko "one line per task event, after_any fired once" \
        "started=$n_started completed=$n_done first=$n_first (want 5 5 1)"
fi
if grep -q $'\r' "$TMP/err" || grep -q $'\033' "$TMP/err"; then
    ko "no terminal codes when stderr is not a terminal"
else
    ok "no terminal codes when stderr is not a terminal"
fi

run "$FLOW" run failing.yaml
expect "failing task" 1 "err=~ failed +boom: " "err=~^failed: " "err~disk on fire" "out#0"

run "$FLOW" run badkey.yaml
expect "invalid workflow runs nothing" 2 "err=~^badkey\.yaml:7:[0-9]+: error: .*colour"
if [ -e ran.marker ]; then
    ko "invalid workflow runs nothing: marker"
else
    ok "invalid workflow runs nothing: marker"
fi

run "$FLOW" run cancel.yaml
expect "cancelled run" 4 "err~stop here"
if [ -e never.marker ]; then ko "cancelled run stops"; else ok "cancelled run stops"; fi

# ---------------------------------------------------------------------------
# run: inputs

run "$FLOW" run greet.yaml --input name=world
expect "--input reaches templates" 0 'out=="hello world"'

echo '{"name": "file"}' >inputs.json
run "$FLOW" run greet.yaml --inputs inputs.json
expect "--inputs reaches templates" 0 'out=="hello file"'

run "$FLOW" run --input name=flag greet.yaml --inputs inputs.json
expect "--input overrides --inputs" 0 'out=="hello flag"'

# K=V is the string as typed, K:=JSON a JSON value (httpie's convention).
run "$FLOW" run echo_inputs.yaml -i v=1.10 -i n=12 -i flag=true -i 'list=[1, 2]' -i name=bob \
    -i 'text=not json' -i empty= -i 'eq=a=b' -i 'a:b=c'
expect "--input K=V is the string as typed" 0
expect_json "--input K=V is the string as typed: body" '"v":"1.10"' '"n":"12"' '"flag":"true"' \
    '"list":"[1,2]"' '"name":"bob"' '"text":"notjson"' '"empty":""' '"eq":"a=b"' '"a:b":"c"'

run "$FLOW" run echo_inputs.yaml -i count:=42 -i flag:=true -i 'list:=[1, 2]' \
    -i 'obj:={"k": "v"}' -i 'quoted:="text"' -i nothing:=null -i v:=1.10
expect "--input K:=JSON is a JSON value" 0
expect_json "--input K:=JSON is a JSON value: body" '"count":42' '"flag":true' '"list":[1,2]' \
    '"obj":{"k":"v"}' '"quoted":"text"' '"nothing":null' '"v":1.1'

run "$FLOW" run echo_inputs.yaml -i 'n:=1.' -i ok=1
expect "--input K:=JSON with bad JSON" 2 "err=~^flow: option '--input n:=1\.' of 'run' is not JSON" \
    "err~for a string write 'n=...'" "err#1" "out#0"

run "$FLOW" run echo_inputs.yaml -i :=1
expect "--input :=JSON without a key" 2 "err~empty KEY" "err#1"

run "$FLOW" run greet.yaml --input name
expect "--input without =" 2 "err=~^flow: .*KEY=VALUE or KEY:=JSON" "err#1"

echo '[1, 2]' >array.json
run "$FLOW" run greet.yaml --inputs array.json
expect "--inputs not an object" 2 "err=~^flow: .*array\.json.*object" "err#1"

echo '{"name": ' >broken.json
run "$FLOW" run greet.yaml --inputs broken.json
expect "--inputs invalid JSON" 2 "err=~^broken\.json:2(:[0-9]+)?: error: invalid JSON in inputs file" \
    "err#1"

run "$FLOW" run greet.yaml --inputs nothere.json
expect "--inputs missing file" 2 "err=~^flow: .*nothere\.json" "err#1"

# ---------------------------------------------------------------------------
# run: --quiet, --json, --id, --start, --jobs

run "$FLOW" run greet.yaml --input name=q --quiet
expect "--quiet prints nothing on stderr" 0 "err#0" 'out=="hello q"'

run "$FLOW" run -q failing.yaml
expect "--quiet still reports a failure" 1 "err=~^failed: " "err!started"

run "$FLOW" run greet.yaml --input name=j --json --id my-run-1 --store memory: --wait
expect "--json prints the run" 0 "err=~^run my-run-1$"
expect_json "--json body" '"id":"my-run-1"' '"status":"completed"' '"tasks":[' '"result":"helloj"'

run "$FLOW" run entry.yaml --start b --input k=v -j 1
expect "--start runs the entry task first" 0 "err!started   a " "err=~ started +b "
expect_json "--start input" '"k":"v"'

run "$FLOW" run entry.yaml --start nosuch
expect "--start unknown task" 2 "err=~^flow: .*nosuch" "err!started"

# ---------------------------------------------------------------------------
# Progress on a terminal (script(1) gives the run a pseudo-terminal)

if command -v script >/dev/null 2>&1; then
    run script -qec "'$FLOW' run '$TMP/slow.yaml'" /dev/null
    if [ "$rc" = 0 ] && grep -q $'\r\033\[K' "$TMP/out" &&
        grep -Eq '\] 1/2 done, 1 running \| running: two' "$TMP/out" &&
        ! grep -Eq ' started +one \(attempt' "$TMP/out"; then
        ok "terminal progress bar"
    else
        ko "terminal progress bar" "rc=$rc; want a bar redrawn with \\r ESC[K, no event lines"
    fi
else
    echo "skip terminal progress bar (no script(1))"
fi

# ---------------------------------------------------------------------------
# Signals: the run stops, its commands die, exit 130

# interrupt_test NAME SIGNAL
interrupt_test() {
    local name=$1 sig=$2 i
    "$FLOW" run sleepy.yaml >"$TMP/out" 2>"$TMP/err" </dev/null &
    BG_PID=$!
    for i in $(seq 1 100); do
        pgrep -f "sleep $MARK" >/dev/null && break
        sleep 0.05
    done
    if ! pgrep -f "sleep $MARK" >/dev/null; then
        ko "$name" "the task 'sleep $MARK' never started"
        kill -KILL "$BG_PID" 2>/dev/null
        wait "$BG_PID" 2>/dev/null
        BG_PID=""
        return
    fi
    local t0=$SECONDS
    kill "-$sig" "$BG_PID"
    for i in $(seq 1 100); do
        kill -0 "$BG_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$BG_PID" 2>/dev/null; then
        ko "$name" "flow run still running 5s after SIG$sig"
        kill -KILL "$BG_PID" 2>/dev/null
    fi
    wait "$BG_PID"
    rc=$?
    BG_PID=""
    expect "$name" 130 "err=~^interrupted$"
    if [ $((SECONDS - t0)) -gt 3 ]; then
        ko "$name: fast" "took $((SECONDS - t0))s"
    fi
    sleep 0.2
    if pgrep -f "sleep $MARK" >/dev/null; then
        ko "$name: no orphan" "'sleep $MARK' is still running"
        kill -KILL $(pgrep -f "sleep $MARK") 2>/dev/null
    else
        ok "$name: no orphan"
    fi
}

interrupt_test "SIGINT stops the run" INT
interrupt_test "SIGTERM stops the run" TERM

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
