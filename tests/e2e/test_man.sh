#!/usr/bin/env bash
# test_man.sh -- the man page docs/flow.1: it renders without a warning (groff,
# man, when installed), and it stays true to the program: every command of
# `flow --help` and every option of `flow COMMAND --help` is in it, its
# version is the program's, and it has the exit statuses, the environment
# (FLOW_STORE, FLOW_REDIS, FLOW_LLM_*, NO_COLOR) and the files (.flow/flow.db).
set -u
source "$(dirname "$0")/lib.sh"
PAGE=$FLOW_SOURCE_DIR/docs/flow.1
cd "$T"

if command -v groff >/dev/null; then
    LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$PAGE" 2>err
    check "groff renders it without a warning" [ ! -s err ]
else
    echo "skip: no groff"
fi
if command -v man >/dev/null; then
    rc=0; MANWIDTH=80 man --warnings -l "$PAGE" >page.txt 2>err || rc=$?
    check "man -l renders it ($rc), without a warning" bash -c '[ "$1" = 0 ] && [ ! -s err ]' _ "$rc"
    check "... into the sections of a man page" \
        bash -c 'for s in NAME SYNOPSIS DESCRIPTION COMMANDS "EXIT STATUS" ENVIRONMENT FILES; do
                     grep -q "^$s" page.txt || exit 1; done'
else
    echo "skip: no man"
fi

version=$("$FLOW" --version | awk '{print $2}')
check "its version is the program's ($version)" grep -q "^\.TH FLOW 1 .*\"libflow $version\"" "$PAGE"

# roff writes a hyphen of an option as \-
roff() { sed 's/-/\\-/g' <<<"$1"; }
cmds=$("$FLOW" --help | awk '/^Commands:/ {f = 1; next} f && /^  [a-z]/ {print $1} f && /^$/ {exit}')
missing=""
for c in $cmds; do
    grep -q "^\.SS \"flow $c\b" "$PAGE" || missing="$missing $c"
done
check "every command has its section (missing:$missing)" [ -z "$missing" ]
missing=""
for c in $cmds; do
    for o in $("$FLOW" "$c" --help | grep -oE '^ {2,6}(-[a-zA-Z], )?--[a-z][a-z0-9-]*' |
        grep -oE -- '--[a-z][a-z0-9-]*'); do
        grep -qF -- "$(roff "$o")" "$PAGE" || missing="$missing $c:$o"
    done
done
check "every option of every command is described (missing:$missing)" [ -z "$missing" ]
for v in FLOW_STORE FLOW_REDIS FLOW_LLM_URL FLOW_LLM_KEY FLOW_LLM_MODEL NO_COLOR; do
    check "ENVIRONMENT has $v" awk -v v="$v" '/^\.SH ENVIRONMENT/ {f = 1} /^\.SH FILES/ {f = 0}
        f && $0 == ".B " v {found = 1} END {exit !found}' "$PAGE"
done
check "FILES has .flow/flow.db" grep -qx '\.B \.flow/flow\.db' "$PAGE"
for s in 0 1 2 3 4 130; do
    check "EXIT STATUS has $s" awk -v s="$s" '/^\.SH EXIT STATUS/ {f = 1} /^\.SH ENVIRONMENT/ {f = 0}
        f && $0 == ".B " s {found = 1} END {exit !found}' "$PAGE"
done

finish
