#!/bin/sh
# Three runs of summaries.yaml on one store: the first summarizes every
# document, the second takes every summary from the cache, the third runs
# only the document that was revised. Runs by itself in a temporary store:
#
#   sh examples/cache/try.sh            (FLOW=path/to/flow to choose the binary)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
FLOW=${FLOW:-$here/../../build/flow}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export FLOW_STORE="sqlite:$dir/flow.db"   # instead of ./.flow/flow.db

docs='docs:=[{"name": "intro", "rev": 1}, {"name": "setup", "rev": 1}, {"name": "faq", "rev": 3}]'
revised='docs:=[{"name": "intro", "rev": 1}, {"name": "setup", "rev": 2}, {"name": "faq", "rev": 3}]'

# cached RUN: "N of M summaries from the cache"
cached() {
    "$FLOW" status "$1" --json | python3 -c '
import json, sys
t = [a for a in json.load(sys.stdin)["tasks"] if a["task"] == "summarize" and "index" in a]
n = sum(1 for a in t if (a.get("info") or {}).get("cached"))
print("%d of %d summaries from the cache" % (n, len(t)))'
}

for run in first second third; do
    case $run in
    first) echo "== first run: three documents, half a second each, two at once"; in=$docs ;;
    second) echo "== the same documents again"; in=$docs ;;
    third) echo "== 'setup' revised"; in=$revised ;;
    esac
    "$FLOW" run "$here/summaries.yaml" --id "$run" --input "$in" > "$dir/$run.out" 2> "$dir/$run.err"
    grep -E "summarize.*(cached|\(.*s\))|^completed" "$dir/$run.err" | sed 's/^[0-9:.]* */  /'
    echo "$run: $(cached "$run"), result $(tr -d ' \n' < "$dir/$run.out")"
done
echo "== flow status second: the NOTE column says where each output came from"
"$FLOW" status second 2>&1
echo "== flow gc: runs that ended a week ago, and cache entries past their ttl (none yet)"
"$FLOW" gc 2>&1
