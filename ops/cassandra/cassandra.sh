#!/usr/bin/env bash
# Local single-node Apache Cassandra 5.0 for the project's tests.
#
#   cassandra.sh start [DATA_DIR]   resolve the classpath (Maven, cached), write config, launch in background
#   cassandra.sh wait [TIMEOUT_S]   poll until CQL answers on 127.0.0.1 (default 240 s)
#   cassandra.sh status             print "running ..." (exit 0) or "not running" (exit 3)
#   cassandra.sh stop               SIGTERM, SIGKILL after $CASSANDRA_STOP_TIMEOUT s, remove the temp data dir
#   cassandra.sh classpath          only resolve the classpath and print the cached file's path
#
# Environment (all optional):
#   OMNI_CASSANDRA_HOME     work dir: config, logs, pidfile, classpath cache (default /tmp/omnistream-cassandra)
#   CASSANDRA_DATA_DIR      data dir when no DATA_DIR argument is given (default: a fresh temp dir,
#                           deleted again by `stop`); a dir you name is never deleted
#   CASSANDRA_PORT          CQL native transport port (default 9042)
#   CASSANDRA_STORAGE_PORT  inter-node storage port (default 7000)
#   CASSANDRA_HEAP          -Xms/-Xmx (default 1G)
#   CASSANDRA_VERSION       org.apache.cassandra:cassandra-all version (default: the one in pom.xml)
#   CASSANDRA_CLUSTER_NAME  cluster_name (default omnistream-test)
#   CASSANDRA_STOP_TIMEOUT  seconds between SIGTERM and SIGKILL (default 45)
#   CASSANDRA_COMMITLOG_SYNC  periodic (default: the commit log synced every 10 s, as Cassandra
#                           ships, and -Dcassandra.unsafesystem=true for a quick start: schema
#                           changes skip the commit log, so a SIGKILLed node loses keyspaces made
#                           since its last flush) or batch (synced before each acknowledgement,
#                           system tables durable too: what the SIGKILL outage test runs with)
#   CASSANDRA_JVM_EXTRA     extra JVM flags, whitespace separated, appended last
#   JAVA / JAVA_HOME        the java binary to use (must be Java 17)
#   MVN                     the maven binary (default mvn)
#   CASSANDRA_MVN_ARGS      extra Maven arguments, e.g. -Dmaven.repo.local=/path/to/repo
#
# Everything binds to 127.0.0.1 only; JMX is not started at all.
#
# TLS: `start` makes a self-signed certificate for IP 127.0.0.1 in $OMNI_CASSANDRA_HOME/tls
# (keytool, 30 days) and the node accepts TLS and plain connections on the one CQL port
# (client_encryption_options enabled and optional). tls/ca.pem is what a client trusts;
# tls/other-ca.pem is a second certificate the node does not use, for the refusal test.
# A TLS client must present a certificate (require_client_auth): one signed by the test CA
# of tests/fixtures/tls (ca.pem, imported into tls/clients.p12), as tests/fixtures/tls/client.pem
# is. Plain connections need none.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/pom.xml"
PING="$SCRIPT_DIR/cql_ping.py"

WORK="${OMNI_CASSANDRA_HOME:-/tmp/omnistream-cassandra}"
PIDFILE="$WORK/cassandra.pid"
STATEFILE="$WORK/state.env"
CONF_DIR="$WORK/conf"
LOG_DIR="$WORK/logs"
OUT_LOG="$LOG_DIR/stdout.log"      # JVM stdout/stderr (WARN and above, crashes)
SYS_LOG="$LOG_DIR/system.log"      # logback, INFO and above
MAIN_CLASS="org.apache.cassandra.service.CassandraDaemon"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

NATIVE_PORT="${CASSANDRA_PORT:-9042}"
STORAGE_PORT="${CASSANDRA_STORAGE_PORT:-7000}"
HEAP="${CASSANDRA_HEAP:-1G}"
STOP_TIMEOUT="${CASSANDRA_STOP_TIMEOUT:-45}"
CLUSTER_NAME="${CASSANDRA_CLUSTER_NAME:-omnistream-test}"

log() { printf 'cassandra.sh: %s\n' "$*" >&2; }
die() { printf 'cassandra.sh: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------------------
# state

# Prints the pid from the pidfile if that process is alive and is *our*
# CassandraDaemon (guards against a recycled pid); returns 1 otherwise.
# The commit log's sync mode for cassandra.yaml (CASSANDRA_COMMITLOG_SYNC).
commitlog_sync_yaml() {
    case "${CASSANDRA_COMMITLOG_SYNC:-periodic}" in
        periodic) printf 'commitlog_sync: periodic\ncommitlog_sync_period: 10000ms\n' ;;
        batch) printf 'commitlog_sync: batch\n' ;;
        *) die "CASSANDRA_COMMITLOG_SYNC must be periodic or batch, not '${CASSANDRA_COMMITLOG_SYNC}'" ;;
    esac
}

running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$PIDFILE")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmd" == *"$MAIN_CLASS"* && "$cmd" == *"$CONF_DIR/cassandra.yaml"* ]] || return 1
    # a zombie still has /proc/pid but is gone for our purposes
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)" != "Z" ]] || return 1
    echo "$pid"
}

load_state() {
    STATE_DATA_DIR=""
    STATE_DATA_DIR_OWNED=0
    STATE_NATIVE_PORT="$NATIVE_PORT"
    STATE_STORAGE_PORT="$STORAGE_PORT"
    STATE_STARTED_AT=""
    if [[ -f "$STATEFILE" ]]; then
        # shellcheck disable=SC1090
        source "$STATEFILE"
    fi
}

# Remove a data dir left behind by a run this script created and that is no
# longer running (e.g. after a crash or a reboot-less kill -9).
cleanup_owned_data_dir() {
    load_state
    if [[ "$STATE_DATA_DIR_OWNED" == 1 && -n "$STATE_DATA_DIR" && -d "$STATE_DATA_DIR" ]]; then
        case "$STATE_DATA_DIR" in
            */omnistream-cassandra-data.*)
                rm -rf -- "$STATE_DATA_DIR"
                log "removed temp data dir $STATE_DATA_DIR"
                ;;
            *) log "not removing unexpected data dir path $STATE_DATA_DIR" ;;
        esac
    fi
    rm -f "$STATEFILE" "$PIDFILE"
}

with_lock() {
    mkdir -p "$WORK"
    exec 9>"$WORK/.lock"
    if command -v flock >/dev/null 2>&1; then
        flock -w 120 9 || die "could not take the lock $WORK/.lock within 120 s (another start/stop running?)"
    fi
}

# ---------------------------------------------------------------------------
# checks

find_java() {
    if [[ -n "${JAVA:-}" ]]; then
        echo "$JAVA"
    elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        echo "$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        command -v java
    else
        die "java not found (install OpenJDK 17 or set JAVA / JAVA_HOME)"
    fi
}

check_java() {
    local java="$1" spec
    spec="$("$java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}')" \
        || die "could not run $java"
    [[ -n "$spec" ]] || die "could not read the Java version from $java"
    if [[ "$spec" != "17" ]]; then
        die "Java 17 is required for Cassandra 5.0 here, but $java is Java $spec (set JAVA or JAVA_HOME to a JDK 17)"
    fi
}

# 0 if something already listens on / holds 127.0.0.1:$1
port_in_use() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does; TIME_WAIT is fine
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
finally:
    s.close()
sys.exit(1)
PY
}

check_port_free() {
    local port="$1" what="$2"
    if port_in_use "$port"; then
        local who=""
        if command -v ss >/dev/null 2>&1; then
            who="$(ss -Hltnp "sport = :$port" 2>/dev/null | head -3 || true)"
        fi
        die "port 127.0.0.1:$port ($what) is already in use${who:+: $who}. Stop that process or pick another port (CASSANDRA_PORT / CASSANDRA_STORAGE_PORT)."
    fi
}

# ---------------------------------------------------------------------------
# classpath (Maven; cached in $WORK, jars cached in ~/.m2)

cassandra_version() {
    if [[ -n "${CASSANDRA_VERSION:-}" ]]; then
        echo "$CASSANDRA_VERSION"
    else
        sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$POM" | head -1
    fi
}

classpath_valid() {
    local cpf="$1" jar
    [[ -s "$cpf" && "$cpf" -nt "$POM" ]] || return 1
    local IFS=':'
    for jar in $(cat "$cpf"); do
        [[ -f "$jar" ]] || return 1
    done
}

resolve_classpath() {
    local version cpf mvn
    version="$(cassandra_version)"
    [[ -n "$version" ]] || die "could not read cassandra.version from $POM"
    cpf="$WORK/classpath-$version.txt"
    if classpath_valid "$cpf"; then
        echo "$cpf"
        return 0
    fi
    mvn="${MVN:-mvn}"
    command -v "$mvn" >/dev/null 2>&1 || die "maven ($mvn) not found; it is needed once to fetch cassandra-all $version into ~/.m2"
    mkdir -p "$WORK"
    local tmp="$cpf.tmp.$$" mlog="$WORK/maven.log"
    local args=(-B -q -f "$POM" "$DEP_PLUGIN:build-classpath" "-Dcassandra.version=$version"
                "-Dmdep.outputFile=$tmp" -Dmdep.includeScope=runtime)
    if [[ -n "${CASSANDRA_MVN_ARGS:-}" ]]; then
        # shellcheck disable=SC2206
        args+=(${CASSANDRA_MVN_ARGS})
    fi
    log "resolving cassandra-all $version with Maven (offline first; log: $mlog)"
    local t0=$SECONDS
    if ! "$mvn" -o "${args[@]}" >"$mlog" 2>&1; then
        log "not all artifacts are in ~/.m2 yet; downloading from Maven Central"
        if ! "$mvn" "${args[@]}" >>"$mlog" 2>&1; then
            tail -n 30 "$mlog" >&2 || true
            rm -f "$tmp"
            die "maven could not resolve org.apache.cassandra:cassandra-all:$version (see $mlog)"
        fi
    fi
    [[ -s "$tmp" ]] || die "maven wrote an empty classpath (see $mlog)"
    mv -f "$tmp" "$cpf"
    log "classpath resolved in $((SECONDS - t0)) s ($(tr ':' '\n' <"$cpf" | wc -l) jars) -> $cpf"
    echo "$cpf"
}

# ---------------------------------------------------------------------------
# config files

TLS_DIR="$WORK/tls"
TLS_PASS="omnistream-test"

# A self-signed certificate with IP SAN 127.0.0.1 (the driver verifies a node by its address),
# its PEM for clients, and an unrelated one. Made once per work dir. The node trusts client
# certificates from the repository's test CA (tests/fixtures/tls/ca.pem).
CLIENT_CA="$SCRIPT_DIR/../../tests/fixtures/tls/ca.pem"
make_tls() {
    local java="$1" keytool
    keytool="$(dirname "$(readlink -f "$java")")/keytool"
    [[ -x "$keytool" ]] || keytool="$(command -v keytool || true)"
    [[ -n "$keytool" ]] || die "keytool not found beside $java (needed for the node's TLS certificate)"
    mkdir -p "$TLS_DIR"
    local name
    for name in node other; do
        [[ -s "$TLS_DIR/$name.p12" ]] && continue
        "$keytool" -genkeypair -alias "$name" -keyalg RSA -keysize 2048 -validity 30 \
            -dname "CN=omnistream-test-$name" -ext "SAN=ip:127.0.0.1" \
            -keystore "$TLS_DIR/$name.p12" -storetype PKCS12 -storepass "$TLS_PASS" \
            -keypass "$TLS_PASS" >/dev/null 2>&1 || die "keytool could not make $TLS_DIR/$name.p12"
    done
    "$keytool" -exportcert -rfc -alias node -keystore "$TLS_DIR/node.p12" -storepass "$TLS_PASS" \
        >"$TLS_DIR/ca.pem" 2>/dev/null || die "keytool could not export $TLS_DIR/ca.pem"
    "$keytool" -exportcert -rfc -alias other -keystore "$TLS_DIR/other.p12" -storepass "$TLS_PASS" \
        >"$TLS_DIR/other-ca.pem" 2>/dev/null || die "keytool could not export $TLS_DIR/other-ca.pem"
    [[ -s "$CLIENT_CA" ]] || die "no $CLIENT_CA (the CA of the clients' certificates)"
    rm -f "$TLS_DIR/clients.p12"
    "$keytool" -importcert -noprompt -alias clients -file "$CLIENT_CA" \
        -keystore "$TLS_DIR/clients.p12" -storetype PKCS12 -storepass "$TLS_PASS" >/dev/null 2>&1 \
        || die "keytool could not import $CLIENT_CA into $TLS_DIR/clients.p12"
}

write_yaml() {
    local data="$1" yaml="$CONF_DIR/cassandra.yaml"
    commitlog_sync_yaml >/dev/null  # dies here on a bad value, not inside the heredoc
    cat >"$yaml" <<EOF
# Generated by ops/cassandra/cassandra.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Edits are overwritten.
# Minimal single-node test configuration for Apache Cassandra 5.0 (new-style 4.1+ option names).
cluster_name: '$CLUSTER_NAME'
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
auto_bootstrap: false
# Fresh test clusters need no 4.x wire/sstable compatibility (as in conf/cassandra_latest.yaml).
storage_compatibility_mode: NONE

# Loopback only.
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $STORAGE_PORT
native_transport_port: $NATIVE_PORT
start_native_transport: true
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$STORAGE_PORT"
endpoint_snitch: SimpleSnitch

authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
network_authorizer: AllowAllNetworkAuthorizer

data_file_directories:
  - $data/data
commitlog_directory: $data/commitlog
saved_caches_directory: $data/saved_caches
hints_directory: $data/hints
cdc_raw_directory: $data/cdc_raw
cdc_enabled: false

$(commitlog_sync_yaml)
commitlog_segment_size: 32MiB
commitlog_total_space: 512MiB

# Small footprint for a 2-core test machine (heap is $HEAP).
memtable_allocation_type: heap_buffers
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
concurrent_materialized_view_writes: 8
concurrent_compactors: 1
key_cache_size: 16MiB
counter_cache_size: 8MiB
prepared_statements_cache_size: 16MiB
native_transport_max_threads: 32

# TLS on the CQL port, optional: a client may connect with or without it; one that uses it
# must present a certificate from the test CA (mutual TLS).
client_encryption_options:
  enabled: true
  optional: true
  keystore: $TLS_DIR/node.p12
  keystore_password: $TLS_PASS
  store_type: PKCS12
  require_client_auth: true
  truststore: $TLS_DIR/clients.p12
  truststore_password: $TLS_PASS

# Test friendliness: no snapshot on DROP/TRUNCATE, a bit more slack under CI load,
# batch limits as in ScyllaDB's defaults (128 KiB warn / 1 MiB fail).
auto_snapshot: false
read_request_timeout: 10000ms
range_request_timeout: 20000ms
write_request_timeout: 5000ms
counter_write_request_timeout: 10000ms
truncate_request_timeout: 60000ms
request_timeout: 20000ms
batch_size_warn_threshold: 128KiB
batch_size_fail_threshold: 1024KiB
materialized_views_enabled: true
EOF
}

write_logback() {
    cat >"$CONF_DIR/logback.xml" <<EOF
<!-- Generated by ops/cassandra/cassandra.sh. INFO+ to system.log, WARN+ to stdout (stdout.log). -->
<configuration scan="false">
  <appender name="SYSTEMLOG" class="ch.qos.logback.core.FileAppender">
    <file>$SYS_LOG</file>
    <append>true</append>
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %logger{0} - %msg%n</pattern>
    </encoder>
  </appender>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <filter class="ch.qos.logback.classic.filter.ThresholdFilter">
      <level>WARN</level>
    </filter>
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %logger{0} - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="SYSTEMLOG"/>
    <appender-ref ref="STDOUT"/>
  </root>
</configuration>
EOF
}

# ---------------------------------------------------------------------------
# JVM flags

jvm_flags() {
    local data="$1" cpf="$2" jamm
    # Where these come from: Apache Cassandra's own launcher reads conf/jvm-server.options and, on
    # Java 17, conf/jvm17-server.options, then adds cassandra-env.sh / cassandra.in.sh settings.
    # We reproduce those files' active (uncommented) flags as read from github.com/apache/cassandra
    # (conf/jvm-server.options @7fb5e120, conf/jvm17-server.options @76a68093 and @07ad4a29).
    # See README.md for the differences.
    #
    # --- conf/jvm-server.options, GENERAL JVM SETTINGS.
    #     Left out on purpose: -XX:+AlwaysPreTouch (slower start), -XX:+UseNUMA (one socket here).
    #     -Dchronicle.analytics.disable=true is in the 5.0.x command lines (Chronicle's phone-home;
    #     there is no network here anyway).
    JVM=(
        -ea
        -da:net.openhft...
        -XX:+UseThreadPriorities
        -XX:+HeapDumpOnOutOfMemoryError "-XX:HeapDumpPath=$WORK"
        -XX:+ExitOnOutOfMemoryError   # launcher's choice; Cassandra's StartupChecks warns without one
        -Xss256k
        -XX:+UseTLAB
        -XX:+ResizeTLAB
        -XX:+PerfDisableSharedMem
        -Djava.net.preferIPv4Stack=true
        -Dchronicle.analytics.disable=true
    )
    # --- conf/jvm17-server.options: G1 settings, JPMS exports/opens, Netty properties, verbatim.
    #     (--add-opens java.base/java.nio is in the newer of the two revisions; harmless on older.)
    JVM+=(
        -XX:+UseG1GC
        -XX:+ParallelRefProcEnabled
        -XX:MaxTenuringThreshold=1
        -XX:G1HeapRegionSize=16m
        -XX:G1RSetUpdatingPauseTimePercent=5
        -XX:MaxGCPauseMillis=300
        -XX:InitiatingHeapOccupancyPercent=70
        -Djdk.attach.allowAttachSelf=true
        --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
        --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
        --add-exports java.sql/java.sql=ALL-UNNAMED
        --add-exports java.base/java.lang.ref=ALL-UNNAMED
        --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
        --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
        --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
        --add-opens java.base/java.lang.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
        --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
        --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
        --add-opens java.base/jdk.internal.math=ALL-UNNAMED
        --add-opens java.base/jdk.internal.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
        --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
        --add-opens java.base/sun.nio.ch=ALL-UNNAMED
        --add-opens java.base/java.io=ALL-UNNAMED
        --add-opens java.base/java.lang.reflect=ALL-UNNAMED
        --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
        --add-opens java.base/java.lang=ALL-UNNAMED
        --add-opens java.base/java.util=ALL-UNNAMED
        --add-opens java.base/java.nio=ALL-UNNAMED
        -Dio.netty.tryReflectionSetAccessible=true
        -Dio.netty.allocator.useCacheForAllThreads=true
        -Dio.netty.allocator.maxOrder=11
    )
    # --- conf/cassandra-env.sh / bin/cassandra.in.sh: heap, jamm agent, no JMX port
    #     (cassandra.jmx.local.port / jmx.remote.port are deliberately not set, so no JMX listener).
    JVM+=("-Xms$HEAP" "-Xmx$HEAP")
    jamm="$(tr ':' '\n' <"$cpf" | grep -m1 '/jamm-[0-9.]*\.jar$' || true)"
    [[ -n "$jamm" ]] && JVM+=("-javaagent:$jamm")
    # --- this launcher: config locations and single-node fast-start switches
    JVM+=(
        "-Dcassandra.config=file://$CONF_DIR/cassandra.yaml"
        "-Dcassandra.storagedir=$data"
        "-Dcassandra.logdir=$LOG_DIR"
        "-Dcassandra.triggers_dir=$WORK/triggers"
        "-Dlogback.configurationFile=file://$CONF_DIR/logback.xml"
        -Dcassandra-foreground=yes
        "-Dcassandra-pidfile=$WORK/cassandra.daemon.pid"
        -Dcassandra.skip_wait_for_gossip_to_settle=0
        -Dcassandra.ring_delay_ms=1000
        -Dcassandra.superuser_setup_delay_ms=0
    )
    # unsafesystem skips the commit log for the system keyspaces, the schema included: a
    # quicker start, but a node killed with SIGKILL comes back without the keyspaces created
    # since; the durable (batch) mode keeps them
    [[ "${CASSANDRA_COMMITLOG_SYNC:-periodic}" == batch ]] || JVM+=(-Dcassandra.unsafesystem=true)
    if [[ -n "${CASSANDRA_JVM_EXTRA:-}" ]]; then
        # shellcheck disable=SC2206
        JVM+=(${CASSANDRA_JVM_EXTRA})
    fi
}

# ---------------------------------------------------------------------------
# commands

cmd_start() {
    local req_data="${1:-${CASSANDRA_DATA_DIR:-}}"
    with_lock
    local pid
    if pid="$(running_pid)"; then
        load_state
        echo "cassandra already running (pid $pid, cql 127.0.0.1:$STATE_NATIVE_PORT, data $STATE_DATA_DIR)"
        if [[ -n "$req_data" && "$(realpath -m "$req_data")" != "$STATE_DATA_DIR" ]]; then
            log "WARNING: requested data dir $req_data differs from the running node's; stop it first to switch"
        fi
        return 0
    fi
    cleanup_owned_data_dir   # stale state from a crashed run

    local java
    java="$(find_java)"
    check_java "$java"
    command -v python3 >/dev/null 2>&1 || die "python3 is required (port checks, cql_ping.py)"
    [[ "$NATIVE_PORT" =~ ^[0-9]+$ && "$STORAGE_PORT" =~ ^[0-9]+$ ]] || die "ports must be numbers"
    [[ "$NATIVE_PORT" != "$STORAGE_PORT" ]] || die "CASSANDRA_PORT and CASSANDRA_STORAGE_PORT must differ"
    [[ "$CLUSTER_NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || die "CASSANDRA_CLUSTER_NAME may only contain letters, digits, '_', '.', '-'"
    [[ "$HEAP" =~ ^[0-9]+[kKmMgG]?$ ]] || die "CASSANDRA_HEAP must look like 1G or 768M (got '$HEAP')"
    check_port_free "$NATIVE_PORT" "CQL native transport"
    check_port_free "$STORAGE_PORT" "storage"

    local cpf
    cpf="$(resolve_classpath)"

    local data owned
    if [[ -n "$req_data" ]]; then
        mkdir -p "$req_data" || die "cannot create data dir $req_data"
        data="$(realpath "$req_data")"
        owned=0
    else
        data="$(mktemp -d "${TMPDIR:-/tmp}/omnistream-cassandra-data.XXXXXX")"
        owned=1
    fi
    mkdir -p "$data"/{data,commitlog,saved_caches,hints,cdc_raw} "$CONF_DIR" "$LOG_DIR" "$WORK/triggers"
    {
        printf 'STATE_DATA_DIR=%q\n' "$data"
        printf 'STATE_DATA_DIR_OWNED=%q\n' "$owned"
        printf 'STATE_NATIVE_PORT=%q\n' "$NATIVE_PORT"
        printf 'STATE_STORAGE_PORT=%q\n' "$STORAGE_PORT"
    } >"$STATEFILE"

    make_tls "$java"
    write_yaml "$data"
    write_logback
    jvm_flags "$data" "$cpf"
    # Keep the exact command line for debugging.
    printf '%q ' "$java" "${JVM[@]}" -cp "<$cpf>" "$MAIN_CLASS" >"$WORK/java-command.txt"
    echo >>"$WORK/java-command.txt"

    # CassandraDaemon always calls mlockall(). As root (CAP_IPC_LOCK) that succeeds and faults in
    # and pins the whole heap: ~1.4 GB resident and ~4-5 s of a 2-core machine's start time. Drop
    # CAP_IPC_LOCK for the JVM so mlockall fails under the normal RLIMIT_MEMLOCK and Cassandra just
    # logs a warning, as for any non-root user. CASSANDRA_MLOCKALL=1 keeps the default behaviour.
    local prefix=()
    if [[ "$(id -u)" == 0 && "${CASSANDRA_MLOCKALL:-0}" != 1 ]] && command -v setpriv >/dev/null 2>&1 \
        && setpriv --bounding-set -ipc_lock --inh-caps -ipc_lock -- true 2>/dev/null; then
        prefix=(setpriv --bounding-set -ipc_lock --inh-caps -ipc_lock --)
    fi

    # keep the previous run's logs one generation back
    [[ -f "$SYS_LOG" ]] && mv -f "$SYS_LOG" "$SYS_LOG.prev"
    [[ -f "$OUT_LOG" ]] && mv -f "$OUT_LOG" "$OUT_LOG.prev"
    : >"$OUT_LOG"
    local cp
    cp="$(cat "$cpf")"
    (
        exec 9>&-   # do not let the JVM inherit the start/stop lock
        cd "$WORK"
        # nohup and setpriv exec in place, so $! below is the JVM's own pid
        exec nohup "${prefix[@]}" "$java" "${JVM[@]}" -cp "$cp" "$MAIN_CLASS" </dev/null >>"$OUT_LOG" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$PIDFILE"
    echo "STATE_STARTED_AT=$(date +%s)" >>"$STATEFILE"

    # Catch immediate failures (bad flag, missing class, bind error) before returning.
    local i
    for i in 1 2 3 4; do
        sleep 0.5
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$OUT_LOG" >&2 || true
            [[ -f "$SYS_LOG" ]] && grep -E 'ERROR|Exception' "$SYS_LOG" | tail -n 20 >&2 || true
            cleanup_owned_data_dir
            die "java exited right after launch (see $OUT_LOG and $SYS_LOG)"
        fi
    done
    echo "cassandra $(cassandra_version) starting (pid $pid, cql 127.0.0.1:$NATIVE_PORT, data $data, logs $LOG_DIR)"
}

cmd_wait() {
    local timeout="${1:-${CASSANDRA_WAIT_TIMEOUT:-240}}"
    [[ "$timeout" =~ ^[0-9]+$ ]] || die "wait: TIMEOUT_S must be a whole number of seconds"
    load_state
    local port="$STATE_NATIVE_PORT" start=$SECONDS pid=""
    [[ -f "$STATEFILE" ]] || port="$NATIVE_PORT"
    if ! pid="$(running_pid)"; then
        pid=""
        if [[ -f "$PIDFILE" ]]; then
            tail -n 40 "$OUT_LOG" >&2 2>/dev/null || true
            die "cassandra is not running any more (pid $(cat "$PIDFILE") gone; see $OUT_LOG and $SYS_LOG)"
        fi
        # Nothing of ours is starting: succeed only if some node already answers.
        if python3 "$PING" --port "$port" --timeout 3 --quiet; then
            echo "cql ready on 127.0.0.1:$port (node not started by this script)"
            return 0
        fi
        die "no node is running (no $PIDFILE) and nothing answers CQL on 127.0.0.1:$port; run '$0 start' first"
    fi
    while true; do
        if python3 "$PING" --port "$port" --timeout 3 --quiet; then
            local since=""
            [[ -n "$STATE_STARTED_AT" ]] && since=", $(( $(date +%s) - STATE_STARTED_AT )) s since launch"
            echo "cql ready on 127.0.0.1:$port after $((SECONDS - start)) s of waiting$since"
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$OUT_LOG" >&2 2>/dev/null || true
            [[ -f "$SYS_LOG" ]] && grep -E '^(ERROR|WARN)' "$SYS_LOG" | tail -n 20 >&2 || true
            die "cassandra (pid $pid) exited while starting (see $OUT_LOG and $SYS_LOG)"
        fi
        if (( SECONDS - start >= timeout )); then
            [[ -f "$SYS_LOG" ]] && tail -n 20 "$SYS_LOG" >&2 || true
            die "cql did not answer on 127.0.0.1:$port within $timeout s (node still running; see $SYS_LOG)"
        fi
        sleep 1
    done
}

cmd_status() {
    load_state
    local pid
    if pid="$(running_pid)"; then
        local cql="not answering yet"
        local v
        if v="$(python3 "$PING" --port "$STATE_NATIVE_PORT" --timeout 3 2>/dev/null)"; then
            cql="ready, release_version $v"
        fi
        echo "running (pid $pid, cql 127.0.0.1:$STATE_NATIVE_PORT $cql, data $STATE_DATA_DIR)"
        return 0
    fi
    echo "not running"
    return 3
}

cmd_stop() {
    with_lock
    local pid
    if ! pid="$(running_pid)"; then
        echo "not running"
        cleanup_owned_data_dir
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local start=$SECONDS
    while kill -0 "$pid" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]]; do
        if (( SECONDS - start >= STOP_TIMEOUT )); then
            log "pid $pid still alive after ${STOP_TIMEOUT} s of SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            local j
            for j in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            break
        fi
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]]; then
        die "could not stop pid $pid"
    fi
    # The JVM was re-parented to init when `start` returned; give init a moment to reap the
    # zombie so that no java entry is left in the process table when we return.
    local k
    for k in $(seq 1 25); do
        [[ -e "/proc/$pid" ]] || break
        sleep 0.2
    done
    echo "stopped (pid $pid, $((SECONDS - start)) s)"
    cleanup_owned_data_dir
    rm -f "$WORK/cassandra.daemon.pid"
}

cmd_classpath() {
    mkdir -p "$WORK"
    resolve_classpath
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        start) [[ $# -le 1 ]] || usage; cmd_start "$@" ;;
        stop) [[ $# -eq 0 ]] || usage; cmd_stop ;;
        status) [[ $# -eq 0 ]] || usage; cmd_status ;;
        wait) [[ $# -le 1 ]] || usage; cmd_wait "$@" ;;
        classpath) [[ $# -eq 0 ]] || usage; cmd_classpath ;;
        -h|--help|help) usage ;;
        *) usage ;;
    esac
}

main "$@"
