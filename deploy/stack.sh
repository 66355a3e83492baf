#!/usr/bin/env bash
# Local infrastructure for bankhook: a private PostgreSQL cluster and a
# single-node Kafka (KRaft) with all their data under one run directory.
# Everything is parameterized by environment so a test harness can run a
# second, isolated stack on other ports beside the default one.
#
#   deploy/stack.sh pg-start|pg-stop|pg-restart
#                   kafka-start|kafka-stop|kafka-restart
#                   infra-up|infra-down|status|env
#
# Environment (defaults in brackets):
#   BH_RUN_DIR               [<repo>/.run]  data, logs, pid files
#   BH_PG_PORT               [55432]
#   BH_PG_FAST               [0]  1 = fsync/synchronous_commit off (tests)
#   BH_PG_BIN                [newest /usr/lib/postgresql/*/bin]
#   BH_KAFKA_PORT            [9092]
#   BH_KAFKA_CONTROLLER_PORT [BH_KAFKA_PORT+1]
#   BH_KAFKA_LIBS            [<repo>/.run/kafka-libs]  shared by all stacks
#   BH_KAFKA_HEAP            [-Xms256m -Xmx512m]
#   BH_KAFKA_START_TIMEOUT   [60]  seconds until the broker must answer
#   BH_KAFKA_STOP_TIMEOUT    [30]  seconds before SIGKILL
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${BH_RUN_DIR:-$REPO/.run}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"   # absolute: daemons do not run in our cwd
LOG_DIR="$RUN_DIR/logs"

PG_PORT="${BH_PG_PORT:-55432}"
PG_FAST="${BH_PG_FAST:-0}"
PG_DATA="$RUN_DIR/pg"
PG_SOCK="$RUN_DIR/pg-sock"
PG_LOG="$LOG_DIR/postgres.log"
PG_DB=bankhook

KAFKA_PORT="${BH_KAFKA_PORT:-9092}"
KAFKA_CPORT="${BH_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_LIBS="${BH_KAFKA_LIBS:-$REPO/.run/kafka-libs}"
KAFKA_HEAP="${BH_KAFKA_HEAP:--Xms256m -Xmx512m}"
KAFKA_DIR="$RUN_DIR/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_PID="$RUN_DIR/kafka.pid"
KAFKA_START_TIMEOUT="${BH_KAFKA_START_TIMEOUT:-60}"
KAFKA_STOP_TIMEOUT="${BH_KAFKA_STOP_TIMEOUT:-30}"

die() { echo "stack: error: $*" >&2; exit 1; }
say() { echo "stack: $*"; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- PostgreSQL

pg_bin() {
    if [ -n "${BH_PG_BIN:-}" ]; then echo "$BH_PG_BIN"; return; fi
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -z "$d" ] && command -v pg_ctl >/dev/null; then
        d="$(dirname "$(command -v pg_ctl)")"
    fi
    [ -n "$d" ] && [ -x "$d/pg_ctl" ] ||
        die "PostgreSQL server binaries not found (run deploy/setup.sh or set BH_PG_BIN)"
    echo "$d"
}

# PostgreSQL refuses to run as root, so as root every server-side command
# runs as the postgres OS user. cd / because our cwd may be unreadable to it.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_running() {
    [ -f "$PG_DATA/PG_VERSION" ] &&
        as_pg "$(pg_bin)/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_prepare_dirs() {
    mkdir -p "$PG_DATA" "$PG_SOCK" "$LOG_DIR"
    touch "$PG_LOG"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 ||
            die "running as root needs the 'postgres' OS user (apt-get install postgresql)"
        chown postgres: "$PG_DATA" "$PG_SOCK" "$PG_LOG"
        # Every parent of the run dir must be traversable by postgres
        # (pytest's /tmp/pytest-of-root is 0700, for instance).
        as_pg test -w "$PG_DATA" -a -w "$PG_SOCK" -a -w "$PG_LOG" ||
            die "the postgres OS user cannot reach $RUN_DIR; make every parent directory traversable (chmod o+x) or pick another BH_RUN_DIR"
    fi
    chmod 700 "$PG_DATA"   # the server insists on a private data dir
}

# Settings that depend on the environment are rewritten on every start so
# BH_PG_PORT / BH_PG_FAST take effect on an existing cluster too.
pg_write_conf() {
    local sockdirs="$PG_SOCK"
    # A Unix socket path is limited to ~107 bytes; TCP alone is enough for us.
    if [ $(( ${#PG_SOCK} + 20 )) -gt 107 ]; then
        say "run dir path too long for a Unix socket; PostgreSQL listens on TCP only"
        sockdirs=""
    fi
    local conf="$PG_DATA/bankhook.conf"
    {
        echo "# written by deploy/stack.sh on every pg-start; edits are lost"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PG_PORT"
        echo "unix_socket_directories = '$sockdirs'"
        echo "max_connections = 200"
        echo "logging_collector = off"
        echo "log_line_prefix = '%m [%p] %d '"
        if [ "$PG_FAST" = 1 ]; then
            # Tests throw the data away; durability only costs time there.
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        else
            echo "fsync = on"
            echo "synchronous_commit = on"
            echo "full_page_writes = on"
        fi
    } > "$conf.tmp"
    mv "$conf.tmp" "$conf"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$conf"
}

cmd_pg_start() {
    local bin; bin="$(pg_bin)"
    pg_prepare_dirs
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        say "initdb $PG_DATA"
        local sync=()
        if [ "$PG_FAST" = 1 ]; then sync=(--no-sync); fi
        as_pg "$bin/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 \
            --locale=C "${sync[@]}" >"$LOG_DIR/initdb.log" 2>&1 ||
            die "initdb failed, see $LOG_DIR/initdb.log"
        echo "include_if_exists = 'bankhook.conf'" >> "$PG_DATA/postgresql.conf"
    fi
    pg_write_conf
    if pg_running; then
        say "postgres already running on 127.0.0.1:$PG_PORT"
    else
        if port_busy "$PG_PORT"; then
            die "port $PG_PORT is taken by another process; set BH_PG_PORT"
        fi
        as_pg "$bin/pg_ctl" start -w -t 60 -D "$PG_DATA" -l "$PG_LOG" >/dev/null ||
            { tail -n 20 "$PG_LOG" >&2; die "postgres did not start, see $PG_LOG"; }
        say "postgres up on 127.0.0.1:$PG_PORT"
    fi
    local psql=("$bin/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres)
    if [ -z "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" ]; then
        "${psql[@]}" -c "CREATE DATABASE $PG_DB" ||
            die "could not create database $PG_DB"
        say "created database $PG_DB"
    fi
}

cmd_pg_stop() {
    if pg_running; then
        as_pg "$(pg_bin)/pg_ctl" stop -w -t 60 -m fast -D "$PG_DATA" >/dev/null ||
            die "postgres did not stop, see $PG_LOG"
        say "postgres stopped"
    else
        say "postgres not running"
    fi
}

cmd_pg_restart() { cmd_pg_stop; cmd_pg_start; }

# --------------------------------------------------------------------- Kafka

# Pid of our broker, or nothing. The command line must name our properties
# file, so a stale pid file whose pid was reused never matches.
kafka_pid() {
    [ -f "$KAFKA_PID" ] || return 0
    local pid; pid="$(cat "$KAFKA_PID")"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
    if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "kafka.Kafka $KAFKA_PROPS"; then
        echo "$pid"
    fi
}

kafka_ready() {
    timeout 5 kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 3 2>/dev/null |
        grep -q "broker 1 at 127.0.0.1:$KAFKA_PORT"
}

kafka_write_conf() {
    mkdir -p "$KAFKA_DATA" "$LOG_DIR"
    cat > "$KAFKA_PROPS" <<EOF
# written by deploy/stack.sh on every kafka-start; edits are lost
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CPORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
# one node: internal topics cannot have more replicas
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# fewer internal partitions make the first group join / transaction quick
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=4
# consumers join at once instead of waiting 3 s for more members
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=168
log.segment.bytes=268435456
EOF
    cat > "$KAFKA_DIR/log4j.properties" <<EOF
# The broker logs to $LOG_DIR/kafka.log only, not stdout.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$LOG_DIR/kafka.log
log4j.appender.file.MaxFileSize=50MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.storage.internals.log=WARN
EOF
}

# A Kafka cluster id: 16 random bytes, base64url without padding (22 chars),
# not starting with '-' (Kafka avoids that too: it looks like an option).
kafka_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
        [ "${id:0:1}" != "-" ] && break
    done
    echo "$id"
}

# The JVM command line for a Kafka main class, into the array JAVA_CMD.
kafka_java_cmd() {
    # shellcheck disable=SC2206  # KAFKA_HEAP is a list of JVM options
    JAVA_CMD=(java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
        "-Dlog4j.configuration=file:$KAFKA_DIR/log4j.properties"
        "-Dkafka.logs.dir=$LOG_DIR"
        -cp "$KAFKA_LIBS/*" "$@")
}

cmd_kafka_start() {
    command -v java >/dev/null || die "java not found (run deploy/setup.sh)"
    command -v kcat >/dev/null || die "kcat not found (run deploy/setup.sh)"
    ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 ||
        die "no Kafka jars in $KAFKA_LIBS (run deploy/setup.sh)"
    local pid; pid="$(kafka_pid)"
    if [ -n "$pid" ]; then
        kafka_wait "$pid"
        say "kafka already running on 127.0.0.1:$KAFKA_PORT (pid $pid)"
        return
    fi
    rm -f "$KAFKA_PID"
    local p
    for p in "$KAFKA_PORT" "$KAFKA_CPORT"; do
        if port_busy "$p"; then
            die "port $p is taken by another process; set BH_KAFKA_PORT / BH_KAFKA_CONTROLLER_PORT"
        fi
    done
    kafka_write_conf
    if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
        local cid; cid="$(kafka_cluster_id)"
        kafka_java_cmd kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_PROPS"
        "${JAVA_CMD[@]}" >"$LOG_DIR/kafka-format.log" 2>&1 ||
            { cat "$LOG_DIR/kafka-format.log" >&2; die "formatting $KAFKA_DATA failed"; }
        say "formatted $KAFKA_DATA (cluster $cid)"
    fi
    # setsid: the broker must not die with the caller's Ctrl-C or hold its
    # pipes open (pytest's subprocess.run would wait for EOF forever).
    # bash -c writes its own pid, then execs java, so the pid is java's.
    kafka_java_cmd kafka.Kafka "$KAFKA_PROPS"
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$KAFKA_PID" "${JAVA_CMD[@]}" \
        </dev/null >>"$LOG_DIR/kafka.out" 2>&1 &
    local i
    for i in $(seq 50); do
        if [ -s "$KAFKA_PID" ]; then break; fi
        sleep 0.1
    done
    pid="$(cat "$KAFKA_PID" 2>/dev/null || true)"
    [ -n "$pid" ] || die "kafka did not start, see $LOG_DIR/kafka.out"
    kafka_wait "$pid"
    say "kafka up on 127.0.0.1:$KAFKA_PORT (pid $pid)"
}

# Waits until the broker answers metadata requests, bounded.
kafka_wait() {
    local pid="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ! kafka_ready; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$LOG_DIR/kafka.out" "$LOG_DIR/kafka.log" >&2 2>/dev/null || true
            rm -f "$KAFKA_PID"
            die "kafka exited during start-up, see $LOG_DIR/kafka.log"
        fi
        [ $SECONDS -lt $deadline ] ||
            die "kafka did not answer on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s, see $LOG_DIR/kafka.log"
        sleep 0.5
    done
}

cmd_kafka_stop() {
    local pid; pid="$(kafka_pid)"
    if [ -z "$pid" ]; then
        rm -f "$KAFKA_PID"
        say "kafka not running"
        return
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "kafka ignored SIGTERM for ${KAFKA_STOP_TIMEOUT}s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$KAFKA_PID"
    say "kafka stopped"
}

cmd_kafka_restart() { cmd_kafka_stop; cmd_kafka_start; }

# -------------------------------------------------------------------- stack

cmd_infra_up() { cmd_pg_start; cmd_kafka_start; }

# Both stops run even when the first fails.
cmd_infra_down() {
    local rc=0
    cmd_kafka_stop || rc=1
    cmd_pg_stop || rc=1
    return $rc
}

# Exit 0 only when both are up, so scripts can poll it.
cmd_status() {
    local rc=0 pid
    if pg_running; then
        say "postgres running on 127.0.0.1:$PG_PORT (data $PG_DATA)"
    else
        say "postgres stopped"; rc=1
    fi
    pid="$(kafka_pid)"
    if [ -n "$pid" ] && kafka_ready; then
        say "kafka running on 127.0.0.1:$KAFKA_PORT (pid $pid, data $KAFKA_DATA)"
    elif [ -n "$pid" ]; then
        say "kafka starting or unresponsive (pid $pid)"; rc=1
    else
        say "kafka stopped"; rc=1
    fi
    return $rc
}

# Overrides for bankhook's config that point it at this stack.
cmd_env() {
    echo "export BANKHOOK_DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB"
    echo "export BANKHOOK_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
}

usage() {
    sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

case "${1:-}" in
    pg-start)      cmd_pg_start ;;
    pg-stop)       cmd_pg_stop ;;
    pg-restart)    cmd_pg_restart ;;
    kafka-start)   cmd_kafka_start ;;
    kafka-stop)    cmd_kafka_stop ;;
    kafka-restart) cmd_kafka_restart ;;
    infra-up)      cmd_infra_up ;;
    infra-down)    cmd_infra_down ;;
    status)        cmd_status ;;
    env)           cmd_env ;;
    *)             usage ;;
esac
