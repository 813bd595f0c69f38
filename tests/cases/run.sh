#!/usr/bin/env bash
# run.sh -- workflow file cases. Each directory tests/cases/<name>/ holds:
#   flow.yaml or flow.json  the workflow file
#   exit                    the expected exit status (default 0)
#   cmd                     optional: the subcommand line instead of `validate` (e.g. `run`)
#   args                    optional: extra arguments after the file, one line (shell quoting)
#   error.txt               optional: lines that must each appear in stderr (grep -F)
#   expected.json           optional: stdout, compared as JSON
# The command runs inside the case's directory as `$FLOW <cmd> <file> <args>`.
# Usage: run.sh [SUBSTRING]   (only the cases whose name holds SUBSTRING)
set -u

here=$(cd "$(dirname "$0")" && pwd)
FLOW=${FLOW:-${FLOW_BUILD_DIR:-$here/../../build}/flow}
filter=${1:-}

if [ ! -x "$FLOW" ]; then
    echo "run.sh: no flow program at '$FLOW' (set FLOW)" >&2
    exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
for dir in "$here"/*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    if [ -n "$filter" ] && [[ "$name" != *"$filter"* ]]; then
        continue
    fi
    file=""
    for f in flow.yaml flow.yml flow.json; do
        if [ -f "$dir/$f" ]; then
            file=$f
            break
        fi
    done
    problems=()
    rm -f "$tmp"/*
    if [ -z "$file" ]; then
        problems+=("no flow.yaml or flow.json")
    else
        cmd=(validate)
        if [ -f "$dir/cmd" ]; then
            read -r -a cmd < "$dir/cmd"
        fi
        args=()
        if [ -f "$dir/args" ]; then
            eval "args=($(head -n 1 "$dir/args"))"
        fi
        want=0
        if [ -f "$dir/exit" ]; then
            want=$(tr -d ' \t\r\n' < "$dir/exit")
        fi
        (cd "$dir" && timeout 60 "$FLOW" "${cmd[@]}" "$file" "${args[@]}" \
            > "$tmp/stdout" 2> "$tmp/stderr" < /dev/null)
        status=$?
        if [ "$status" != "$want" ]; then
            problems+=("exit status $status, expected $want")
        fi
        if [ -f "$dir/error.txt" ]; then
            while IFS= read -r line || [ -n "$line" ]; do
                [ -z "$line" ] && continue
                if ! grep -qF -- "$line" "$tmp/stderr"; then
                    problems+=("stderr lacks: $line")
                fi
            done < "$dir/error.txt"
        fi
        if [ -f "$dir/expected.json" ]; then
            if ! python3 -c '
import json, sys
want = json.load(open(sys.argv[1]))
try:
    got = json.loads(open(sys.argv[2]).read())
except ValueError as e:
    sys.exit("stdout is not JSON: %s" % e)
sys.exit(0 if got == want else "stdout %s, expected %s" % (json.dumps(got), json.dumps(want)))
' "$dir/expected.json" "$tmp/stdout" 2> "$tmp/cmp"; then
                problems+=("$(head -c 500 "$tmp/cmp")")
            fi
        fi
    fi
    if [ ${#problems[@]} -eq 0 ]; then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        for p in "${problems[@]}"; do
            echo "     $p"
        done
        if [ -s "$tmp/stderr" ]; then
            echo "     stderr:"
            head -n 20 "$tmp/stderr" | sed 's/^/       /'
        fi
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
