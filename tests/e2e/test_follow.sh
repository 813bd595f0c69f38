#!/bin/bash
# Following runs (docs/cli.md, "flow logs" --follow, and "flow run" --wait):
# `flow logs RUN [TASK] --follow` prints what the journal holds, then what
# another process adds, until the run ends (exit 0) -- the same lines as
# `flow logs` afterwards; it waits for a paused run and for one whose runner
# died, saying so once; Ctrl-C ends it quietly (130); a reader gone ends it.
# `flow run --wait` and `flow resume --wait` say once what they wait for and
# how to answer. Real processes; runs held at gates (files), never by timing.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
export FLOW_BIN=$FLOW
export FLOW_STORE="sqlite:$T/flow.db" # a store of its own, new each time

# `a` waits at a gate; `b` writes on stderr.
cat >gated.yaml <<'EOF'
name: gated
tasks:
  a: {shell: "touch a.started; while [ ! -e go ]; do sleep 0.05; done; echo a"}
  b: {after: a, shell: "echo warming >&2; echo b"}
EOF
cat >ask.yaml <<'EOF'
name: ask
tasks:
  review: {feedback: {type: approval, message: "ship it?"}}
  after: {after: review, shell: "echo done"}
EOF
cat >asklate.yaml <<'EOF'
name: asklate
tasks:
  deploy: {feedback: {type: text, message: "which tag?", timeout: 1h, default: "v1"}}
EOF

alive() { kill -0 "$1" 2>/dev/null; }
has() { grep -q "$2" "$1" 2>/dev/null; } # has FILE PATTERN

# --- a run another process runs -------------------------------------------------
"$FLOW" run gated.yaml --id f1 >/dev/null 2>&1 &
runner=$!
wait_for a.started
"$FLOW" logs f1 --follow >f1.out 2>f1.err &
follower=$!
wait_until 10 has f1.out "act_started   a#1"
check "--follow prints what the journal holds" grep -q "run_created" f1.out
check "... and keeps following the run (still there)" alive "$follower"
touch go
wait "$runner"
wait "$follower"
rc=$?
check "... until the run ends: exit 0" test "$rc" = 0
check "... its last line the run's end" grep -q "run_ended .*\"status\":\"completed\"" <(tail -1 f1.out)
"$FLOW" logs f1 >logs.out
check "... the same lines flow logs prints afterwards" cmp -s f1.out logs.out
check "... nothing on stderr" test ! -s f1.err
rm -f go a.started

# With TASK: its records, and what its commands wrote, as they come.
"$FLOW" run gated.yaml --id f2 >/dev/null 2>&1 &
runner=$!
wait_for a.started
"$FLOW" logs f2 b --follow >f2b.out 2>f2b.err &
follower=$!
sleep 0.5 # a few looks at the store, none with a record of b
check "--follow TASK: waits for a task that has no records yet" alive "$follower"
check "... having printed nothing of it" test ! -s f2b.out
touch go
wait "$runner"
wait "$follower"
rc=$?
check "... exit 0 at the run's end" test "$rc" = 0
check "... with the task's stderr" grep -q "^      | warming$" f2b.out
"$FLOW" logs f2 b >logs.out
check "... as flow logs RUN TASK prints it" cmp -s f2b.out logs.out
rm -f go a.started

# --json: one object a line.
"$FLOW" logs f2 --follow --json >f2.out 2>f2.err
rc=$?
check "an ended run: printed whole, exit 0 at once" test "$rc" = 0
check "--follow --json: one record a line, every seq in order" python3 -c '
import json, sys
recs = [json.loads(l) for l in open("f2.out")]
sys.exit(not ([r["seq"] for r in recs] == list(range(len(recs))) and recs[-1]["type"] == "run_ended"))'

"$FLOW" logs nosuch --follow >out 2>err
check "no such run: exit 2" test "$?" = 2
"$FLOW" logs f2 nosuch --follow >out 2>err
rc=$?
check "a TASK without records in an ended run: exit 2" test "$rc" = 2
check "... saying so" grep -q "run 'f2' has no records of task 'nosuch'" err

# --- a paused run: waited for, until someone resumes it -------------------------
"$FLOW" run ask.yaml --id p1 >/dev/null 2>&1
"$FLOW" logs p1 --follow >p1.out 2>p1.err &
follower=$!
wait_until 10 has p1.err "is paused"
check "a paused run: said once on stderr" grep -qx "run p1 is paused; waiting for it to go on ('flow resume p1'; Ctrl-C to stop following)" p1.err
check "... and waited for" alive "$follower"
req=$("$FLOW" feedback p1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["request"])')
"$FLOW" feedback p1 "$req" --approve 2>/dev/null
"$FLOW" resume p1 >/dev/null 2>&1
wait "$follower"
rc=$?
check "... resumed elsewhere, it follows it to the end: exit 0" test "$rc" = 0
check "... with the records of the resume" grep -q "act_completed after#" p1.out
check "... the note said once" test "$(grep -c 'is paused' p1.err)" = 1
"$FLOW" logs p1 >logs.out
check "... the same lines as flow logs" cmp -s p1.out logs.out

# Ctrl-C: quietly, 130, the run untouched.
"$FLOW" run ask.yaml --id p2 >/dev/null 2>&1
"$FLOW" logs p2 --follow >p2.out 2>p2.err &
follower=$!
wait_until 10 has p2.err "is paused"
kill -INT "$follower"
wait "$follower"
rc=$?
check "Ctrl-C: exit 130" test "$rc" = 130
check "... quietly (only the note on stderr)" test "$(wc -l <p2.err)" = 1
check "... the run untouched" grep -q "^run p2: paused" <("$FLOW" status p2)

# A reader gone ends it, even while the run waits.
mkfifo pipe
"$FLOW" logs p2 --follow >pipe 2>/dev/null &
follower=$!
head -1 <pipe >first
check "a reader gone (| head -1): it ends too" wait_until 10 bash -c "! kill -0 $follower 2>/dev/null"
wait "$follower"
check "... exit 0" test "$?" = 0

# --- a run whose runner died ------------------------------------------------
"$FLOW" run gated.yaml --id s1 >/dev/null 2>&1 &
runner=$!
wait_for a.started
kill_running "$runner" s1 1 a
rm -f a.started
"$FLOW" logs s1 --follow >s1.out 2>s1.err &
follower=$!
wait_until 10 has s1.err "stopped without ending"
check "a stopped run: said on stderr" grep -qx "run s1 stopped without ending (its runner died); waiting for 'flow resume s1' (Ctrl-C to stop following)" s1.err
touch go
"$FLOW" resume s1 >/dev/null 2>&1
wait "$follower"
rc=$?
check "... resumed, followed to its end: exit 0" test "$rc" = 0
check "... its end printed" grep -q "run_ended" s1.out
rm -f go

# --- flow run --wait: what it waits for, once -------------------------------
# Each run its own files: a file the background runner has yet to open
# still holds what the last one wrote.
"$FLOW" run ask.yaml --id w1 --wait >w1.out 2>w1.err &
runner=$!
wait_until 10 has w1.err "waiting for an answer"
req=$("$FLOW" feedback w1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["request"])')
check "--wait says what it waits for and how to answer" \
    grep -qx "waiting for an answer to approval 'review' of run w1 (request $req): flow feedback w1 $req --approve | --reject" w1.err
sleep 2 # the looks at 0.5 s, 1 s and 2 s after the last event: none may say it again
"$FLOW" feedback w1 "$req" --approve 2>/dev/null
wait "$runner"
rc=$?
check "... answered, the run goes on to its end: exit 0" test "$rc" = 0
check "... said once" test "$(grep -c 'waiting for an answer' w1.err)" = 1

"$FLOW" run asklate.yaml --id w2 --wait >w2.out 2>w2.err &
runner=$!
wait_until 10 has w2.err "waiting for an answer"
check "... with its deadline, and how to answer a text" \
    grep -Eq "^waiting for an answer to text 'deploy' of run w2 \(request [^ ]+, deadline [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}\): flow feedback w2 [^ ]+ --text TEXT$" w2.err
answer() { # answer RUN OPTION...: the run's one open request
    local r
    r=$("$FLOW" feedback "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["request"])')
    "$FLOW" feedback "$1" "$r" "${@:2}" 2>/dev/null
}
answer w2 --text v2
wait "$runner"
check "... answered: exit 0" test "$?" = 0

"$FLOW" run ask.yaml --id w3 >/dev/null 2>&1
"$FLOW" resume w3 --wait >w3.out 2>w3.err &
runner=$!
wait_until 10 has w3.err "waiting for an answer"
check "resume --wait says it too" grep -q "^waiting for an answer to approval 'review' of run w3 " w3.err
answer w3 --reject
wait "$runner"

"$FLOW" run ask.yaml --id w4 --wait --quiet >w4.out 2>w4.err &
runner=$!
wait_until 10 bash -c "'$FLOW' feedback w4 --json 2>/dev/null | grep -q request"
sleep 1
check "--quiet: nothing said" test ! -s w4.err
answer w4 --approve
wait "$runner"

finish
