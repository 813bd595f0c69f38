#!/bin/bash
# run.sh -- `make fuzz`: make the seed corpora, then run each libFuzzer
# harness for FUZZ_TIME seconds (default 60). An input that crashes a
# harness (crash-*, leak-*, timeout-*, oom-*) is written to
# tests/fuzz/crashes/<harness>/, where `make test` replays it for ever after:
# commit it with the fix. The growing corpus stays in $FUZZ_BUILD/fuzz-corpus.
#   FUZZ_BUILD      the clang build (default build-fuzz)
#   FUZZ_TIME       seconds per harness (default 60)
#   FUZZ_HARNESSES  which ones (default: load template control store schema)
#   FUZZ_FLAGS      more libFuzzer flags (-jobs=2, -max_len=...)
set -u

src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${FUZZ_BUILD:-build-fuzz}" && pwd) || exit 1
time=${FUZZ_TIME:-60}
harnesses=${FUZZ_HARNESSES:-load template control store schema}
corpus=$build/fuzz-corpus
logs=$build/fuzz-logs
mkdir -p "$corpus" "$logs"

mapfile -t workflows < <(find "$src/examples" "$src/tests/cases" \
    \( -name '*.yaml' -o -name '*.json' \) -type f | sort)
if ! "$build/fuzz/fuzz_seeds" "$corpus" "${workflows[@]}"; then
    echo "fuzz: making the seed corpora failed" >&2
    exit 1
fi

kept() { find "$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
             -o -name 'oom-*' \) 2>/dev/null | sort; }

failed=0
printf '%-10s %12s %9s %8s  %s\n' harness executions exec/s corpus result
for h in $harnesses; do
    crashes=$src/tests/fuzz/crashes/$h
    mkdir -p "$crashes" "$corpus/$h"
    before=$(kept "$crashes")
    log=$logs/$h.log
    # setsid: no controlling terminal, so a fuzzed `flow: /dev/tty` cannot
    # wait for the keyboard.
    # shellcheck disable=SC2086
    # Kept seeds, when the harness has any (the store's come from fuzz_seeds).
    seeds=()
    [ -d "$src/tests/fuzz/corpus/$h" ] && seeds=("$src/tests/fuzz/corpus/$h")
    setsid -w "$build/fuzz/fuzz_$h" -max_total_time="$time" -timeout=25 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$crashes/" -dict="$src/tests/fuzz/dict/$h.dict" \
        ${FUZZ_FLAGS:-} "$corpus/$h" "${seeds[@]}" </dev/null >"$log" 2>&1
    rc=$?
    rm -f "$crashes"/slow-unit-*
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    size=$(find "$corpus/$h" -type f | wc -l)
    new=$(comm -13 <(echo "$before") <(kept "$crashes") | sed '/^$/d')
    if [ "$rc" = 0 ] && [ -z "$new" ]; then
        result=ok
    else
        failed=1
        result="FAILED (exit $rc; log $log)"
    fi
    printf '%-10s %12s %9s %8s  %s\n' "$h" "${execs:-?}" "${rate:-?}" "$size" "$result"
    for f in $new; do
        echo "  kept ${f#"$src"/}"
    done
    if [ "$rc" != 0 ]; then
        grep -m1 -A12 -E '^==[0-9]+==ERROR|runtime error|^SUMMARY|ALARM|out-of-memory' "$log" |
            sed 's/^/  | /'
    fi
done
exit $failed
