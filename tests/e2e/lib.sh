# lib.sh -- shared by the e2e scripts: a temp dir, pass/fail counting, JSON
# comparison (python3's json, on the machine), and the final tally line.
: "${FLOW:?set FLOW to the flow binary}"
: "${FLOW_SOURCE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${FLOW_BUILD_DIR:=$FLOW_SOURCE_DIR/build}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
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

finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}
