#!/usr/bin/env bash
# test_secrets.sh -- a flow's `secrets:` (docs/internals/core.md, "Secrets"):
# command tasks that echo a secret to stdout and stderr, output it, fail with
# it in their message and set it in the state; then the value appears nowhere
# -- not in the sqlite file (nor its -wal), not in the disk store's files, not
# in what `flow run`, `flow logs`, `flow status` and `--json` print, not in
# Redis (its append-only file holds every write) -- and `***` does. An unset
# secret stops the run before anything is written (exit 2, naming it), and
# the tasks do get the real value.
set -u
source "$(dirname "$0")/lib.sh"
cd "$T"
SECRET='tok-3f9a"Zq\9x'
export SECRET_TOKEN=$SECRET
unset OTHER_SECRET

cat > leak.yaml <<'Y'
name: leak
secrets: [SECRET_TOKEN]
tasks:
  leak:
    shell: |
      echo "stdout $SECRET_TOKEN"
      echo "stderr $SECRET_TOKEN" >&2
      python3 -c 'import json, os; print(json.dumps({"set": {"token": os.environ["SECRET_TOKEN"]}}))' >> "$FLOW_CONTROL"
      python3 -c 'import json, os; print(json.dumps({"out": os.environ["SECRET_TOKEN"], "n": 1}))' > "$FLOW_OUTPUT"
  renamed:
    env: {COPY: "{{ secrets.SECRET_TOKEN }}"}
    run: [sh, -c, 'test "$COPY" = "$SECRET_TOKEN" && echo "copy $COPY"']
Y
cat > fail.yaml <<'Y'
name: fail
secrets: [SECRET_TOKEN]
tasks:
  fails:
    retries: 1
    backoff: {delay: 10ms}
    shell: 'echo "stdout $SECRET_TOKEN"; echo "failing with $SECRET_TOKEN" >&2; exit 3'
Y

# no_secret WHAT FILE...: the value is in none of the files (raw or as JSON writes it)
escaped=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1])[1:-1])' "$SECRET")
no_secret() {
    local what=$1
    shift
    if grep -rlaF -e "$SECRET" -e "$escaped" -e "tok-3f9a" "$@" >hits 2>/dev/null; then
        fail "$what: the secret is in $(tr '\n' ' ' <hits)"
    else
        pass "$what: no secret"
    fi
}
has_stars() { # WHAT FILE...
    local what=$1
    shift
    check "$what: '***' is there" grep -rqaF '***' "$@"
}

# ---- 1. an unset secret: exit 2, naming it, nothing written -----------------
sed 's/\[SECRET_TOKEN\]/[SECRET_TOKEN, OTHER_SECRET]/' leak.yaml > two.yaml
rc=0; "$FLOW" run two.yaml --store "sqlite:$T/unset.db" --id u1 >out 2>err || rc=$?
check "unset secret: exit 2 ($rc)" [ "$rc" = 2 ]
check "unset secret: the message names it" grep -q "secret 'OTHER_SECRET' is not set" err
check "unset secret: one line" [ "$(wc -l <err)" = 1 ]
rc=0; "$FLOW" status u1 --store "sqlite:$T/unset.db" >out 2>err || rc=$?
check "unset secret: no run was recorded" [ "$rc" != 0 ]

# ---- 2. sqlite: a run that completes, one that fails ----------------------------
DB="sqlite:$T/db/flow.db"
rc=0; "$FLOW" run leak.yaml --store "$DB" --id ok1 >run.out 2>run.err || rc=$?
check "leak.yaml completes ($rc; the tasks got the real value)" [ "$rc" = 0 ]
expect_json "$(cat run.out)" '{"leak": {"out": "***", "n": 1}, "renamed": "copy ***"}' \
    "the result printed on stdout is redacted"
rc=0; "$FLOW" run leak.yaml --store "$DB" --id ok2 --json >json.out 2>json.err || rc=$?
check "--json: the run completes ($rc)" [ "$rc" = 0 ]
rc=0; "$FLOW" run fail.yaml --store "$DB" --id bad1 >fail.out 2>fail.err || rc=$?
check "fail.yaml fails (exit 1: $rc)" [ "$rc" = 1 ]
has_stars "flow run's progress and error" fail.err
check "flow run's error says why, redacted" grep -qF 'failing with ***' fail.err
for cmd in "logs ok1" "logs ok1 leak" "logs ok1 renamed" "logs bad1" "logs bad1 fails" \
    "logs bad1 --json" "status" "status --json" "status ok1" "status ok1 --json" \
    "status bad1" "status bad1 --json" "checkpoints ok1" "resume ok1" "resume bad1"; do
    # shellcheck disable=SC2086
    "$FLOW" $cmd --store "$DB" >>cli.out 2>>cli.err
done
has_stars "flow logs" cli.out
check "flow logs shows the failure, redacted" grep -qF 'failing with ***' cli.out
check "the state write is journaled, redacted" grep -qF '"token":"***"' cli.out
no_secret "flow run (stdout, stderr, --json)" run.out run.err json.out json.err fail.out fail.err
no_secret "flow logs, status, checkpoints, resume" cli.out cli.err
no_secret "the sqlite store (db, wal)" "$T/db"
has_stars "the sqlite store" "$T/db"

# ---- 3. the disk store -----------------------------------------------------------
DISK="disk:$T/disk"
"$FLOW" run leak.yaml --store "$DISK" --id d1 >disk.out 2>disk.err
"$FLOW" run fail.yaml --store "$DISK" --id d2 >>disk.out 2>>disk.err
"$FLOW" logs d2 --store "$DISK" >>disk.out 2>>disk.err
no_secret "the disk store's files and output" "$T/disk" disk.out disk.err
has_stars "the disk store's files" "$T/disk"

# ---- 4. inputs and nested flows -------------------------------------------------
cat > child.yaml <<'Y'
name: child
secrets: [CHILD_SECRET]
tasks:
  c:
    shell: 'echo "child $CHILD_SECRET $SECRET_TOKEN"'
Y
cat > parent.yaml <<'Y'
name: parent
secrets: [SECRET_TOKEN]
tasks:
  p:
    flow: child.yaml
Y
rc=0; "$FLOW" run parent.yaml --store "$DB" >nest.out 2>nest.err || rc=$?
check "a nested flow's secret must be set too (exit 2: $rc)" [ "$rc" = 2 ]
check "... and the message names it" grep -q "CHILD_SECRET" nest.err
rc=0; CHILD_SECRET=child-secret-77 "$FLOW" run parent.yaml --store "$DB" --id n1 \
    --input "given=$SECRET" >nest.out 2>nest.err || rc=$?
check "the nested run completes ($rc)" [ "$rc" = 0 ]
check "the child's output is redacted with both secrets" grep -qF '"child *** ***"' nest.out
"$FLOW" logs n1 --store "$DB" >>nest.out 2>>nest.err
nowhere() { ! grep -rqaF "$@"; }
check "the child secret is nowhere" nowhere "child-secret-77" nest.out nest.err "$T/db"
no_secret "an input holding the secret" nest.out nest.err "$T/db"

# ---- 5. remote tasks: nothing in clear in Redis ------------------------------------
if command -v redis-server >/dev/null && redis_start "$T/redis"; then
    cat > remote.yaml <<'Y'
name: remote
secrets: [SECRET_TOKEN]
defaults:
  executor: remote
tasks:
  leak:
    shell: |
      echo "stderr $SECRET_TOKEN" >&2
      python3 -c 'import json, os; print(json.dumps({"set": {"token": os.environ["SECRET_TOKEN"]}}))' >> "$FLOW_CONTROL"
      python3 -c 'import json, os; print(json.dumps({"out": os.environ["SECRET_TOKEN"]}))'
  renamed:
    after: leak
    env: {COPY: "{{ secrets.SECRET_TOKEN }}"}
    run: [sh, -c, 'test "$COPY" = "$SECRET_TOKEN" && echo "copy $COPY {{ state.token }}"']
Y
    "$FLOW" worker --redis "$REDIS_URL" --name sw >worker.log 2>&1 &
    wpid=$!
    rc=0; "$FLOW" run remote.yaml --store "$DB" --redis "$REDIS_URL" --id r1 \
        >remote.out 2>remote.err || rc=$?
    check "the remote run completes ($rc: the worker filled the secret in)" [ "$rc" = 0 ]
    check "its result is redacted" grep -qF 'copy *** ***' remote.out
    kill -TERM $wpid; wait $wpid 2>/dev/null
    # A worker without the secret: the task that needs it fails, saying so.
    env -u SECRET_TOKEN "$FLOW" worker --redis "$REDIS_URL" --name bare >bare.log 2>&1 &
    wpid=$!
    cat > remote2.yaml <<'Y'
name: remote2
secrets: [SECRET_TOKEN]
tasks:
  renamed:
    executor: remote
    env: {COPY: "{{ secrets.SECRET_TOKEN }}"}
    run: [sh, -c, 'echo "copy $COPY"']
Y
    rc=0; "$FLOW" run remote2.yaml --store "$DB" --redis "$REDIS_URL" --id r2 \
        >remote2.out 2>remote2.err || rc=$?
    kill -TERM $wpid; wait $wpid 2>/dev/null
    cp remote2.err err
    check "a worker without the secret fails the task (exit 1: $rc)" [ "$rc" = 1 ]
    check "... saying which secret it lacks" \
        grep -q "secret 'SECRET_TOKEN' is not set in the worker's environment" remote2.err
    sleep 0.3 # the append-only file is written at the end of each event loop turn
    no_secret "Redis (its append-only files)" "$T/redis"
    no_secret "the remote runs' output" remote.out remote.err remote2.out remote2.err \
        worker.log bare.log
    redis_stop
else
    echo "skip: no redis-server (remote part)"
fi

finish
