#!/bin/bash
# Human feedback through the CLI (issue #5, docs/concepts.md): the seeds' examples pause
# (exit 3), are answered from another process and resumed; an answer reaches a runner that
# waits (--wait); timeouts take their defaults, live and while nobody runs the flow; a waiting
# runner killed with SIGKILL loses nothing; bad answers change nothing; a deadline is kept
# (late answers refused, expired requests listed as such); two answers at once (two real
# processes, with and without a runner), or an answer at the deadline: exactly one is taken;
# notifications run.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
unset FLOW_STORE
SEEDS=$FLOW_SOURCE_DIR/examples/seeds

status_of() { "$FLOW" status "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
open_requests() { "$FLOW" feedback "$1" --json | python3 -c 'import json,sys; print(" ".join(sorted(r["request"] for r in json.load(sys.stdin))))'; }
wait_until() { # wait_until SECONDS COMMAND...: until it succeeds
    local n=$(( $1 * 20 ))
    shift
    for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.05; done
    return 1
}

# --- CrewAI HITL: router on confidence, review, finalize ---------------------
"$FLOW" run "$SEEDS/crewai_hitl_review.yaml" --input confidence:=0.9 --quiet >out 2>err
rc=$?
check "hitl: a confident draft needs nobody" test "$rc" = 0
check "... finalized automatically" grep -q '"by": "auto"' out
"$FLOW" run "$SEEDS/crewai_hitl_review.yaml" --input confidence:=0.4 --id h1 >out 2>err
rc=$?
check "hitl: an unsure draft pauses (exit 3)" test "$rc" = 3
check "... saying what waits" grep -q "paused after .*: waiting for feedback: review" err
check "... and how to answer" grep -q "answer with: flow feedback h1 review --approve | --reject" err
check "... the run is paused" test "$(status_of h1)" = paused
"$FLOW" feedback >out
check "flow feedback lists the request" grep -q "^h1 review (approval, .*): Publish this draft? Q3 summary: revenue up 12%" out
"$FLOW" feedback h1 review --approve --by alice 2>err
rc=$?
check "answered from another process" test "$rc" = 0
"$FLOW" feedback h1 review --reject 2>err
rc=$?
check "answering twice is refused (exit 2)" test "$rc" = 2
check "... naming who answered, and when" grep -q "request 'review' of run 'h1' was already answered by alice at 20[0-9-]*T[0-9:.]*Z" err
"$FLOW" resume h1 --quiet >out 2>err
rc=$?
check "hitl: resumed with the answer, it finalizes" test "$rc" = 0
check "... with who approved" grep -q '"by": "alice"' out
"$FLOW" run "$SEEDS/crewai_hitl_review.yaml" --input confidence:=0.4 --id h2 --quiet >/dev/null 2>&1
"$FLOW" feedback h2 review --reject 2>/dev/null
"$FLOW" resume h2 --quiet >out 2>err
rc=$?
check "hitl: a rejected draft fails finalize" test "$rc" = 1
check "... saying so" grep -q "the draft was rejected" err

# --- Graflow approval: next_task or cancel ------------------------------------
"$FLOW" run "$SEEDS/graflow_feedback_approval.yaml" --id d1 --quiet >/dev/null 2>&1
rc=$?
check "approval: pauses" test "$rc" = 3
"$FLOW" feedback d1 deploy_approval --approve 2>/dev/null
"$FLOW" resume d1 --quiet >out 2>err
rc=$?
check "approval: approved, it deploys" grep -q '"deployed"' out
"$FLOW" run "$SEEDS/graflow_feedback_approval.yaml" --id d2 --quiet >/dev/null 2>&1
"$FLOW" feedback d2 deploy_approval --reject 2>/dev/null
"$FLOW" resume d2 --quiet >out 2>err
rc=$?
check "approval: rejected, the run is cancelled (exit 4)" test "$rc" = 4
check "... with the reason" grep -q "cancelled: Deployment rejected" err

# --- Graflow text, selection, channel: three at once -------------------------
"$FLOW" run "$SEEDS/graflow_feedback_inputs.yaml" --id i1 --quiet >/dev/null 2>&1
rc=$?
check "inputs: pauses with three requests open" test "$(open_requests i1)" = "config_input model_selection user_input"
"$FLOW" feedback i1 model_selection --select gpt-5 2>err
rc=$?
check "a selection outside the options is refused (exit 2)" test "$rc" = 2
check "... naming the options" grep -q "'gpt-5' is not one of the options \[\"gpt-4o\",\"gpt-4o-mini\",\"claude-3-5-sonnet\"\]" err
check "... and changes nothing" test "$(open_requests i1)" = "config_input model_selection user_input"
"$FLOW" feedback i1 config_input --approve 2>err
rc=$?
check "an approval for a text request is refused" grep -q "a text request is answered with a text" err
"$FLOW" feedback i1 nosuch --text x 2>err
rc=$?
check "an unknown request is refused (exit 2)" test "$rc" = 2
check "... clearly" grep -q "run 'i1' has no feedback request 'nosuch'" err
"$FLOW" feedback i1 config_input --text verbose 2>/dev/null
"$FLOW" resume i1 --quiet >out 2>err
rc=$?
check "inputs: with one answer of three, it pauses again" test "$rc" = 3
check "... two left" test "$(open_requests i1)" = "model_selection user_input"
"$FLOW" feedback i1 model_selection --select gpt-4o-mini 2>/dev/null
"$FLOW" feedback i1 user_input --text "durable workflows" 2>/dev/null
"$FLOW" resume i1 --quiet >out 2>err
rc=$?
check "inputs: all answered, it completes" test "$rc" = 0
expect_json "$(cat out)" '{"config": "verbose", "model": "gpt-4o-mini", "query": "durable workflows"}' \
    "inputs: the answers reach the tasks and the channel"

# --- the rest of the run goes on while a request waits ---------------------
cat >side.yaml <<'EOF'
name: side
tasks:
  ask:
    feedback: {type: approval, request: ok, message: "Go?"}
  slow:
    shell: sleep 0.5; echo '"slow done"'
  after_slow:
    after: slow
    shell: echo '"after slow"'
  end:
    after: [ask, after_slow]
    input: {ok: "{{ tasks.ask.output.approved }}", side: "{{ tasks.after_slow.output }}"}
EOF
"$FLOW" run side.yaml --id s1 >out 2>err
rc=$?
check "a branch goes on while the other waits, then the run pauses" test "$rc" = 3
check "... after that branch completed" grep -q "completed after_slow" err

# --- an answer reaches a waiting runner -------------------------------------
"$FLOW" run side.yaml --id w1 --wait --quiet >out 2>err &
pid=$!
wait_until 30 bash -c "'$FLOW' feedback w1 --json 2>/dev/null | grep -q '\"request\": \"ok\"'"
sleep 0.7 # the other branch is done: only the person is left
check "--wait: the runner keeps waiting" kill -0 "$pid"
"$FLOW" feedback w1 ok --approve --by bob 2>/dev/null
wait "$pid"
rc=$?
check "--wait: the answer lets it finish (exit 0)" test "$rc" = 0
expect_json "$(cat out)" '{"ok": true, "side": "after slow"}' "--wait: the result"

# --- a waiting runner killed with SIGKILL loses nothing ----------------------
"$FLOW" run side.yaml --id k1 --wait --quiet >out 2>err &
pid=$!
wait_until 30 bash -c "'$FLOW' status k1 --json 2>/dev/null | grep -q '\"task\": \"after_slow\".*' && '$FLOW' status k1 --json | python3 -c 'import json,sys; sys.exit(not any(t[\"task\"]==\"after_slow\" and t[\"status\"]==\"completed\" for t in json.load(sys.stdin)[\"tasks\"]))'"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
check "killed while waiting: the request is still open" test "$(open_requests k1)" = "ok"
"$FLOW" feedback k1 ok --approve 2>/dev/null
"$FLOW" resume k1 --quiet >out 2>err
rc=$?
check "killed while waiting: answered and resumed, it completes" test "$rc" = 0
expect_json "$(cat out)" '{"ok": true, "side": "after slow"}' "... with nothing lost"
"$FLOW" logs k1 slow >logs
check "... the branch that had completed did not run again" test "$(grep -c 'act_started' logs)" = 1

# --- timeouts ---------------------------------------------------------------
cat >timeout.yaml <<'EOF'
name: timeout
tasks:
  ask:
    feedback: {type: approval, request: go, message: "Go?", timeout: 1s, default: approve, channel_key: go}
  tell:
    after: ask
    input: {approved: "{{ state.go }}", by: "{{ tasks.ask.output.by }}"}
EOF
"$FLOW" run timeout.yaml --id t1 --wait --quiet >out 2>err
rc=$?
check "timeout: a waiting runner takes the default" test "$rc" = 0
expect_json "$(cat out)" '{"approved": true, "by": "timeout"}' "... answered by the timeout"
"$FLOW" run timeout.yaml --id t2 --quiet >/dev/null 2>&1
rc=$?
check "timeout: without --wait, it pauses" test "$rc" = 3
sleep 1.2
"$FLOW" resume t2 --quiet >out 2>err
rc=$?
check "timeout: run out while nobody ran it, the default is taken on resume" test "$rc" = 0
expect_json "$(cat out)" '{"approved": true, "by": "timeout"}' "... by the timeout"
cat >nodefault.yaml <<'EOF'
name: nodefault
tasks:
  ask:
    feedback: {type: text, request: q, message: "Say something", timeout: 300ms}
EOF
"$FLOW" run nodefault.yaml --wait --quiet >out 2>err
rc=$?
check "timeout without a default fails the task (exit 1)" test "$rc" = 1
check "... saying so" grep -q "no answer to feedback request 'q' within 0.3s" err

# --- a deadline is a promise -----------------------------------------------------
cat >promise.yaml <<'EOF'
name: promise
tasks:
  ask:
    feedback: {type: approval, request: go, message: "Go?", timeout: 3s, default: false}
  tell:
    after: ask
    input: {approved: "{{ tasks.ask.output.approved }}", by: "{{ tasks.ask.output.by }}", at: "{{ tasks.ask.output.at }}"}
EOF
"$FLOW" run promise.yaml --id p1 --quiet >/dev/null 2>&1
rc=$?
check "promise: nobody runs the flow once it has paused" test "$rc" = 3
"$FLOW" feedback p1 >out
check "... before the deadline the request is answerable" grep -q "answer: flow feedback p1 go --approve | --reject" out
sleep 3.2
"$FLOW" feedback p1 go --approve --by late 2>err
rc=$?
check "promise: an answer after the deadline is refused (exit 2)" test "$rc" = 2
check "... naming the run, the request and when it expired" grep -q "request 'go' of run 'p1' expired at 20[0-9-]*T[0-9:.]*Z: its timeout answer stands" err
"$FLOW" feedback p1 >out
check "promise: the list shows it expired" grep -q "^p1 go (approval, .*expired" out
check "... not as answerable" bash -c "! grep -q 'answer: flow feedback p1 go' out"
"$FLOW" feedback p1 --json >out
check "... and so does --json" python3 -c 'import json,sys; r=json.load(open("out")); sys.exit(not (len(r)==1 and r[0]["expired"] is True))'
deadline=$(python3 -c 'import json; print(json.load(open("out"))[0]["deadline"])')
"$FLOW" resume p1 --quiet >out 2>err
rc=$?
check "promise: the resume takes the default, not the late answer" python3 -c '
import json,sys; d=json.load(open("out")); sys.exit(not (d["approved"] is False and d["by"]=="timeout"))'
check "... as of the deadline" python3 -c '
import json,sys; sys.exit(json.load(open("out"))["at"] != sys.argv[1])' "$deadline"

# --- two answers at the same moment: one is taken, the other refused ----------
# Both processes spin on a gate file, so that they start within microseconds.
race() { # race RUN STORE: two answers at once; prints both exit statuses
    rm -f gate
    (while [ ! -e gate ]; do :; done; exec "$FLOW" feedback "$1" ok --approve --by ann --store "$2") 2>race.ann &
    local a=$!
    (while [ ! -e gate ]; do :; done; exec "$FLOW" feedback "$1" ok --reject --by bob --store "$2") 2>race.bob &
    local b=$!
    sleep 0.05
    touch gate
    wait "$a"
    local ra=$?
    wait "$b"
    local rb=$?
    echo "$ra $rb"
}
# one_won "RA RB" WINNER: exactly one exited 0, the other 2 naming it, and the run took it
one_won() {
    case "$1" in
    "0 2") [ "$2" = ann ] && grep -q "request 'ok' of run '.*' was already answered by ann at" race.bob ;;
    "2 0") [ "$2" = bob ] && grep -q "request 'ok' of run '.*' was already answered by bob at" race.ann ;;
    *) return 1 ;;
    esac
}
cat >race.yaml <<'EOF'
name: race
tasks:
  ask:
    feedback: {type: approval, request: ok, message: "Go?"}
  tell:
    after: ask
    input: {approved: "{{ tasks.ask.output.approved }}", by: "{{ tasks.ask.output.by }}"}
EOF
by_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["by"])' "$1" 2>/dev/null; }
for store in "sqlite:$T/race.db" "disk:$T/race.d"; do
    kind=${store%%:*}
    bad=0
    for round in $(seq 1 12); do
        "$FLOW" run race.yaml --id "n$round" --store "$store" --quiet >/dev/null 2>&1
        got=$(race "n$round" "$store")
        "$FLOW" resume "n$round" --store "$store" --quiet >out 2>/dev/null
        winner=$(by_of out)
        if ! one_won "$got" "$winner"; then
            bad=$((bad + 1))
            echo "  $kind, no runner, round $round: exits $got, the run took ${winner:-nothing}"
        fi
    done
    check "race ($kind, no runner): 12 times, exactly one answer taken, the run goes on with it" test "$bad" = 0
    if [ "$kind" = disk ]; then
        check "... and no answer is left as a control file nothing reads" \
            bash -c "! ls '$T'/race.d/runs/*/control/* 2>/dev/null | grep -q ."
    fi
    bad=0
    for round in $(seq 1 8); do
        "$FLOW" run race.yaml --id "w$round" --store "$store" --wait --quiet >out 2>/dev/null &
        runner=$!
        wait_until 30 bash -c "'$FLOW' feedback w$round --json --store '$store' 2>/dev/null | grep -q '\"request\": \"ok\"'"
        got=$(race "w$round" "$store")
        wait "$runner"
        rc=$?
        winner=$(by_of out)
        if [ "$rc" != 0 ] || ! one_won "$got" "$winner"; then
            bad=$((bad + 1))
            echo "  $kind, waiting runner, round $round: exits $got, runner $rc took ${winner:-nothing}"
        fi
    done
    check "race ($kind, a waiting runner): 8 times, exactly one taken, the one the runner goes on with" test "$bad" = 0
done

# --- a person and the timeout at the same moment: the store decides ------------
bad=0
for round in $(seq 1 8); do
    "$FLOW" run promise.yaml --id "c$round" --wait --quiet >out 2>/dev/null &
    runner=$!
    wait_until 30 bash -c "'$FLOW' feedback c$round --json 2>/dev/null | grep -q '\"request\": \"go\"'"
    "$FLOW" feedback "c$round" --json >req
    # start answering 0-150 ms before the deadline: the answer lands just before it (the
    # runner hears of it only at its next 200 ms tick, after its timer), or just after it
    python3 -c '
import datetime as d, json, sys, time
t = json.load(open("req"))[0]["deadline"]
at = d.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=d.timezone.utc).timestamp()
at -= (0.15, 0.08, 0.04, 0.0)[int(sys.argv[1]) % 4]
time.sleep(max(0, at - time.time()))' "$round"
    "$FLOW" feedback "c$round" go --approve --by ann 2>/dev/null
    arc=$?
    wait "$runner"
    winner=$(by_of out)
    if ! { [ "$arc" = 0 ] && [ "$winner" = ann ]; } && ! { [ "$arc" = 2 ] && [ "$winner" = timeout ]; }; then
        bad=$((bad + 1))
        echo "  round $round: the answer exited $arc, the run took ${winner:-nothing}"
    fi
done
check "person vs timeout: the runner goes on with the answer the store took, 8 times" test "$bad" = 0

# --- notifications ------------------------------------------------------------
cat >notify.sh <<'EOF'
#!/bin/sh
cat > "$(dirname "$0")/notified.json"
EOF
chmod +x notify.sh
cat >notify.yaml <<EOF
name: notify
tasks:
  ask:
    feedback: {type: selection, request: pick, message: "Pick one", options: [a, b], notify: [$T/notify.sh]}
  broken:
    feedback: {type: approval, request: other, message: "And?", notify: [/bin/false]}
EOF
"$FLOW" run notify.yaml --id n1 >out 2>err
rc=$?
check "notify: the run pauses as usual" test "$rc" = 3
wait_until 30 test -s notified.json
check "notify: the command got the request as JSON on stdin" python3 -c '
import json,sys; d=json.load(open("notified.json"))
sys.exit(not (d["run"]=="n1" and d["request"]=="pick" and d["task"]=="ask" and d["type"]=="selection" and d["options"]==["a","b"] and d["message"]=="Pick one"))'
check "notify: a failing command is logged, the run is not failed" grep -q "a feedback notification command (pid [0-9]*) exited with status 1" err
"$FLOW" resume n1 --quiet >/dev/null 2>err
check "notify: not sent again on resume" test "$(cat notified.json | wc -c)" -gt 0

finish
