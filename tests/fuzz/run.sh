#!/usr/bin/env bash
# Runs each libFuzzer target given as an argument (build/fuzz/fuzz_<name>)
# for FUZZ_SECONDS (default 60), starting from its seed and regression
# inputs in tests/fuzz/corpus/<name>/ (every one of them is run first, so a
# regression input that crashes again fails at once) and its dictionary
# tests/fuzz/dict/<name>.dict when there is one. New inputs go to
# $FUZZ_OUT/corpus/<name>/ (FUZZ_OUT defaults to build/fuzz), kept between
# local runs; a finding is saved under $FUZZ_OUT/findings/<name>/ and the
# run's log in $FUZZ_OUT/logs/<name>.log.
# Each target counts as one test. Ends with exactly one line
#   fuzz: N passed, N failed
# and exits non-zero when any target found something or did not run.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO"

seconds="${FUZZ_SECONDS:-60}"
out="${FUZZ_OUT:-build/fuzz}"
passed=0 failed=0
[ $# -gt 0 ] || { echo "run.sh: no fuzz targets given" >&2; echo "fuzz: 0 passed, 1 failed"; exit 1; }

for target in "$@"; do
    name="$(basename "$target")"
    name="${name#fuzz_}"
    seeds="tests/fuzz/corpus/$name"
    work="$out/corpus/$name"
    findings="$out/findings/$name"
    log="$out/logs/$name.log"
    dict="tests/fuzz/dict/$name.dict"
    mkdir -p "$work" "$findings" "$(dirname "$log")"
    args=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -max_len=16384
          -print_final_stats=1 -artifact_prefix="$findings/")
    [ -f "$dict" ] && args+=(-dict="$dict")
    if [ ! -x "$target" ] || [ ! -d "$seeds" ]; then
        echo "fuzz_$name: FAILED: missing $target or $seeds"
        failed=$((failed + 1))
        continue
    fi
    start=$(date +%s)
    "$target" "${args[@]}" "$work" "$seeds" >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1)"
    # A clean run exits 0 and prints its final stats; anything else is a finding
    # (crash, sanitizer report, leak, timeout, out of memory) or a broken target.
    if [ "$rc" -eq 0 ] && [ -n "$execs" ] &&
        ! grep -Eq 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer|ERROR: libFuzzer' "$log"; then
        echo "fuzz_$name: passed ($execs execs in ${took} s, corpus $(find "$work" -type f | wc -l) new + $(find "$seeds" -type f | wc -l) seed inputs)"
        passed=$((passed + 1))
    else
        echo "fuzz_$name: FAILED (exit $rc after ${took} s); log $log, inputs in $findings/:"
        grep -E -A12 'ERROR: |runtime error:|fuzz invariant broken|Test unit written' "$log" | head -n 40 | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
