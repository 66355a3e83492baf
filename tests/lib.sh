# Shared by tests/run_unit.sh and tests/run_all.sh.

# Sanitizer settings for every process the tests start. Leaks are reported
# at exit; abort_on_error=0 keeps the normal exit path so the report is
# written in full to the log the harness scans.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

# The strings a sanitizer report starts with (Redis check_sanitizer_errors).
BH_SANITIZER_PATTERN='ERROR: AddressSanitizer|runtime error:|LeakSanitizer'

# Prints the files among "$@" that hold a sanitizer report; true if any.
bh_sanitizer_reports() {
    local f found=1
    for f in "$@"; do
        [ -f "$f" ] || continue
        if grep -Eq "$BH_SANITIZER_PATTERN" "$f"; then
            echo "$f"
            found=0
        fi
    done
    return $found
}
