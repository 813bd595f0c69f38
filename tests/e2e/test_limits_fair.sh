#!/bin/bash
# A concurrency key shared by two `flow run` processes on one sqlite store
# (docs/internals/limits.md, "Fairness"): each run is a foreach of 8
# elements under `concurrency: {limit: 1, key: k}`. A process passes a
# freed slot on to its own next element, but not for ever: once another
# process has waited for the key, it gives the slot back. So the two runs
# take turns -- the second starts before the first has done all its work --
# and never run two elements at once.
set -u
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
export FLOW_STORE="sqlite:$T/flow.db"

cat >fair.yaml <<EOF
name: fair
tasks:
  work:
    foreach: "{{ inputs.items }}"
    concurrency: {limit: 1, key: k}
    shell: 'echo "\$FLOW_RUN_ID start \$(date +%s.%N)" >> $T/spans; sleep 0.3; echo "\$FLOW_RUN_ID end \$(date +%s.%N)" >> $T/spans'
EOF

# The store made first: two processes making one sqlite file at once can
# find it locked while the other sets WAL mode.
"$FLOW" run fair.yaml --id zero --input 'items:=[]' --quiet >out 2>err
check "the store is made" test "$?" = 0

items='items:=[1,2,3,4,5,6,7,8]'
"$FLOW" run fair.yaml --id one --input "$items" --quiet >one.out 2>one.err &
one=$!
"$FLOW" run fair.yaml --id two --input "$items" --quiet >two.out 2>two.err &
two=$!
wait "$one"
rc_one=$?
wait "$two"
rc_two=$?
rc="$rc_one/$rc_two"
cat one.err two.err >err 2>/dev/null
check "both runs complete" test "$rc" = 0/0

check "each ran its 8 elements, one at a time, and they took turns" python3 - "$T/spans" <<'PY'
import sys
events = []
for line in open(sys.argv[1]):
    run, kind, at = line.split()
    events.append((float(at), 0 if kind == "end" else 1, run, kind))
events.sort()  # at a tie, an end before a start
starts = {}
ends = {}
running = most = 0
for at, _, run, kind in events:
    if kind == "start":
        starts.setdefault(run, []).append(at)
        running += 1
        most = max(most, running)
    else:
        ends.setdefault(run, []).append(at)
        running -= 1
ok = True
if sorted(starts) != ["one", "two"] or any(len(starts[r]) != 8 or len(ends[r]) != 8 for r in starts):
    print("  elements: starts %s ends %s" % ({r: len(v) for r, v in starts.items()},
                                            {r: len(v) for r, v in ends.items()}))
    ok = False
if most != 1:
    print("  %d elements at once (limit 1)" % most)
    ok = False
if ok:
    first, second = sorted(starts, key=lambda r: starts[r][0])
    if not starts[second][0] < ends[first][-1]:
        print("  run '%s' started only at %.2fs, after run '%s' ended its last element at %.2fs"
              % (second, starts[second][0] - starts[first][0], first,
                 ends[first][-1] - starts[first][0]))
        ok = False
    t0 = starts[first][0]
    print("  " + " ".join("%s@%.1f" % (r[0], at - t0) for at, _, r, k in events if k == "start"))
sys.exit(0 if ok else 1)
PY

finish
