#!/bin/sh
# Entry point of the bankhook image: the first argument picks the program.
#
#   api | scheduler | worker        serve until SIGTERM
#   migrate | create-topics         one-shot set-up, then exit
#   anything else                   run as given (e.g. sh, for debugging)
#
# Further arguments go to the program (e.g. `worker --log-format text`).
# exec, so the program is the process Docker signals (no shell in between).
# The verbs map to exactly the commands the e2e harness starts natively
# (tests/e2e/harness.py COMMANDS); BH_ENTRYPOINT_DRY_RUN=1 prints the
# command instead of running it, which tests/e2e/test_static.py compares.
set -eu

if [ $# -eq 0 ]; then
    set -- api
fi
verb="$1"
shift
case "$verb" in
    api)           set -- bankhook-api "$@" ;;
    scheduler)     set -- bankhook-scheduler "$@" ;;
    worker)        set -- bankhook-worker "$@" ;;
    migrate)       set -- bankhook-api migrate "$@" ;;
    create-topics) set -- bankhook-api create-topics "$@" ;;
    *)             set -- "$verb" "$@" ;;
esac
if [ "${BH_ENTRYPOINT_DRY_RUN:-0}" = 1 ]; then
    echo "$*"
    exit 0
fi
exec "$@"
