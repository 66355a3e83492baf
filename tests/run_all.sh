#!/usr/bin/env bash
# The whole test suite: the unit-test binaries given as arguments, then the
# end-to-end tests (python3 -m pytest tests/e2e, which starts its own
# private stack). Ends with exactly one line
#   N passed, N failed
# summed over both. Exits non-zero when anything failed, or when either
# half did not run at all (no binaries, pytest missing or collecting
# nothing), so a broken harness never looks like a green run.
#
#   tests/run_all.sh build/release/tests/test_* [-- extra pytest args]
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=tests/lib.sh
. "$HERE/lib.sh"
cd "$REPO"

units=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do units+=("$1"); shift; done
[ "${1:-}" != "--" ] || shift
pytest_args=("$@")

total_p=0 total_f=0 broken=()

# ---- unit tests
unit_out="$(mktemp /tmp/bh-unit-out.XXXXXX)"
trap 'rm -f "$unit_out" "$e2e_out"' EXIT
bash "$HERE/run_unit.sh" "${units[@]}" 2>&1 | tee "$unit_out"
line="$(grep -E '^unit: [0-9]+ passed, [0-9]+ failed$' "$unit_out" | tail -n 1)"
if [ -z "$line" ] || [ ${#units[@]} -eq 0 ]; then
    broken+=("unit tests did not run")
    total_f=$((total_f + 1))
else
    read -r up uf < <(echo "$line" | sed -E 's/^unit: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/')
    total_p=$((total_p + up)); total_f=$((total_f + uf))
fi

# ---- end-to-end tests
e2e_out="$(mktemp /tmp/bh-e2e-out.XXXXXX)"
python3 -m pytest -q -p no:cacheprovider tests/e2e "${pytest_args[@]}" 2>&1 | tee "$e2e_out"
rc=${PIPESTATUS[0]}
# pytest's summary: "== 3 failed, 10 passed, 1 error in 12.3s ==" (or -q
# without the bars). Errors (fixture or teardown failures, such as a
# sanitizer report found at teardown) count as failures.
summary="$(grep -E '(passed|failed|errors?|deselected|skipped|no tests ran).* in [0-9.]+s' "$e2e_out" | tail -n 1)"
count() { echo "$summary" | grep -Eo "[0-9]+ $1" | grep -Eo '[0-9]+' | head -n 1; }
ep="$(count passed)"; ef="$(count failed)"; ee="$(count 'errors?')"
ep="${ep:-0}" ef="${ef:-0}" ee="${ee:-0}"
if [ -z "$summary" ]; then
    broken+=("pytest did not run (exit $rc)")
    ef=1
elif [ $((ep + ef + ee)) -eq 0 ]; then
    broken+=("pytest ran no tests")
    ef=1
elif [ "$rc" -ne 0 ] && [ $((ef + ee)) -eq 0 ]; then
    broken+=("pytest exited $rc")
    ef=1
fi
total_p=$((total_p + ep)); total_f=$((total_f + ef + ee))

for b in "${broken[@]}"; do echo "run_all: $b" >&2; done
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
