#!/bin/bash
# Processes and files of command tasks through the CLI (issue #9): what a task
# starts outside its process group (`setsid cmd &`, a double fork) dies with
# the attempt -- timed out, cancelled, or with a runner killed by SIGKILL --
# and leaves no zombie; a task that plants links among the runner's files
# never gets it to write or read through them; the default store refuses a
# `.flow` that is a link or that others can write to.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
unset FLOW_STORE # the default store: .flow/flow.db here
export TMPDIR=$T/tmp # work directories go here
mkdir -p "$TMPDIR"

check() { # check WHAT CONDITION...
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what (rc=${rc:-?}; stderr: $(head -c 600 err 2>/dev/null))"; fi
}
# Each test's sleeps have a duration of their own (1000.<unique>), to be
# found by in the process list.
mark() { echo "1000.$$$1"; }
alive() { pgrep -f "sleep $1\$" >/dev/null; } # alive MARK: such a sleep still runs
count() { pgrep -fc "sleep $1\$" || true; }
wait_count() { # wait_count MARK N: until N such sleeps run (5 s at most)
    local i
    for i in $(seq 1 100); do [ "$(count "$1")" -ge "$2" ] && return 0; sleep 0.05; done
    return 1
}
gone_soon() { # gone_soon MARK: none left within 3 s
    local i
    for i in $(seq 1 60); do alive "$1" || return 0; sleep 0.05; done
    return 1
}
cleanup_marks() { # kill by pid what a failed check left behind
    local pids
    pids=$(pgrep -f "sleep 1000\\.$$[0-9]+\$" || true)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    return 0
}
trap 'cleanup_marks; rm -rf "$T"' EXIT

# flow_yaml MARK TIMEOUT: a task that leaves two sleeps outside its group
# (setsid, and a double fork with setsid) and one inside, then waits; after
# it (it failed), a task of the same run counts the sleeps still there:
# while the runner lives, not when its reaper cleans up after it.
flow_yaml() {
    cat <<EOF
name: escape
tasks:
  escape:
    shell: setsid sleep $1 & (setsid sleep $1 &); (sleep $1 &); touch started; sleep 30
    timeout: $2
    kill_grace: 1s
    on_error: continue
  survivors:
    optional: escape
    shell: pgrep -fc 'sleep $1\$' > survivors || true
EOF
}

# --- timeout ------------------------------------------------------------------
m=$(mark 1)
flow_yaml "$m" 1s >timeout.yaml
"$FLOW" run timeout.yaml --id t1 >out 2>err
rc=$?
check "the run with a timed-out task fails" test "$rc" = 1
check "... saying it timed out" grep -q "escape: timed out; killed by signal 15 (SIGTERM)" err
check "nothing the task started outside its group survives the timeout" test "$(cat survivors)" = 0
check "... nor the run" gone_soon "$m"

# --- cancel from another process ---------------------------------------------
m=$(mark 2)
flow_yaml "$m" 60s >cancel.yaml
rm -f started
"$FLOW" run cancel.yaml --id c1 >out 2>err &
pid=$!
wait_count "$m" 3
"$FLOW" cancel c1 --reason "enough" 2>/dev/null
wait "$pid"
rc=$?
check "the cancelled runner exits 4" test "$rc" = 4
check "nothing the cancelled task started survives" gone_soon "$m"

# --- the runner killed by SIGKILL: its reaper ---------------------------------
m=$(mark 3)
flow_yaml "$m" 60s >kill.yaml
"$FLOW" run kill.yaml --id k1 >out 2>err &
pid=$!
wait_count "$m" 3
check "the task's sleeps run before the kill" test "$(count "$m")" -ge 3
kill -KILL "$pid"
wait "$pid" 2>/dev/null
check "after kill -9 of the runner, its reaper kills them all" gone_soon "$m"
cat >kill.yaml <<EOF
name: escape
tasks:
  escape:
    shell: echo 1
  survivors:
    optional: escape
    shell: echo 0
EOF
"$FLOW" resume k1 --force >out 2>err
rc=$?
check "the killed run resumes" test "$rc" = 0
check "after kill -9 and resume, no work directory is left" test -z "$(ls "$TMPDIR")"

# --- no zombies: orphans that die while the task runs are reaped --------------
cat >zombies.yaml <<'EOF'
name: zombies
tasks:
  orphans:
    shell: |
      for i in 1 2 3 4; do (setsid sh -c 'exit 0' &); done; sleep 0.3; touch orphaned
      i=0; while [ ! -e release ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
      echo '"done"'
EOF
rm -f orphaned release
"$FLOW" run zombies.yaml --id z1 >out 2>err &
pid=$!
# no_zombies PID: none of PID's children is a zombie.
no_zombies() {
    local kid
    for kid in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        [ "$(awk '{print $3}' /proc/"$kid"/stat 2>/dev/null)" = Z ] && return 1
    done
    return 0
}
# The orphans are dead once the task says so; a sweep runs every half second,
# so their zombies are gone soon after, while the task still runs.
wait_until 30 test -e orphaned
check "orphans that died while their task runs are not left as zombies" wait_until 10 no_zombies "$pid"
touch release
wait "$pid"
rc=$?
check "... and the run completes" test "$rc" = 0

# --- links planted among the runner's files -----------------------------------
echo '"precious"' >outside.json
cat >plant.yaml <<EOF
name: plant
tasks:
  plant:
    shell: |
      cd "\$(dirname "\$FLOW_INPUT")" || exit 1
      for a in 2 3 4 5 6; do for f in input.json output control; do
        ln -s '$T/outside.json' "a\$a-1.\$f"; done; done
      rm -f null.json; ln -s '$T/outside.json' null.json
      for n in 1 2 3 4 5 6 7 8 9; do ln -s '$T/outside.json' "state-\$n.json"; done
      echo '{"x": 1}'
  with_input:
    after: plant
    shell: |
      cat "\$FLOW_INPUT" > "\$FLOW_OUTPUT"; echo '{"set": {"k": 1}}' >> "\$FLOW_CONTROL"
  null_input:
    after: with_input
    input: null
    shell: test ! -L "\$FLOW_INPUT" && cat "\$FLOW_INPUT"
EOF
"$FLOW" run plant.yaml --json >out 2>err
rc=$?
check "a run whose task planted links completes" test "$rc" = 0
check "... the file outside is untouched" test "$(cat outside.json)" = '"precious"'
check "... and its work directory, with what the task left in it, is removed" test -z "$(ls "$TMPDIR")"
expect_json "$(python3 -c 'import json,sys; print(json.dumps(json.load(open("out"))["result"]))' 2>/dev/null)" \
    'null' "... the null input was not read through a link"

cat >swap.yaml <<EOF
name: swap
tasks:
  swap:
    shell: rm "\$FLOW_OUTPUT"; ln -s '$T/outside.json' "\$FLOW_OUTPUT"; echo '"stdout"'
EOF
"$FLOW" run swap.yaml >out 2>err
rc=$?
check "a task that swaps \$FLOW_OUTPUT for a link fails" test "$rc" = 1
check "... saying the runner does not follow it" grep -q "cannot read \$FLOW_OUTPUT '.*': it is a symbolic link (never followed)" err
check "... the file outside is untouched" test "$(cat outside.json)" = '"precious"'

# --- the default store's directory --------------------------------------------
cat >one.yaml <<'EOF'
name: one
tasks:
  one: {shell: echo 1}
EOF
"$FLOW" run one.yaml --quiet >out 2>err
check "the default store's files are 0600" test -z "$(find .flow -type f ! -perm 600)"
check "... its directory 0700" test "$(stat -c %a .flow)" = 700
mv .flow real-store
ln -s real-store .flow
"$FLOW" run one.yaml >out 2>err
rc=$?
check "a .flow that is a symbolic link is refused" test "$rc" = 2
check "... with a message naming it and what to do" \
    grep -q "store directory '$T/.flow' is a symbolic link, which is never followed: replace it with a directory of your own, or choose a store with --store or FLOW_STORE" err
"$FLOW" status >out 2>err
check "... by flow status too" grep -q "is a symbolic link" err
rm .flow
mv real-store .flow
chmod 777 .flow
"$FLOW" run one.yaml >out 2>err
rc=$?
check "a .flow writable by others is refused" test "$rc" = 2
check "... with a message naming it and what to do" \
    grep -q "store directory '$T/.flow' is writable by others (mode 0777): run 'chmod go-w $T/.flow', or choose a store with --store or FLOW_STORE" err
chmod 700 .flow
"$FLOW" run one.yaml --quiet >out 2>err
rc=$?
check "once fixed it is used again" test "$rc" = 0
"$FLOW" run one.yaml --quiet --store "sqlite:$T/elsewhere/flow.db" >out 2>err
rc=$?
check "an explicit store elsewhere is not checked that way" test "$rc" = 0

finish
