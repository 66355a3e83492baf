#!/usr/bin/env bash
# Runs each cmocka unit-test binary given as an argument, then prints
#   unit: N passed, N failed
# summed over all of them. A binary that crashes, exits non-zero without a
# failed test (a leak report at exit), or prints a sanitizer report counts
# as one more failure. Exit status 0 only when nothing failed.
#
#   tests/run_unit.sh build/release/tests/test_crypto ...
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/lib.sh
. "$HERE/lib.sh"

if [ $# -eq 0 ]; then
    echo "run_unit: no unit-test binaries given" >&2
    echo "unit: 0 passed, 1 failed"
    exit 1
fi

out="$(mktemp -d /tmp/bh-unit.XXXXXX)"
trap 'rm -rf "$out"' EXIT
passed=0 failed=0
for bin in "$@"; do
    name="$(basename "$bin")"
    log="$out/$name.log"
    # cmocka writes progress to stdout and failures to stderr: keep both,
    # in order, in one log that is shown only when something went wrong.
    CMOCKA_MESSAGE_OUTPUT=stdout "$bin" >"$log" 2>&1
    rc=$?
    p="$(grep -Eo '\[  PASSED  \] [0-9]+ test' "$log" | grep -Eo '[0-9]+' | tail -n 1)"
    f="$(grep -Eo '\[  FAILED  \] [0-9]+ test' "$log" | grep -Eo '[0-9]+' | tail -n 1)"
    p="${p:-0}" f="${f:-0}"
    extra=""
    if ! grep -q '\[==========\] [0-9]* test(s) run' "$log"; then
        extra="did not finish (exit $rc)"
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        extra="exited $rc after its tests passed"
    fi
    if bh_sanitizer_reports "$log" >/dev/null; then
        extra="${extra:+$extra; }printed a sanitizer report"
    fi
    [ -z "$extra" ] || f=$((f + 1))
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -gt 0 ]; then
        echo "--- $name: $p passed, $f failed${extra:+ ($extra)}"
        cat "$log"
    else
        echo "    $name: $p passed"
    fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
