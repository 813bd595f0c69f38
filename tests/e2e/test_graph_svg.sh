#!/bin/bash
# flow graph --format svg: every workflow file of examples/ draws, top to bottom
# and left to right, as XML that python's parser reads, with each task once and
# the geometry the layout promises (boxes apart, every edge from its node to its
# node, inside the view box); names with markup characters come back as they
# were written; the same file gives the same bytes; usage errors; --direction
# for mermaid and dot too.
set -u
. "$(dirname "$0")/lib.sh"

# check_svg SVG JSON: the drawing against the flow's description (flow graph -f json).
cat > "$T/check.py" <<'EOF'
import json, re, sys
import xml.etree.ElementTree as ET

NS = '{http://www.w3.org/2000/svg}'
svg_path, json_path = sys.argv[1], sys.argv[2]
root = ET.parse(svg_path).getroot()
desc = json.load(open(json_path))
problems = []
if root.tag != NS + 'svg':
    problems.append('the root is ' + root.tag)
W, H = int(root.get('width')), int(root.get('height'))
if root.get('viewBox') != '0 0 %d %d' % (W, H):
    problems.append('viewBox %s for %dx%d' % (root.get('viewBox'), W, H))
if root.get('data-flow') != desc['name']:
    problems.append('data-flow %r, not %r' % (root.get('data-flow'), desc['name']))
boxes = {}
for g in root.find(NS + 'g[@class="nodes"]'):
    r = g.find(NS + 'rect')
    box = tuple(int(r.get(k)) for k in ('x', 'y', 'width', 'height'))
    if 'task' in g.get('class').split():
        key = ('task', g.get('data-task'))
        if g.get('id') != 't-' + re.sub(r'[^A-Za-z0-9_-]', lambda m: '.%02X' % ord(m.group()), key[1]):
            problems.append('id %s for task %s' % (g.get('id'), key[1]))
        if g.find(NS + 'title').text != key[1]:
            problems.append('title of %s' % key[1])
    else:
        key = ('label', g.get('data-label'))
    if key in boxes:
        problems.append('%s %s drawn twice' % key)
    boxes[key] = box
tasks = sorted(k[1] for k in boxes if k[0] == 'task')
if tasks != sorted(t['name'] for t in desc['tasks']):
    problems.append('tasks drawn %s, described %s' % (tasks, sorted(t['name'] for t in desc['tasks'])))
texts = [tuple(int(r.get(k)) for k in ('x', 'y', 'width', 'height'))
         for r in root.iter(NS + 'rect') if r.get('rx') == '3']
every = list(boxes.values()) + texts
for i, (x, y, w, h) in enumerate(every):
    if x < 0 or y < 0 or x + w > W or y + h > H:
        problems.append('box %s outside %dx%d' % ((x, y, w, h), W, H))
    for (x2, y2, w2, h2) in every[i + 1:]:
        if x < x2 + w2 and x2 < x + w and y < y2 + h2 and y2 < y + h:
            problems.append('boxes %s and %s overlap' % ((x, y, w, h), (x2, y2, w2, h2)))

def on_border(box, x, y):
    bx, by, w, h = box
    return bx <= x <= bx + w and by <= y <= by + h and (x in (bx, bx + w) or y in (by, by + h))

for p in root.find(NS + 'g[@class="edges"]'):
    nums = [int(v) for v in re.findall(r'-?\d+', p.get('d'))]
    src = ('task', p.get('data-from')) if p.get('data-from') is not None else ('label', p.get('data-label'))
    dst = ('task', p.get('data-to')) if p.get('data-to') is not None else ('label', p.get('data-label'))
    if src not in boxes or dst not in boxes:
        problems.append('edge %s -> %s: no such node' % (src, dst))
    elif not on_border(boxes[src], nums[0], nums[1]) or not on_border(boxes[dst], nums[-2], nums[-1]):
        problems.append('edge %s -> %s: %s' % (src, dst, p.get('d')))
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
check_svg() {
    python3 "$T/check.py" "$1" "$2" > "$T/problems" 2>&1
}

# Every workflow file of examples/ (a JSON file there may be data, not a flow; a prompts/
# directory holds prompt files).
count=0
for f in $(cd "$FLOW_SOURCE_DIR" && find examples -name '*.yaml' -o -name '*.yml' -o -name '*.json' | sort); do
    src="$FLOW_SOURCE_DIR/$f"
    case $f in
    */prompts/*) continue ;;
    *.json) "$FLOW" validate "$src" > /dev/null 2>&1 || continue ;;
    esac
    count=$((count + 1))
    if ! "$FLOW" graph "$src" --format json > "$T/d.json" 2> "$T/err"; then
        fail "$f: flow graph --format json: $(head -3 "$T/err")"
        continue
    fi
    for dir in TB LR; do
        if ! "$FLOW" graph "$src" --format svg --direction $dir > "$T/g.svg" 2> "$T/err"; then
            fail "$f ($dir): flow graph --format svg exited non-zero: $(head -3 "$T/err")"
        elif [ -s "$T/err" ]; then
            fail "$f ($dir): stderr: $(head -3 "$T/err")"
        elif check_svg "$T/g.svg" "$T/d.json"; then
            pass "$f ($dir) draws"
        else
            fail "$f ($dir): $(head -5 "$T/problems")"
        fi
    done
done
[ "$count" -ge 20 ] && pass "$count example workflows drawn" || fail "only $count example workflows found"

# Markup characters in names, events, maps and labels: escaped, and read back
# by the parser as written.
cat > "$T/names.yaml" <<'EOF'
name: "a <flow> & \"its\" 'names'"
connect:
  - from: "emitter.<ev&nt>"
    to: sink
    map: {"<k>": "v&w"}
tasks:
  emitter:
    router: true
    shell: echo '<go>'
  sink:
    shell: cat
  listener:
    on: "<go>"
    shell: echo
EOF
"$FLOW" graph "$T/names.yaml" -f json > "$T/names.json" &&
    "$FLOW" graph "$T/names.yaml" -f svg > "$T/names.svg" && check_svg "$T/names.svg" "$T/names.json" &&
    pass "names with markup characters draw" || fail "names: $(head -5 "$T/problems" 2>/dev/null)"
python3 - "$T/names.svg" <<'EOF' && pass "escaped texts read back as written" || fail "escaped texts"
import sys, xml.etree.ElementTree as ET
NS = '{http://www.w3.org/2000/svg}'
root = ET.parse(sys.argv[1]).getroot()
texts = [t.text for t in root.iter(NS + 'text')]
labels = [g.get('data-label') for g in root.iter(NS + 'g') if g.get('class') == 'label']
assert root.get('data-flow') == 'a <flow> & "its" \'names\'', root.get('data-flow')
assert '<ev&nt> (<k>\u2192v&w)' in texts, texts
assert labels == ['<go>'], labels
EOF

# The same file, the same bytes.
"$FLOW" graph "$FLOW_SOURCE_DIR/examples/pipeline/pipeline.yaml" -f svg > "$T/a.svg"
"$FLOW" graph "$FLOW_SOURCE_DIR/examples/pipeline/pipeline.yaml" -f svg > "$T/b.svg"
cmp -s "$T/a.svg" "$T/b.svg" && pass "the drawing is deterministic" || fail "two drawings differ"

# Options.
"$FLOW" graph "$FLOW_SOURCE_DIR/examples/pipeline/pipeline.yaml" -f svg --no-style --max-label 4 \
    > "$T/c.svg" 2> "$T/err"
! grep -q '<style>' "$T/c.svg" && grep -q '>ext…</text>' "$T/c.svg" && grep -q '<title>extract</title>' "$T/c.svg" &&
    pass "--no-style and --max-label" || fail "--no-style/--max-label: $(head -c 300 "$T/c.svg")"
grep -q 'class="flow-graph tb"' "$T/a.svg" && grep -q '\.flow-graph \.st-completed>rect{' "$T/a.svg" &&
    pass "the default style colours the state classes" || fail "no state classes in the style"
"$FLOW" graph "$FLOW_SOURCE_DIR/examples/pipeline/pipeline.yaml" -d lr | head -1 | grep -qx 'flowchart LR' &&
    "$FLOW" graph "$FLOW_SOURCE_DIR/examples/pipeline/pipeline.yaml" -f dot -d LR | grep -q 'rankdir=LR;' &&
    "$FLOW" graph "$FLOW_SOURCE_DIR/examples/pipeline/pipeline.yaml" | head -1 | grep -qx 'flowchart TD' &&
    pass "--direction for mermaid and dot" || fail "--direction for mermaid and dot"
"$FLOW" graph --help | grep -q 'svg' && "$FLOW" graph --help | grep -q 'st-running' &&
    pass "help names svg and the state classes" || fail "help lacks svg"

# Usage errors: one line, exit 2, nothing on stdout.
usage() {
    local what=$1 want=$2
    shift 2
    "$FLOW" graph "$@" > "$T/out" 2> "$T/err"
    rc=$?
    if [ $rc = 2 ] && [ ! -s "$T/out" ] && [ "$(wc -l < "$T/err")" = 1 ] && grep -q -- "$want" "$T/err"; then
        pass "$what"
    else
        fail "$what: rc=$rc stderr: $(cat "$T/err")"
    fi
}
P=$FLOW_SOURCE_DIR/examples/pipeline/pipeline.yaml
usage "unknown format" "unknown format 'png' (use mermaid, dot, json or svg)" "$P" -f png
usage "unknown direction" "unknown direction 'up' (use TB or LR)" "$P" -f svg -d up
usage "--max-label too small" "max-label must be at least 4, not 2" "$P" -f svg --max-label 2
usage "--max-label not a number" "needs a non-negative integer, got 'x'" "$P" -f svg --max-label x

finish
