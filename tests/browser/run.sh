#!/bin/bash
# run.sh -- the dashboard's browser test (dashboard.js) under ctest: checks
# what it needs and says what is missing (scripts/setup.sh installs it all).
set -u
here=$(cd "$(dirname "$0")" && pwd)
: "${FLOW:?set FLOW to the flow binary}"
missing=""
command -v node >/dev/null 2>&1 || missing="$missing node"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing="$missing chromium"
[ -f "$here/node_modules/playwright-core/package.json" ] || missing="$missing playwright-core(npm ci in tests/browser)"
if [ -n "$missing" ]; then
    echo "FAIL: the browser test needs:$missing -- run scripts/setup.sh"
    echo "0 passed, 1 failed"
    exit 1
fi
cd "$here" && exec node dashboard.js
