#!/bin/bash
# Source checks: the shared library exports exactly the public API listed in
# tests/exports.txt, every header compiles on its own, no banned function is
# used, and the docs, headers and sources name only files of the repository.
set -u
. "$(dirname "$0")/lib.sh"
S=$FLOW_SOURCE_DIR

so=$(ls "$FLOW_BUILD_DIR"/libflow.so.* 2>/dev/null | head -1)
if [ -z "$so" ]; then
    fail "no libflow.so in $FLOW_BUILD_DIR"
else
    nm -D --defined-only "$so" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort > "$T/exports"
    if diff -u "$S/tests/exports.txt" "$T/exports" > "$T/exports.diff"; then
        pass "libflow.so exports exactly tests/exports.txt ($(wc -l < "$T/exports") symbols)"
    else
        fail "exports differ from tests/exports.txt: $(cat "$T/exports.diff")"
    fi
    if grep -v '^flow_' "$T/exports" > "$T/stray"; then
        fail "exported symbols without the flow_ prefix: $(tr '\n' ' ' < "$T/stray")"
    else
        pass "every export has the flow_ prefix"
    fi
fi

cc=${CC:-cc}
bad=0
for h in "$S"/include/flow.h "$S"/src/*/*.h; do
    if ! printf '#include "%s"\n' "$h" | "$cc" -std=c11 -Wall -Wextra -Werror \
        -I"$S/include" -I"$S/src" $(pkg-config --cflags jansson) -fsyntax-only -x c - \
        2> "$T/hdr.err"; then
        fail "header does not compile on its own: $h: $(head -3 "$T/hdr.err")"
        bad=1
    fi
done
[ $bad = 0 ] && pass "every header compiles on its own"

banned='\b(strcpy|strcat|sprintf|vsprintf|strtok|atoi|atol|gets|system|popen)[[:space:]]*\('
if grep -nE "$banned" "$S"/src/*/*.c "$S"/src/*/*.h "$S"/cli/*.c "$S"/cli/*.h > "$T/banned"; then
    fail "banned functions used: $(cat "$T/banned")"
else
    pass "no banned function in src/ and cli/"
fi

# The folders of src/ are layers (docs/internals/layers.md): a file may include
# headers of its own folder and of lower layers only, never of a layer above
# or beside it, so the module graph has no cycle.
layer_rank() {
    case $1 in
        util) echo 0 ;; def) echo 1 ;; store|exec) echo 2 ;; journal) echo 3 ;; core) echo 4 ;; serve) echo 5 ;;
        *) echo 99 ;;
    esac
}
: > "$T/backedges"
for f in "$S"/src/*/*.[ch]; do
    from=$(basename "$(dirname "$f")")
    rf=$(layer_rank "$from")
    [ "$rf" = 99 ] && echo "$f: folder '$from' has no layer in test_src.sh" >> "$T/backedges"
    grep -o '^#include "[a-z_]*/[a-z_.]*"' "$f" | sed 's/^#include "//; s/".*//' | while read -r inc; do
        to=${inc%%/*}
        [ "$to" = "$from" ] && continue
        rt=$(layer_rank "$to")
        if [ "$rt" -ge "$rf" ]; then
            echo "${f#$S/} ($from) includes $inc ($to)" >> "$T/backedges"
        fi
    done
done
if [ -s "$T/backedges" ]; then
    fail "includes against the layers util < def < store, exec < journal < core: $(cat "$T/backedges")"
else
    pass "no include goes up or across the layers of src/"
fi

# Small modules with one job each: no source file of src/ grows past 1,500 lines.
long=$(wc -l "$S"/src/*/*.[ch] | awk '$2 != "total" && $1 > 1500 {print $2 " (" $1 " lines)"}')
if [ -n "$long" ]; then
    fail "files of src/ over 1,500 lines (split them by job): $long"
else
    pass "no file of src/ is over 1,500 lines"
fi

# The project speaks for itself: its docs, header, sources, examples and tests
# cite only files of the repository, never the design papers it was built from
# (a specification, a style guide, the seed documents by file or number).
outside='\bSPEC\b|SPEC\.md|STYLE\.md|/work/shared|shared/(seeds|SPEC|STYLE)|seeds/[0-9]{3}'
outside+='|[0-9]{3}_[0-9a-f]{16}\.txt|\(00[0-9][,;)]'
if grep -rnE --exclude=test_src.sh "$outside" "$S"/README.md "$S"/docs "$S"/include "$S"/src \
    "$S"/cli "$S"/examples "$S"/tests "$S"/bench > "$T/outside"; then
    fail "references to files outside the repository: $(head -5 "$T/outside")"
else
    pass "docs, header, sources, examples and tests name only files of the repository"
fi

finish
