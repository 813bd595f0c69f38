#!/bin/sh
# setup.sh -- make sure the packages libflow builds and tests with are installed.
# Idempotent and quick when nothing is missing. As root it installs what is
# missing with apt-get; otherwise it prints the exact command to run.
# `setup.sh fuzz` (what `make fuzz` runs) adds clang and its libFuzzer and
# sanitizer runtimes; nothing else needs clang.
set -eu

# What the build and the tests need: the toolchain, the libraries (found
# with pkg-config), and for the tests python3 (JSON comparison), procps
# (pgrep) and valgrind (the memcheck tests), openssl (a self-signed
# certificate for the HTTPS test of `http:` tasks). redis-server is for the tests of
# distribution (they start their own servers on free ports, never the
# system's service). tzdata holds the time zones of schedules. chromium is
# for the dashboard's test in a real browser
# (tests/browser/), driven by node's playwright-core (below).
PACKAGES="
cmake
make
gcc
pkg-config
libjansson-dev
libyaml-dev
libsqlite3-dev
libhiredis-dev
libcurl4-openssl-dev
libmicrohttpd-dev
zlib1g-dev
libcmocka-dev
python3
openssl
procps
valgrind
redis-server
tzdata
chromium
"
# node and npm: the machine's own when it has them (they may come from
# elsewhere than Debian), else Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    PACKAGES="$PACKAGES nodejs npm"
fi
if [ "${1:-}" = fuzz ]; then
    PACKAGES="$PACKAGES clang libclang-rt-14-dev"
fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing:$missing" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >&2
    else
        echo "setup: missing packages:$missing" >&2
        echo "setup: run:  sudo apt-get install -y$missing" >&2
        exit 1
    fi
fi

for m in jansson yaml-0.1 sqlite3 hiredis libcurl zlib cmocka libmicrohttpd; do
    if ! pkg-config --exists "$m"; then
        echo "setup: pkg-config cannot find '$m' although its package is installed" >&2
        exit 1
    fi
done

# playwright-core for tests/browser/, at the version its package-lock.json
# pins, in tests/browser/node_modules (no browser download: the test drives
# Debian's chromium). Without the npm registry this only warns: the build
# does not need it, and the browser test then says what is missing.
B=$(cd "$(dirname "$0")/.." && pwd)/tests/browser
want=$(sed -n '/"node_modules\/playwright-core"/,/}/s/.*"version": *"\([^"]*\)".*/\1/p' "$B/package-lock.json")
have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$B/node_modules/playwright-core/package.json" 2>/dev/null | head -1)
if [ "$have" != "$want" ]; then
    echo "setup: npm ci in tests/browser (playwright-core $want)" >&2
    if ! (cd "$B" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2); then
        echo "setup: warning: npm ci failed in $B; the browser test (tests/browser/) cannot run" >&2
    fi
fi
