#!/bin/bash
# The redis:// store through the CLI, on a redis-server of its own: run,
# status, logs, pause and resume from other processes, resume after kill -9
# of the runner, $FLOW_STORE, a server restarted between runs, and the ways
# opening it fails (a bad URL, nobody listening, a server that evicts keys):
# one line each, the documented exit status, nothing changed.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
unset FLOW_STORE

status_of() { "$FLOW" status "$1" --json --store "$S" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }

# printf, not test_durable.sh's echo: it looks for its own commands with pgrep
# while this test may run beside it.
cat >slow.yaml <<'EOF'
name: slow
tasks:
  one:
    shell: printf 'one\n' >> marks; echo 1
  two:
    after: one
    shell: |
      printf 'two\n' >> marks; touch two.started
      if [ -e two.hold ]; then
        i=0; while [ -e two.hold ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
      else
        sleep 1
      fi
      echo 2
  three:
    after: two
    shell: printf 'three\n' >> marks; echo '"three"'
EOF

redis_start "$T/redis" || { fail "no redis-server"; finish; exit; }
S="$REDIS_URL?prefix=e2e"
export FLOW_STORE=$S # start_slow's runs (the other commands name the store)

# --- run, status, logs -------------------------------------------------------
: >marks
"$FLOW" run slow.yaml --id r1 --store "$S" --quiet >out 2>err
rc=$?
check "a run in redis completes (exit 0)" test "$rc" = 0
check "... and prints its result" grep -q '"three"' out
check "status reads it back" test "$(status_of r1)" = completed
"$FLOW" status --store "$S" >out
check "the list shows it" grep -Eq "^r1 +slow +completed " out
"$FLOW" logs r1 --store "$S" >out 2>err
check "flow logs reads the journal back" grep -q "act_completed three#" out
check "... to its end" grep -q 'run_ended .*"completed"' out

# --- $FLOW_STORE, strict --------------------------------------------------------
"$FLOW" run slow.yaml --id r2 --quiet >out 2>err
rc=$?
check "\$FLOW_STORE=redis://... is used" test "$rc" = 0
check "... the run is in that store" test "$(status_of r2)" = completed
"$FLOW" run slow.yaml --id r3 --store "$S" --durability strict --quiet >out 2>err
rc=$?
check "--durability strict on a server without appendfsync always fails (exit 1)" test "$rc" = 1
check "... saying why" grep -q "appendfsync" err
"$FLOW" run slow.yaml --id r4 --store "$S&durability=strict" --quiet >out 2>err
rc=$?
check "?durability=strict on such a server is refused (exit 1)" test "$rc" = 1
check "... in one line naming appendfsync" test "$(wc -l <err)" = 1 -a -n "$(grep appendfsync err)"

# --- kill -9, resume ---------------------------------------------------------
: >marks
start_slow k1
kill -KILL "$pid"
wait "$pid" 2>/dev/null
check "after kill -9 the run reads stopped" test "$(status_of k1)" = stopped
"$FLOW" resume k1 --store "$S" >out 2>err
rc=$?
check "resume after kill -9 completes (exit 0)" test "$rc" = 0
check "the completed task did not run again" test "$(runs_of one)" = 1
check "the interrupted task ran again" test "$(runs_of two)" = 2

# --- pause and resume from other processes ---------------------------------------
: >marks
hold_two
start_slow p1
"$FLOW" pause p1 --reason lunch --store "$S" 2>perr
# then two ends: the runner pops P:ctl:RUN when it takes the request
ctl_taken() { [ "$(redis_cmd LLEN e2e:ctl:p1)" = 0 ]; }
wait_until 30 ctl_taken
release_two
check "flow pause asks the runner" grep -q "pause requested for run p1" perr
wait "$pid"
rc=$?
check "the paused runner exits 3" test "$rc" = 3
check "status shows paused" test "$(status_of p1)" = paused
"$FLOW" resume p1 --store "$S" --quiet >out 2>err
rc=$?
check "a paused run resumes to completion" test "$rc" = 0
check "only what was left ran" test "$(runs_of one)$(runs_of two)$(runs_of three)" = 111

# --- the server restarted between runs ----------------------------------------------
: >marks
start_slow s1
kill -KILL "$pid"
wait "$pid" 2>/dev/null
redis_stop
redis_start "$T/redis" || fail "redis-server did not start again"
check "committed runs survive a restart of redis" test "$(status_of r1)" = completed
"$FLOW" resume s1 --store "$S" --quiet >out 2>err
rc=$?
check "a run resumes after redis restarted" test "$rc" = 0
check "... without running its completed task again" test "$(runs_of one)" = 1

# --- failures to open: one line, the exit status, nothing changed -----------------
before=$(python3 - "$REDIS_PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"DBSIZE\r\n")
print(s.recv(64).decode().strip())
PY
)
"$FLOW" status --store "redis://127.0.0.1:99999/0" >out 2>err
rc=$?
check "a malformed redis URL is a usage error (exit 2)" test "$rc" = 2
check "... in one line naming the port" test "$(wc -l <err)" = 1 -a -n "$(grep "bad port '99999'" err)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$FLOW" run slow.yaml --store "redis://127.0.0.1:$port/0" >out 2>err
rc=$?
check "nobody listening: exit 1" test "$rc" = 1
check "... in one line: cannot connect" test "$(wc -l <err)" = 1 -a -n "$(grep "cannot connect to redis://127.0.0.1:$port/0" err)"
"$FLOW" status --store "redis://127.0.0.1:$port/0" >out 2>err
rc=$?
check "flow status with nobody listening: exit 1" test "$rc" = 1
redis_stop
redis_start "$T/redis" "maxmemory-policy allkeys-lru" || fail "redis-server did not start again"
"$FLOW" run slow.yaml --store "$S" >out 2>err
rc=$?
check "a server that evicts keys is refused (exit 1)" test "$rc" = 1
check "... in one line naming maxmemory-policy" test "$(wc -l <err)" = 1 -a -n "$(grep maxmemory-policy err)"
after=$(python3 - "$REDIS_PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"DBSIZE\r\n")
print(s.recv(64).decode().strip())
PY
)
check "... and nothing was written" test "$before" = "$after"
redis_stop
finish
