#!/usr/bin/env bash
# The local bankhook stack: PostgreSQL and Kafka (through deploy/stack.sh)
# plus bankhook-api, bankhook-worker and bankhook-scheduler from bin/, all
# with their data, logs and pid files under .run/.
#
#   deploy/run.sh up       start everything in the background (idempotent)
#   deploy/run.sh down     stop the three processes, then PostgreSQL and Kafka
#   deploy/run.sh run      up, then follow the logs; Ctrl-C runs down
#   deploy/run.sh status   what is running
#
# Environment: BH_RUN_DIR, BH_PG_PORT, BH_KAFKA_PORT (see deploy/stack.sh),
# and any BANKHOOK_<SECTION>_<KEY> override, e.g. BANKHOOK_API_PORT.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"   # the binaries find deploy/bankhook.yaml and deploy/migrations here
export BH_RUN_DIR="${BH_RUN_DIR:-$REPO/.run}"
RUN_DIR="$BH_RUN_DIR"
LOG_DIR="$RUN_DIR/logs"
TOKEN_FILE="$RUN_DIR/admin-token"
STACK="$REPO/deploy/stack.sh"
API_PORT="${BANKHOOK_API_PORT:-8080}"
API_URL="http://127.0.0.1:$API_PORT"
READY_TIMEOUT="${BH_READY_TIMEOUT:-60}"
STOP_TIMEOUT="${BH_STOP_TIMEOUT:-15}"
PROCS=(api worker scheduler)

# Sanitizer builds (make SANITIZE=...) write full reports to the logs.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

die() { echo "run: error: $*" >&2; exit 1; }
say() { echo "run: $*"; }

# Pid of our bankhook-<name>, or nothing. The command line must name the
# binary, so a stale pid file whose pid was reused never matches.
proc_pid() {
    local f="$RUN_DIR/$1.pid" pid
    [ -f "$f" ] || return 0
    pid="$(cat "$f")"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
    if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "bankhook-$1"; then
        echo "$pid"
    fi
}

# The admin token of the local stack: made once, kept across restarts.
admin_token() {
    if [ ! -s "$TOKEN_FILE" ]; then
        mkdir -p "$RUN_DIR"
        (umask 077; echo "bh_admin_$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" \
            > "$TOKEN_FILE.tmp")
        mv "$TOKEN_FILE.tmp" "$TOKEN_FILE"
    fi
    cat "$TOKEN_FILE"
}

# The environment the three processes share.
proc_env() {
    eval "$("$STACK" env)"    # database URL and brokers of this stack
    export BANKHOOK_API_ADMIN_TOKEN
    BANKHOOK_API_ADMIN_TOKEN="$(admin_token)"
    # The local stack delivers to receivers on this machine.
    export BANKHOOK_DELIVERY_ALLOW_LOOPBACK="${BANKHOOK_DELIVERY_ALLOW_LOOPBACK:-true}"
}

start_proc() {
    local name="$1" bin="$REPO/bin/bankhook-$1" pid
    [ -x "$bin" ] || die "$bin not built (run make)"
    pid="$(proc_pid "$name")"
    if [ -n "$pid" ]; then
        say "$name already running (pid $pid)"
        return
    fi
    mkdir -p "$LOG_DIR"
    # setsid: the process must not get the terminal's Ctrl-C before we stop
    # it in order, nor keep the caller's pipes open. bash writes its own pid,
    # then execs the binary, so the pid file holds the binary's pid.
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$RUN_DIR/$name.pid" "$bin" \
        </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
    local i
    for i in $(seq 50); do
        [ -s "$RUN_DIR/$name.pid" ] && break
        sleep 0.1
    done
    say "$name started (pid $(cat "$RUN_DIR/$name.pid" 2>/dev/null || echo '?'), log $LOG_DIR/$name.log)"
}

# Waits until the API answers /readyz with 200, bounded; fails early when a
# process died, showing the end of its log.
wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT)) name
    while :; do
        if curl -fsS -o /dev/null --max-time 2 "$API_URL/readyz" 2>/dev/null; then
            return 0
        fi
        for name in "${PROCS[@]}"; do
            if [ -z "$(proc_pid "$name")" ]; then
                tail -n 30 "$LOG_DIR/$name.log" >&2 || true
                die "bankhook-$name exited during start-up, see $LOG_DIR/$name.log"
            fi
        done
        [ $SECONDS -lt $deadline ] ||
            die "$API_URL/readyz did not answer 200 within ${READY_TIMEOUT}s, see $LOG_DIR/api.log"
        sleep 0.5
    done
}

cmd_up() {
    local name
    for name in "${PROCS[@]}"; do
        [ -x "$REPO/bin/bankhook-$name" ] || die "bin/bankhook-$name not built (run make)"
    done
    "$STACK" infra-up
    proc_env
    local token="$BANKHOOK_API_ADMIN_TOKEN"
    bin/bankhook-api migrate || die "migrations failed"
    bin/bankhook-api create-topics || die "creating Kafka topics failed"
    for name in "${PROCS[@]}"; do start_proc "$name"; done
    wait_ready
    echo
    echo "bankhook is up"
    echo "  API          $API_URL"
    echo "  admin token  $token   (also in $TOKEN_FILE)"
    echo "  logs         $LOG_DIR/{api,worker,scheduler}.log"
    echo "  try          curl -H \"Authorization: Bearer \$(cat $TOKEN_FILE)\" $API_URL/v1/endpoints"
}

# SIGTERM to all three at once (they drain in parallel), SIGKILL to whoever
# is left after STOP_TIMEOUT seconds; then PostgreSQL and Kafka.
cmd_down() {
    local name pid pids=() rc=0
    for name in "${PROCS[@]}"; do
        pid="$(proc_pid "$name")"
        if [ -n "$pid" ]; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$name:$pid")
        else
            rm -f "$RUN_DIR/$name.pid"
        fi
    done
    local deadline=$((SECONDS + STOP_TIMEOUT)) entry
    for entry in "${pids[@]}"; do
        name="${entry%%:*}" pid="${entry#*:}"
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name ignored SIGTERM for ${STOP_TIMEOUT}s, killing it"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
        rm -f "$RUN_DIR/$name.pid"
        say "$name stopped"
    done
    "$STACK" infra-down || rc=1
    return $rc
}

cmd_run() {
    cmd_up
    # Ctrl-C (or a TERM from a supervisor) stops the whole stack in order.
    trap 'trap - INT TERM; echo; cmd_down; exit 0' INT TERM
    echo
    say "following the logs; Ctrl-C stops everything"
    local logs=() name
    for name in "${PROCS[@]}"; do logs+=("$LOG_DIR/$name.log"); done
    tail -n 0 -F "${logs[@]}" &
    wait $! || true
    # tail ended without a signal (killed from outside): stop anyway.
    trap - INT TERM
    cmd_down
}

cmd_status() {
    local rc=0 name pid
    "$STACK" status || rc=1
    for name in "${PROCS[@]}"; do
        pid="$(proc_pid "$name")"
        if [ -n "$pid" ]; then say "$name running (pid $pid)"; else say "$name stopped"; rc=1; fi
    done
    if curl -fsS -o /dev/null --max-time 2 "$API_URL/readyz" 2>/dev/null; then
        say "api ready at $API_URL"
    else
        say "api not ready at $API_URL"; rc=1
    fi
    return $rc
}

case "${1:-}" in
    up)     cmd_up ;;
    down)   cmd_down ;;
    run)    cmd_run ;;
    status) cmd_status ;;
    *)      sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
