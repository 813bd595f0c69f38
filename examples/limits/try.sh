#!/bin/sh
# Two processes, two tenants, one store: the partner API's limits hold across
# both. While they run, `flow status` shows the elements held back, and why.
# Runs by itself in a temporary store:
#
#   sh examples/limits/try.sh            (FLOW=path/to/flow to choose the binary)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
FLOW=${FLOW:-$here/../../build/flow}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export FLOW_STORE="sqlite:$dir/flow.db"   # instead of ./.flow/flow.db

echo "== two flow run processes, 6 calls each, sharing 2 connections and 5 calls/s"
"$FLOW" run "$here/partner_api.yaml" --id acme --input tenant=acme --input 'ids:=[1,2,3,4,5,6]' \
    --quiet > "$dir/acme.out" 2> "$dir/acme.err" &
a=$!
"$FLOW" run "$here/partner_api.yaml" --id zeta --input tenant=zeta --input 'ids:=[1,2,3,4,5,6]' \
    --quiet > "$dir/zeta.out" 2> "$dir/zeta.err" &
z=$!
sleep 1
echo "== flow status zeta, one second in"
"$FLOW" status zeta
wait "$a" "$z"
echo "== results"
cat "$dir/acme.out" "$dir/zeta.out"
echo "== the calls of both runs, by start time: never more than 2 at once"
"$FLOW" status acme --json > "$dir/acme.json"
"$FLOW" status zeta --json > "$dir/zeta.json"
python3 - "$dir/acme.json" "$dir/zeta.json" <<'PY'
import json, sys
from datetime import datetime
spans = []
for path in sys.argv[1:]:
    run = json.load(open(path))
    for t in run["tasks"]:
        if t["task"] == "call" and "index" in t:
            p = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
            spans.append((p(t["started_at"]), p(t["ended_at"]), run["id"], t["index"]))
spans.sort()
most = max(sum(1 for b in spans if b[0] <= a[0] < b[1]) for a in spans)
t0 = spans[0][0]
for s, e, run, i in spans:
    print("  %5.2fs - %5.2fs  %s call[%d]" % (s - t0, e - t0, run, i))
print("most calls at once: %d" % most)
PY
