# lib.sh -- shared by the e2e scripts: a temp dir, pass/fail counting, JSON
# comparison (python3's json, on the machine), and the final tally line.
: "${FLOW:?set FLOW to the flow binary}"
: "${FLOW_SOURCE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${FLOW_BUILD_DIR:=$FLOW_SOURCE_DIR/build}"
T=$(mktemp -d)
# python3 as Debian installs it (scripts/setup.sh) when there is one: a version
# manager's shim first in PATH (pyenv's) costs 0.2 s a start, and the scripts
# start python3 hundreds of times.
# It goes in the build directory, shared by the scripts that run at once.
if [ -x /usr/bin/python3 ] && [ "$(command -v python3)" != /usr/bin/python3 ]; then
    mkdir -p "$FLOW_BUILD_DIR/test-python" 2>/dev/null
    ln -s /usr/bin/python3 "$FLOW_BUILD_DIR/test-python/python3" 2>/dev/null
    [ -x "$FLOW_BUILD_DIR/test-python/python3" ] && export PATH="$FLOW_BUILD_DIR/test-python:$PATH"
fi
REDIS_PIDS=""
trap 'for p in $REDIS_PIDS $STANDIN_PIDS; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
STANDIN_PIDS=""
PASSED=0
FAILED=0

pass() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }

# expect_json ACTUAL EXPECTED WHAT: equal as JSON values
expect_json() {
    if python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1]) != json.loads(sys.argv[2]))' \
        "$1" "$2" 2>/dev/null; then
        pass "$3"
    else
        fail "$3: got $1, expected $2"
    fi
}

# check WHAT CONDITION...: pass when CONDITION (a command) succeeds; a failure
# shows $rc and the start of the file ./err.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what (rc=${rc:-?}; stderr: $(head -c 600 err 2>/dev/null))"; fi
}

# wait_for FILE: until it exists (5 s at most).
wait_for() {
    local i
    for i in $(seq 1 100); do [ -e "$1" ] && return 0; sleep 0.05; done
    return 1
}
# wait_until SECONDS CMD...: poll CMD until it succeeds (false after SECONDS).
wait_until() {
    local n=$(($1 * 20)); shift
    while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.05; n=$((n - 1)); done
    return 1
}
# run_status ID [FLOW ARGS...]: the run's own status, from `flow status --json`
# (its tasks have a "status" too: grepping the text finds theirs first).
run_status() {
    local id=$1
    shift
    "$FLOW" status "$id" --json "$@" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null
}
# run_is ID STATUS [FLOW ARGS...]: is the run's own status STATUS?
run_is() { [ "$(run_status "$1" "${@:3}")" = "$2" ]; }
# write_slow: slow.yaml, three tasks in a row, each appending its name to
# ./marks when it runs; `two` touches two.started, then takes a second, or
# while ./two.hold exists (hold_two, release_two: a minute at most) when the
# test must reach the run before `two` ends however slow its commands start.
write_slow() {
    cat >slow.yaml <<'EOF'
name: slow
tasks:
  one:
    shell: echo one >> marks; echo 1
  two:
    after: one
    shell: |
      echo two >> marks; touch two.started
      if [ -e two.hold ]; then
        i=0; while [ -e two.hold ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
      else
        sleep 1
      fi
      echo 2
  three:
    after: two
    shell: echo three >> marks; echo '"three"'
EOF
}
hold_two() { : >two.hold; }
release_two() { rm -f two.hold; }
# request_taken RUN [DB]: wait (30 s at most) until RUN's runner has taken the
# control requests put for it (pause, cancel): it deletes their rows from the
# sqlite store DB (default .flow/flow.db) when it takes them.
request_taken() {
    wait_until 30 python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[2], timeout=5)
sys.exit(db.execute("SELECT count(*) FROM control WHERE run = ?", (sys.argv[1],)).fetchone()[0] != 0)' \
        "$1" "${2:-.flow/flow.db}"
}
# start_slow RUN: `flow run slow.yaml --id RUN` in the background ($pid), back
# once its task `two` has started (it touches two.started); out and err get
# its output.
start_slow() {
    rm -f two.started
    "$FLOW" run slow.yaml --id "$1" >out 2>err &
    pid=$!
    wait_for two.started
}
# kill_running PID RUN ACT TASK: SIGKILL the runner PID of RUN once the store
# says its activation ACT of TASK runs (the task can start before its
# act_started record is committed: group commit), and reap it.
kill_running() {
    local i
    for i in $(seq 200); do
        "$FLOW" status "$2" 2>/dev/null | grep -Eq "^ +$3 +$4 +running " && break
        sleep 0.05
    done
    kill -KILL "$1"
    { wait "$1"; } 2>/dev/null
}
# runs_of TASK: how often TASK ran (tasks append their names to ./marks).
runs_of() { grep -c "^$1\$" marks 2>/dev/null || true; }

finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}

# redis_start DIR [CONFIG LINE...]: a redis-server of our own on a free port of
# 127.0.0.1 with its data (append-only file) in DIR; sets REDIS_PORT,
# REDIS_URL and REDIS_PID. Stopped at exit (or by redis_stop / redis_kill).
redis_start() {
    local dir=$1 fresh=0 try i
    shift
    mkdir -p "$dir"
    if [ -z "${REDIS_PORT:-}" ] || [ "${REDIS_DIR:-}" != "$dir" ]; then fresh=1; fi
    REDIS_DIR=$dir
    # A free port is free when python looks; another process may take it
    # before the server binds it: a new server then tries another (a restart
    # keeps its port, which its clients know).
    for try in 1 2 3 4 5; do
        if [ "$fresh" = 1 ]; then
            REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        fi
        {
            echo "port $REDIS_PORT"; echo "bind 127.0.0.1"; echo "dir $dir"
            echo "appendonly yes"; echo "appendfsync everysec"; echo 'save ""'
            echo "logfile $dir/redis.log"; echo "maxmemory-policy noeviction"
            for line in "$@"; do echo "$line"; done
        } >"$dir/redis.conf"
        setsid redis-server "$dir/redis.conf" &
        REDIS_PID=$!
        REDIS_PIDS="$REDIS_PIDS $REDIS_PID"
        REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
        for i in $(seq 200); do
            if python3 - "$REDIS_PORT" <<'PY' 2>/dev/null; then return 0; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(64).startswith((b"+PONG", b"-NOAUTH")) else 1)
PY
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.05
        done
        kill -0 "$REDIS_PID" 2>/dev/null && break # up, but not answering: no other port helps
        wait "$REDIS_PID" 2>/dev/null
        [ "$fresh" = 1 ] || sleep 0.2 # a restart waits for its port to be let go
    done
    echo "redis-server did not start on port $REDIS_PORT (see $dir/redis.log)" >&2
    return 1
}

# redis_cmd ARG...: one command to the server of redis_start, its reply as
# JSON on stdout (RESP by hand: redis-cli may not be installed); an error
# reply exits 1 with it on stderr.
redis_cmd() {
    python3 -c '
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
args = [a.encode() for a in sys.argv[2:]]
s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
f = s.makefile("rb")
def parse():
    line = f.readline()[:-2]
    t, rest = line[:1], line[1:]
    if t == b"+": return rest.decode()
    if t == b"-": sys.exit("redis: " + rest.decode())
    if t == b":": return int(rest)
    if t == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [parse() for _ in range(n)]
    sys.exit("bad reply %r" % line)
print(json.dumps(parse()))' "$REDIS_PORT" "$@"
}

# redis_kill: SIGKILL the server of redis_start (redis_start DIR again restarts it).
redis_kill() { kill -9 "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; true; }
# redis_stop: stop it cleanly.
redis_stop() { kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; true; }

# standin_start DIR [ARG...]: the HTTP stand-in (tests/support/http_standin.py:
# plain HTTP, and HTTPS with --cert/--key; a chat-completions endpoint) on
# free ports of 127.0.0.1; sets STANDIN_PORT (and STANDIN_TLS_PORT) and
# STANDIN_PID. Stopped at exit. Proxies from the environment are dropped:
# requests go to 127.0.0.1 only.
standin_start() {
    local dir=$1
    shift
    mkdir -p "$dir"
    unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
    export NO_PROXY=127.0.0.1 no_proxy=127.0.0.1
    rm -f "$dir/ports"
    python3 "$FLOW_SOURCE_DIR/tests/support/http_standin.py" --ports "$dir/ports" "$@" \
        >"$dir/standin.log" 2>&1 &
    STANDIN_PID=$!
    disown "$STANDIN_PID" 2>/dev/null # no "Killed" when the exit trap stops it
    STANDIN_PIDS="$STANDIN_PIDS $STANDIN_PID"
    local i
    for i in $(seq 200); do
        [ -s "$dir/ports" ] && break
        sleep 0.05
    done
    if [ ! -s "$dir/ports" ]; then
        echo "the HTTP stand-in did not start (see $dir/standin.log)" >&2
        return 1
    fi
    STANDIN_PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$dir/ports")
    STANDIN_TLS_PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("https", ""))' "$dir/ports")
}
