#!/bin/sh
# Kill a run with kill -9 in the middle of its slow step, look at what the
# store kept, resume it, and check that the items that had completed were not
# run again. Runs by itself in a temporary store:
#
#   sh examples/durable/try.sh            (FLOW=path/to/flow to choose the binary)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
FLOW=${FLOW:-$here/../../build/flow}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export FLOW_STORE="sqlite:$dir/flow.db"   # instead of ./.flow/flow.db

echo "== flow run, killed with kill -9 after about 2.5 s"
"$FLOW" run "$here/batch.yaml" --id demo 2> "$dir/run.err" &
pid=$!
sleep 2.5
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
cat "$dir/run.err"

echo "== flow status demo (running, but no process runs it: it stopped without ending)"
"$FLOW" status demo

echo "== flow resume demo"
"$FLOW" resume demo 2> "$dir/resume.err"
cat "$dir/resume.err"

# 5 items: those completed before the kill are not started again.
before=$(grep -c 'completed square\[' "$dir/run.err" || true)
again=$(grep -c 'started   square\[' "$dir/resume.err" || true)
echo "== $before item(s) had completed before the kill; the resume started $again of 5"
