#!/bin/bash
# Crash torture (issue #4): a durable flow of a few hundred activations (C
# tasks and commands, fan-outs, a loop, state writes; tests/helpers/torture.c)
# is killed with SIGKILL at random instants, at least 30 times per store (10
# under a sanitizer, TORTURE_KILLS), and
# resumed each time (sqlite, disk, and redis on a redis-server of its own). The final result and state must equal an uninterrupted
# run's, and the side-effect log must show that no activation whose
# completion the store held at a kill ran again afterwards.
set -u
. "$(dirname "$0")/lib.sh"
TORTURE=${FLOW_TORTURE:-$FLOW_BUILD_DIR/tests/torture}
KILLS=${TORTURE_KILLS:-30}
# A round ends after this many kills at most: its last resume runs to the
# end. (A slow machine, or a sanitizer build, can take longer than the kill
# window to resume and make progress, and would never finish a round.)
ROUND_KILLS=10
[ -x "$TORTURE" ] || { fail "no torture program at $TORTURE"; finish; exit; }

# The completed activations of RUN in STORE, one id a line.
completed() {
    local json
    json=$("$FLOW" status "$2" --json --store "$1" 2>/dev/null) || return 0 # not made yet
    printf '%s' "$json" |
        python3 -c 'import json,sys
for t in json.load(sys.stdin)["tasks"]:
    if t["status"] == "completed": print(t["activation"])'
}

# Wait until no command task of the killed runner is left (they die with it).
no_orphans() {
    local i
    for i in $(seq 1 200); do
        pgrep -f torture-marker >/dev/null || return 0
        sleep 0.01
    done
    return 1
}

torture_store() { # torture_store KIND URL
    local kind=$1 url=$2 kills=0 round=0 problems=0 in_round
    TORTURE_LOG="$T/$kind.ref.log" "$TORTURE" run "$url" reference >"$T/$kind.ref.json" 2>"$T/$kind.ref.err" ||
        { fail "$kind: the uninterrupted run failed: $(cat "$T/$kind.ref.err")"; return; }
    local want
    want=$(cat "$T/$kind.ref.json")
    while [ "$kills" -lt "$KILLS" ]; do
        round=$((round + 1))
        local id="victim$round" mode=run log="$T/$kind.$round.log" checks="$T/$kind.$round.checks"
        : >"$log"
        : >"$checks"
        in_round=0
        while :; do
            TORTURE_LOG="$log" "$TORTURE" "$mode" "$url" "$id" >"$T/out.json" 2>"$T/err.txt" &
            local pid=$!
            sleep "0.$(printf '%03d' $((RANDOM % 250 + 20)))"
            if [ "$in_round" -lt "$ROUND_KILLS" ] && kill -KILL "$pid" 2>/dev/null; then
                wait "$pid" 2>/dev/null
                kills=$((kills + 1))
                in_round=$((in_round + 1))
                no_orphans || { fail "$kind: command tasks outlived the killed runner"; problems=1; }
                # What the store says completed, and where the log stood.
                echo "$(wc -l <"$log") $(completed "$url" "$id" | tr '\n' ' ')" >>"$checks"
                # Killed before it made its run (a slow start): run it again.
                "$FLOW" status "$id" --store "$url" >/dev/null 2>&1 && mode=resume
                continue
            fi
            wait "$pid"
            local rc=$?
            [ "$rc" = 0 ] || { fail "$kind: round $round ended with $rc: $(cat "$T/err.txt")"; problems=1; break; }
            break
        done
        expect_json "$(cat "$T/out.json")" "$want" "$kind round $round ($(wc -l <"$checks") kills): result and state equal the uninterrupted run's"
        # No completed activation ran again: lines after each kill's offset
        # must not name an activation the store held as completed then.
        if python3 - "$log" "$checks" <<'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
bad = []
for check in open(sys.argv[2]):
    parts = check.split()
    if not parts:
        continue
    offset, done = int(parts[0]), set(parts[1:])
    for line in lines[offset:]:
        f = line.split()
        if len(f) == 3 and f[1] in done:
            bad.append("%s#%s (attempt %s) after a kill that found it completed" % (f[0], f[1], f[2]))
if bad:
    print("\n".join(sorted(set(bad))[:10]))
    sys.exit(1)
PY
        then
            pass "$kind round $round: no completed activation ran again"
        else
            fail "$kind round $round: completed activations ran again"
        fi
        [ "$problems" = 0 ] || break
    done
    [ "$kills" -ge "$KILLS" ] && pass "$kind: $kills kills" || fail "$kind: only $kills kills"
}

torture_store sqlite "sqlite:$T/sqlite/flow.db"
torture_store disk "disk:$T/disk"
# Redis: the runner is killed, never the server (appendfsync everysec: what a
# reply acknowledged is in the server's append-only file).
if redis_start "$T/redis"; then
    torture_store redis "$REDIS_URL?prefix=torture"
    redis_stop
else
    fail "redis: no redis-server to torture the store on"
fi
finish
