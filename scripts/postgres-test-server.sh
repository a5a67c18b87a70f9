#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the test suite, so that `make test` and
# .ci/run exercise the Postgres code against a real server instead of skipping it.
#
#   scripts/postgres-test-server.sh start   # install if missing, init, start (or reuse); prints the URL
#   scripts/postgres-test-server.sh stop    # fast shutdown, if running
#   scripts/postgres-test-server.sh url     # prints the URL
#
# Only the URL goes to stdout (callers capture it with $(...)); progress goes to stderr.
# Environment: R3MEM_PG_DIR (cluster dir, default /tmp/r3mem-postgres-$UID; every directory
# above it must be traversable by the server's user) and R3MEM_PG_PORT (default 54329).
set -euo pipefail

PORT="${R3MEM_PG_PORT:-54329}"
DATA="${R3MEM_PG_DIR:-/tmp/r3mem-postgres-$UID}"
DB=r3mem_test
URL="postgresql://postgres@127.0.0.1:${PORT}/${DB}"

log() { echo "postgres-test-server: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "R3MEM_PG_PORT must be a number, got '$PORT'"
# Absolute and canonical, so it survives the `cd /` below and matches the server's cwd.
DATA="$(realpath -m -- "$DATA")"
# The unix socket lives in the data dir (not /var/run, which may not exist or be writable);
# a socket path is limited to 107 bytes, so the data dir path must stay short.
(( ${#DATA} + 20 < 107 )) || die "R3MEM_PG_DIR is too long for a unix socket path: $DATA"

# The server's user: initdb and postgres refuse to run as root, so as root they run as the
# `postgres` system user; as anyone else they run as that user, who then owns the data dir.
if (( EUID == 0 )); then
    PGUSER_OS=postgres
    as_pg() { runuser -u postgres -- "$@"; }
else
    PGUSER_OS="$(id -un)"
    as_pg() { "$@"; }
fi
# The server's user may not be able to enter the caller's working directory.
cd /

# Directory of initdb/pg_ctl: PATH first, then Debian's versioned dirs (newest major wins).
find_bindir() {
    local d
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        d="$(dirname "$(readlink -f "$(command -v initdb)")")"
        [[ -x "$d/pg_ctl" && -x "$d/postgres" ]] && { echo "$d"; return 0; }
    fi
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] && { echo "$d"; return 0; }
    return 1
}

# A fresh CI machine may lack PostgreSQL: install Debian's package, quietly, output to stderr.
ensure_installed() {
    BINDIR="$(find_bindir)" && return 0
    log "PostgreSQL not found; installing Debian's postgresql package"
    local sudo=()
    if (( EUID != 0 )); then
        command -v sudo >/dev/null 2>&1 || die "PostgreSQL is missing and installing it needs root"
        sudo=(sudo -n)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends postgresql >&2
    BINDIR="$(find_bindir)" || die "postgresql installed but initdb/pg_ctl still not found"
    # The package creates and may start a default cluster on localhost:5432 (IPv6 included);
    # the tests do not use it, so stop it rather than leave it listening.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        local ver name status
        while read -r ver name _ status _; do
            [[ "$status" == online* ]] || continue
            log "stopping the package's default cluster $ver/$name"
            "${sudo[@]}" pg_ctlcluster "$ver" "$name" stop >&2 || true
        done < <(pg_lsclusters -h 2>/dev/null || true)
    fi
}

# The Debian package creates the `postgres` user; binaries from elsewhere may not have.
ensure_user() {
    (( EUID == 0 )) || return 0
    id -u postgres >/dev/null 2>&1 && return 0
    log "creating system user postgres"
    useradd --system --user-group --home-dir "$DATA" --no-create-home \
        --shell /usr/sbin/nologin postgres
}

# Field N of postmaster.pid (1 pid, 4 port, 8 status), empty if there is none.
pidfile_field() { sed -n "${1}p" "$DATA/postmaster.pid" 2>/dev/null || true; }

# 0 if postmaster.pid names a live postgres whose working directory is this data dir.
# Checking the process, not just the pid, catches a stale pid file (kill -9, reboot)
# whose pid now belongs to some other process.
ours_running() {
    local pid comm
    pid="$(pidfile_field 1)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == postgres || "$comm" == postmaster ]] || return 1
    [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$DATA" ]]
}

ready() { "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d postgres -U postgres -t 2; }

psql_pg() { "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }

ensure_db() {
    local have
    have="$(psql_pg -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")"
    if [[ "$have" != 1 ]]; then
        log "creating database $DB"
        psql_pg -d postgres -c "CREATE DATABASE $DB" >&2
    fi
}

init_cluster() {
    mkdir -p "$DATA"
    chmod 700 "$DATA"
    (( EUID == 0 )) && chown postgres:postgres "$DATA"
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        log "initialising cluster in $DATA"
        # trust auth: acceptable only because the server listens on 127.0.0.1 and a socket
        # in its own 0700 dir, and holds nothing but disposable test data.
        as_pg "$BINDIR/initdb" -D "$DATA" --auth=trust -U postgres -E UTF8 --locale=C >/dev/null
    fi
    local want have
    want="$("$BINDIR/postgres" --version | awk '{ split($3, v, "."); print v[1] }')"
    have="$(cat "$DATA/PG_VERSION")"
    [[ "$want" == "$have" ]] ||
        die "$DATA holds a PostgreSQL $have cluster but the binaries are $want; remove the dir"
    # Settings live in a file of our own, rewritten on each start so the port can change.
    grep -q "^include_if_exists 'r3mem-test.conf'" "$DATA/postgresql.conf" ||
        echo "include_if_exists 'r3mem-test.conf'" | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
}

write_conf() {
    local sockdir=${DATA//\'/\'\'}
    # listen on loopback only; no durability (test data is disposable, and it is faster).
    as_pg tee "$DATA/r3mem-test.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$sockdir'
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
}

start() {
    ensure_installed
    ensure_user
    init_cluster
    if ours_running; then
        if [[ "$(pidfile_field 4)" == "$PORT" ]]; then
            # Reuse; wait if it is still starting up (another caller may have just started it).
            local i
            for i in $(seq 60); do ready && break; sleep 0.5; done
            ready || die "server in $DATA is running but not accepting connections; see $DATA/server.log"
            ensure_db
            echo "$URL"
            return 0
        fi
        log "server in $DATA runs on port $(pidfile_field 4), restarting on $PORT"
        as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2
    elif [[ -e "$DATA/postmaster.pid" ]]; then
        # Left by a killed server or a reboot: remove it and its socket lock files, or
        # postgres may refuse to start if their pid now belongs to another process.
        log "removing stale postmaster.pid"
        rm -f "$DATA/postmaster.pid" "$DATA"/.s.PGSQL.*.lock
    fi
    write_conf
    log "starting server on 127.0.0.1:$PORT (log: $DATA/server.log)"
    if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start >&2; then
        tail -n 20 "$DATA/server.log" >&2 || true
        die "server failed to start"
    fi
    ensure_db
    echo "$URL"
}

stop() {
    if ours_running; then
        ensure_installed
        as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2
    else
        log "no server running in $DATA"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "$URL" ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
