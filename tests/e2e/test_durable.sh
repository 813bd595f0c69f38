#!/bin/bash
# Durable runs through the CLI (issue #4): kill -9 and resume, pause and
# cancel from another process, SIGINT, a second runner refused, checkpoints
# and time travel, logs, status, gc, a changed workflow file; and the ways a
# store fails: not a store, a newer format, read-only, locked, full (a file
# size limit) -- each a clear error that loses nothing already committed --
# also at the very end of a run (never exit 0 for an end the store does not
# hold); corrupt record times read as unknown, never undefined behaviour.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
unset FLOW_STORE # the default store: .flow/flow.db here
export FLOW_BIN=$FLOW

status_of() { "$FLOW" status "$1" --json ${2:+--store "$2"} | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }

write_slow # its tasks append their names to ./marks: the side effects

# --- kill -9, resume ---------------------------------------------------------
: >marks
start_slow k1
kill -KILL "$pid"
wait "$pid" 2>/dev/null
rm -f two.started
check "after kill -9 the run reads stopped in --json" test "$(status_of k1)" = stopped
"$FLOW" status k1 --json >out
check "... with no runner, and the task it was running stopped too" python3 -c '
import json,sys; r = json.load(open("out"))
sys.exit(not (r["runner"] is None and [t["status"] for t in r["tasks"]] == ["completed", "stopped"]))'
"$FLOW" status k1 >out
check "... stopped in the detail" grep -q "^run k1: stopped (flow slow)" out
check "... with no runner, and how to go on" grep -q "^runner: none -- it stopped without ending (a crash or a kill); 'flow resume k1' continues it" out
"$FLOW" status >out
check "the list shows it as stopped" grep -Eq "^k1 +slow +stopped " out
"$FLOW" resume k1 >out 2>err
rc=$?
check "resume after kill -9 completes (exit 0)" test "$rc" = 0
check "resume prints the result" grep -q '"three"' out
check "the completed task did not run again" test "$(runs_of one)" = 1
check "the interrupted task ran again" test "$(runs_of two)" = 2
"$FLOW" resume k1 >out 2>err
rc=$?
check "resuming an ended run changes nothing and exits with its status" test "$rc" = 0
check "... and says it had ended" grep -q "run k1 had already ended (completed); nothing was run" err
check "... nothing ran" test "$(runs_of three)" = 1
mv slow.yaml slow.yaml.away
"$FLOW" resume k1 >out 2>err
rc=$?
mv slow.yaml.away slow.yaml
check "an ended run needs no workflow file to say how it ended" test "$rc" = 0
check "... and prints its result" grep -q '"three"' out

# --- a command's own children die with a killed runner too -----------------
cat >grand.yaml <<'EOF'
name: grand
tasks:
  a:
    shell: touch grand.started; sleep 31.4159; echo done
EOF
rm -f grand.started
"$FLOW" run grand.yaml --id gr1 --quiet >/dev/null 2>&1 &
pid=$!
wait_for grand.started
sleep 0.1
grandchild_alive() { pgrep -f 'sleep 31[.]4159' >/dev/null; }
no_grandchild() { ! grandchild_alive; }
# gone, or a zombie waiting for an init that may never reap it
reaper_gone() { local st; st=$(awk '{print $3}' "/proc/$reaper/stat" 2>/dev/null); [ -z "$st" ] || [ "$st" = Z ]; }
no_reaper() { for i in $(seq 1 50); do reaper_gone && return 0; sleep 0.02; done; return 1; }
check "the command's child runs" grandchild_alive
reaper=$(pgrep -P "$pid" -x flow-reaper)
check "the runner has a reaper process" test -n "$reaper"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
for i in $(seq 1 50); do grandchild_alive || break; sleep 0.05; done
check "kill -9 of the runner kills the command's children as well" no_grandchild
check "... and the reaper is gone" no_reaper

# --- pause from another process ----------------------------------------------
: >marks
hold_two
start_slow p1
"$FLOW" pause p1 --reason lunch 2>perr
request_taken p1 # then two ends: the run pauses after it
release_two
check "flow pause says it asked" grep -q "pause requested for run p1" perr
wait "$pid"
rc=$?
rm -f two.started
check "the paused runner exits 3" test "$rc" = 3
check "the paused runner says why and how to go on" grep -q "paused after .*: lunch" err
check "the running task finished before the pause" test "$(runs_of two)" = 1
check "nothing new started" test "$(runs_of three)" = 0
"$FLOW" status p1 >out
check "status shows paused and the reason" grep -q "^paused: lunch" out
"$FLOW" pause p1 2>err
rc=$?
check "pausing a paused run is refused" test "$rc" = 1
"$FLOW" resume p1 --quiet >out 2>err
rc=$?
check "a paused run resumes to completion" test "$rc" = 0
check "resumed: only what was left ran" test "$(runs_of one)$(runs_of two)$(runs_of three)" = 111

# --- cancel from another process --------------------------------------------
hold_two
start_slow c1
"$FLOW" cancel c1 --reason "not needed" 2>/dev/null
wait "$pid" # a cancel interrupts two
rc=$?
rm -f two.started
check "the cancelled runner exits 4" test "$rc" = 4
check "... with the reason" grep -q "cancelled: not needed" err
no_command_left() { ! pgrep -f 'echo tw[o] >> marks' >/dev/null; }
check "no command is left running" no_command_left
release_two
"$FLOW" cancel c1 2>err
rc=$?
check "cancelling an ended run is refused" test "$rc" = 1
check "... saying it ended" grep -q "run 'c1' has already ended (cancelled)" err

# --- SIGINT leaves a resumable run ------------------------------------------
: >marks
start_slow i1
kill -INT "$pid"
wait "$pid"
rc=$?
rm -f two.started
check "SIGINT exits 130" test "$rc" = 130
check "... saying how to resume" grep -q "resume it with: flow resume i1" err
check "the interrupted run is paused" test "$(status_of i1)" = paused
"$FLOW" resume i1 --quiet >out 2>err
rc=$?
check "the interrupted run resumes to completion" test "$rc" = 0
check "the interrupted task ran again, the others once" test "$(runs_of one)$(runs_of two)$(runs_of three)" = 121

# --- one runner per run -------------------------------------------------------
# A task that waits for us (not a second, which two flow starts on a slow
# machine can outlast): the runner is surely live while we ask.
cat >held.yaml <<'EOF'
name: held
tasks:
  two:
    shell: 'touch two.started; i=0; while [ ! -e l1.release ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done; echo 2'
EOF
rm -f two.started l1.release
"$FLOW" run held.yaml --id l1 >out 2>err &
pid=$!
wait_for two.started
"$FLOW" status l1 >out2
check "status names the live runner" grep -q "^runner: pid $pid on host $(hostname)" out2
"$FLOW" resume l1 >out2 2>err2
rc=$?
check "a second runner is refused (exit 1)" test "$rc" = 1
check "... naming the holder's pid and host" grep -q "run 'l1' is being executed by pid $pid on host $(hostname)" err2
touch l1.release
wait "$pid"
rm -f two.started

# --- logs, checkpoints, time travel -----------------------------------------
cat >cp.yaml <<'EOF'
name: cp
checkpoint_every: 100ms
tasks:
  first:
    shell: echo first >> marks; echo oops >&2; "$FLOW_BIN" ctl checkpoint; echo 10
  second:
    after: first
    shell: echo second >> marks; sleep 0.5; echo $(( {{ tasks.first.output }} + 1 ))
EOF
: >marks
"$FLOW" run cp.yaml --id cp1 --quiet >out 2>err
rc=$?
check "a run with checkpoints completes" test "$rc" = 0
"$FLOW" checkpoints cp1 --json >cps
# The task's checkpoint: the first one, unless a slow runner (a sanitizer
# build) took over 100 ms to get there and a periodic one came first.
cp=$(python3 -c '
import json; c=json.load(open("cps")); print(next((x["id"] for x in c if x["reason"]=="task" and x["task"]=="first"), ""))')
check "the task's checkpoint is listed" test -n "$cp"
check "periodic checkpoints are listed" python3 -c '
import json,sys; c=json.load(open("cps")); sys.exit(not any(x["reason"]=="periodic" for x in c))'
"$FLOW" logs cp1 >logs
check "flow logs shows the journal" grep -q "act_completed first#1 (attempt 1) {\"output\":10,\"checkpoint\":true}" logs
"$FLOW" logs cp1 first >logs
check "flow logs RUN TASK shows the task's stderr" grep -q "| oops" logs
check "flow logs RUN TASK shows only that task" bash -c '! grep -q "second#" logs'
cat >lg.yaml <<'EOF2'
name: lg
tasks:
  a:
    shell: echo to-stdout; echo '"out"' > "$FLOW_OUTPUT"
  b:
    after: a
    shell: echo b-said; exit 3
EOF2
"$FLOW" run lg.yaml --id lg1 --quiet >/dev/null 2>&1
"$FLOW" logs lg1 a >logs
check "logs keep the stdout that \$FLOW_OUTPUT replaced" grep -q "| to-stdout" logs
"$FLOW" logs lg1 b >logs
check "logs keep a failed command's stdout" grep -q "| b-said" logs
check "... and its exit status" grep -q '"exit_status":3' logs
before=$("$FLOW" logs cp1 --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
"$FLOW" resume cp1 --from-checkpoint "$cp" --quiet >out 2>err
rc=$?
check "resume --from-checkpoint starts a new run that completes" test "$rc" = 0
check "... with the same result" grep -q '^11$' out
check "... without running what the checkpoint had completed" test "$(runs_of first)$(runs_of second)" = 12
check "... as run cp1.from-$cp" test "$(status_of "cp1.from-$cp")" = completed
after=$("$FLOW" logs cp1 --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
check "the original run is left as it was" test "$before" = "$after"
"$FLOW" resume cp1 --from-checkpoint 99 2>err
rc=$?
check "an unknown checkpoint is refused" grep -q "run 'cp1' has no checkpoint 99" err

# --- a changed workflow file --------------------------------------------------
hold_two
start_slow ch1
"$FLOW" pause ch1 2>/dev/null
request_taken ch1
release_two
wait "$pid"
rm -f two.started
cp slow.yaml slow.yaml.orig
sed -i 's/echo 2$/echo 22/' slow.yaml
"$FLOW" resume ch1 >out 2>err
rc=$?
check "resuming after the workflow changed is refused (exit 2)" test "$rc" = 2
check "... saying so and naming --force" grep -q "the flow of run 'ch1' changed since the run started ($T/slow.yaml); resume with --force" err
check "... and changing nothing" test "$(status_of ch1)" = paused
"$FLOW" resume ch1 --force --quiet >out 2>err
rc=$?
check "--force resumes with the new definition" test "$rc" = 0
cp slow.yaml.orig slow.yaml

# --- status and gc ------------------------------------------------------------
hold_two
start_slow g1
"$FLOW" pause g1 2>/dev/null
request_taken g1
release_two
wait "$pid"
rm -f two.started
"$FLOW" status --json >list
check "status lists every run" python3 -c '
import json,sys; ids={r["id"] for r in json.load(open("list"))}; sys.exit(not {"k1","p1","c1","i1","cp1","g1"} <= ids)'
"$FLOW" gc --older-than 0 2>err
check "gc deletes the ended runs" python3 -c '
import json,subprocess,sys
ids={r["id"] for r in json.loads(subprocess.check_output([sys.argv[1],"status","--json"]))}
sys.exit(not (ids == {"g1", "gr1"}))' "$FLOW"
check "gc says how many" grep -q "^deleted [0-9]* runs$" err
"$FLOW" status nosuch >out 2>err
rc=$?
check "an unknown run is a clear error" grep -q "flow: no run 'nosuch' in store '.flow/flow.db'" err
check "... exit 2, as for every command" test "$rc" = 2
"$FLOW" resume nosuch >out 2>err
rc=$?
check "resume of an unknown run exits 2 too" test "$rc" = 2
# Below the directory of .flow/, the same store (as git finds .git); where no
# directory up to the root has one, none (tests/e2e/test_discovery.sh has more).
mkdir -p empty && (cd empty && "$FLOW" status >../out 2>../err)
check "status in a subdirectory lists the runs of the .flow above" grep -q "^g1 " out
nothing=$(mktemp -d)
(cd "$nothing" && "$FLOW" status >"$T/out" 2>"$T/err")
rc=$?
if ( cd "$nothing" && until [ "$PWD" = / ]; do cd ..; [ -e .flow ] && exit 1; done; exit 0 ); then
    check "status where nothing ran lists no runs" grep -q "^no runs (there is no store at sqlite:.flow/flow.db yet)" out
    check "... and creates no store" test ! -e "$nothing/.flow"
else
    echo "skip: a directory above $nothing has a .flow"
fi
rm -rf "$nothing"
"$FLOW" resume k1 --store memory: >out 2>err
rc=$?
check "memory: cannot resume (exit 2)" test "$rc" = 2
check "... saying why" grep -q "no store 'memory:' (a memory store exists only in the process that made it)" err

# --- a store that is not one, or newer --------------------------------------
echo "not a database, just text" >notastore.db
cp notastore.db notastore.copy
"$FLOW" run slow.yaml --store sqlite:notastore.db >out 2>err
rc=$?
check "a file that is not a store is refused (exit 1)" test "$rc" = 1
check "... clearly" grep -q "store 'notastore.db' is not a libflow store" err
check "... and left untouched" cmp -s notastore.db notastore.copy
python3 -c 'import sqlite3; c=sqlite3.connect("newer.db"); c.execute("PRAGMA user_version=99"); c.commit()'
"$FLOW" status --store sqlite:newer.db >out 2>err
check "a store of a newer format is refused" grep -q "store 'newer.db' has format 99; this libflow understands up to 1: upgrade libflow" err

# --- read-only directory -------------------------------------------------------
mkdir -p ro
"$FLOW" run slow.yaml --store "sqlite:$T/ro/flow.db" --quiet >/dev/null 2>&1 # a store with a run
chmod 555 ro
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    # root writes anyway: run as nobody, who cannot write here
    chmod 755 "$T"
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
else
    as_user=()
fi
"${as_user[@]}" "$FLOW" run slow.yaml --store "sqlite:$T/ro/new/flow.db" >out 2>err
rc=$?
check "a store in a read-only directory is refused (exit 1)" test "$rc" = 1
check "... clearly" grep -q "cannot create directory '$T/ro/new' for store '$T/ro/new/flow.db': Permission denied" err
chmod 755 ro
check "... and the store beside it keeps its run" bash -c "'$FLOW' status --json --store 'sqlite:$T/ro/flow.db' | grep -q completed"

# --- locked by another process ---------------------------------------------------
python3 -c '
import sqlite3,time
c=sqlite3.connect(".flow/flow.db", isolation_level=None); c.execute("BEGIN EXCLUSIVE")
open("locked","w").close()
for _ in range(600):
    time.sleep(0.05)
    try: open("unlock"); break
    except OSError: pass' &
locker=$!
wait_for locked
"$FLOW" run slow.yaml --quiet >out 2>err
rc=$?
check "a store locked by another process is a clear error (exit 1)" test "$rc" = 1
check "... saying so" grep -q "database is locked (another process holds it; waited 5s)" err
touch unlock
wait "$locker"
check "... and loses nothing" test "$(status_of g1)" = paused

# --- full: a file size limit -----------------------------------------------------
cat >fill.yaml <<'EOF'
name: fill
tasks:
  each:
    foreach: "{{ inputs.items }}"
    concurrency: 2
    shell: echo "each {{ item }}" >> marks; printf '"%0800d"' {{ item }}
  done:
    after: each
    shell: echo '"done"'
EOF
items=$(python3 -c 'print(list(range(300)))')
: >marks
(ulimit -f 200; trap '' XFSZ; "$FLOW" run fill.yaml --store sqlite:full/flow.db --id f1 --input "items:=$items" --quiet >out 2>err)
rc=$?
check "a full store stops the run (exit 1)" test "$rc" = 1
check "... with a clear message" grep -q "cannot write the journal: cannot append to run 'f1' in store 'full/flow.db': disk I/O error (is the disk full, or the file at its size limit?)" err
done_before=$("$FLOW" status f1 --json --store sqlite:full/flow.db | python3 -c '
import json,sys; print(" ".join(str(t["activation"]) for t in json.load(sys.stdin)["tasks"] if t["status"]=="completed"))')
check "... keeping what was committed" test -n "$done_before"
"$FLOW" resume f1 --store sqlite:full/flow.db --quiet >out 2>err
rc=$?
check "once there is room, the run resumes to completion" test "$rc" = 0
check "... and every item ran at least once" test "$(sort -u marks | wc -l)" = 300
# --- the end of a run that cannot be recorded ------------------------------------
# The run's own task takes the store away just before the end: its directory made
# read-only (as an unprivileged user: root writes anyway), or the runner's file size
# limit lowered to the journal's size. `flow run` must not report a success the
# store does not hold.
mkdir -p rostore
cat >endro.yaml <<'EOF'
name: endro
tasks:
  work:
    shell: chmod 500 "$STORE_DIR/runs/ro1"; echo '"done"'
EOF
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    chmod 755 "$T"
    chmod 777 rostore
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
else
    as_user=()
fi
STORE_DIR=$T/rostore/d "${as_user[@]}" "$FLOW" run endro.yaml --id ro1 --store "disk:$T/rostore/d" >out 2>err
rc=$?
check "a status write that fails at the end: exit 1, not 0" test "$rc" = 1
check "... with the store's message" grep -q "failed: cannot record the end of run 'ro1': cannot set the status of run 'ro1' in store '$T/rostore/d': Permission denied" err
check "... and no result on stdout" test ! -s out
chmod 700 "$T/rostore/d/runs/ro1"
"${as_user[@]}" "$FLOW" resume ro1 --store "disk:$T/rostore/d" --quiet >out 2>err
rc=$?
check "... once writable, a resume records the end it had reached" test "$rc" = 0
check "... printing its result" grep -q '"done"' out
if command -v prlimit >/dev/null; then
    cat >endfull.yaml <<'EOF'
name: endfull
tasks:
  first:
    shell: echo '"one"'
  last:
    after: first
    shell: prlimit --pid $PPID --fsize=$(stat -c %s "$STORE_DIR/runs/fs1/journal"); echo '"done"'
EOF
    # SIGXFSZ ignored, as a runner that outgrows its limit gets EFBIG; output through
    # other processes, which the limit does not bind
    (trap '' XFSZ; STORE_DIR=$T/fsstore exec "$FLOW" run endfull.yaml --id fs1 --store "disk:$T/fsstore" > >(cat >out) 2> >(cat >err))
    rc=$?
    check "a journal write that fails at the end: exit 1, not 0" test "$rc" = 1
    # the cat that writes ./err may still be at it: nobody waits for it
    check "... with the store's message" \
        wait_until 10 grep -q "cannot append to run 'fs1' in store '$T/fsstore': File too large" err
fi

# --- corrupt record times ---------------------------------------------------------
# NaN, infinities, huge and negative times in a disk journal and in sqlite rows: status,
# logs, feedback, checkpoints and resume show them as unknown (null), never undefined
# behaviour (the ASan+UBSan build runs this too).
cat >times.yaml <<'EOF'
name: times
tasks:
  first:
    shell: echo '"one"'
  ask:
    after: first
    feedback: {type: approval, request: ok, message: "Go?", timeout: 1h, default: true}
  last:
    after: ask
    shell: echo '"two"'
EOF
"$FLOW" run times.yaml --id ct1 --store "disk:$T/times.d" --quiet >/dev/null 2>&1
"$FLOW" run times.yaml --id ct2 --store "sqlite:$T/times.db" --quiet >/dev/null 2>&1
python3 - "$T/times.d/runs/ct1/journal" "$T/times.db" <<'EOF'
import sqlite3, struct, sys, zlib
bad = [float('nan'), float('inf'), -float('inf'), 1e300, -1e300, -5.0, 9.3e18, 1.8e19]
path = sys.argv[1]
data = open(path, 'rb').read()
out = bytearray()
pos = i = 0
while pos + 8 <= len(data):  # u32 length, u32 crc32, then 24 bytes of fields (time at 16)
    n, _ = struct.unpack_from('<II', data, pos)
    body = bytearray(data[pos + 8:pos + 8 + n])
    struct.pack_into('<d', body, 16, bad[i % len(bad)])
    out += struct.pack('<II', n, zlib.crc32(bytes(body)) & 0xffffffff) + body
    pos += 8 + n
    i += 1
open(path, 'wb').write(out)
c = sqlite3.connect(sys.argv[2])
vals = ["'abc'", "1e308", "-1e308", "-5", "9e18", "'1e999'", "x'00ff'"]
for i, (seq,) in enumerate(c.execute("select seq from records where run='ct2'").fetchall()):
    c.execute("update records set time=%s where run='ct2' and seq=%d" % (vals[i % len(vals)], seq))
c.execute("update runs set created_at=1e308, ended_at='zz' where id='ct2'")
c.execute("update records set payload=json_set(payload, '$.deadline', 1e308) where run='ct2' and payload like '%deadline%'")
c.commit()
EOF
bad=""
for store in "disk:$T/times.d ct1" "sqlite:$T/times.db ct2"; do
    set -- $store
    for cmd in "status $2" "status $2 --json" "status" "status --json" "logs $2" "logs $2 --json" \
        "feedback" "feedback --json" "checkpoints $2" "checkpoints $2 --json"; do
        # shellcheck disable=SC2086
        "$FLOW" $cmd --store "$1" >out 2>err || bad="$bad [$cmd on ${1%%:*}: exit $?: $(head -c 200 err)]"
    done
    "$FLOW" resume "$2" --store "$1" --quiet >out 2>err
    rc=$?
    [ "$rc" = 3 ] || bad="$bad [resume on ${1%%:*}: exit $rc: $(head -c 200 err)]"
done
check "corrupt record times: status, logs, feedback, checkpoints and resume all work" test -z "$bad"
[ -n "$bad" ] && echo "  $bad"
check "... showing a time no calendar has as null" python3 -c '
import json,subprocess,sys
d = json.loads(subprocess.run([sys.argv[1], "status", "ct1", "--json", "--store", sys.argv[2]], capture_output=True).stdout)
sys.exit(not (d["tasks"][0]["started_at"] is None))' "$FLOW" "disk:$T/times.d"

finish
