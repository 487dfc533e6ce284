#!/usr/bin/env bash
# Usage: scripts/with-postgres.sh CMD [ARGS...]
#
# Runs CMD against a throwaway PostgreSQL server so the test suite (and the
# benchmarks) can exercise the real database without any pre-existing setup.
# CMD sees INBOXDESK_TEST_DATABASE_URL pointing at an empty database
# `inboxdesk_test`. The server and all its files are removed afterwards, even
# when CMD fails or the script is interrupted; the exit code is CMD's.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

log() { echo "with-postgres: $*" >&2; }
die() { log "$*"; exit 1; }

# --- locate the server binaries ----------------------------------------------

# Debian does not put initdb/pg_ctl on PATH (only its pg_wrapper scripts), so
# fall back to the newest versioned directory it installs them into.
find_pg_bin() {
    local initdb pg_ctl dir
    initdb=$(command -v initdb || true)
    pg_ctl=$(command -v pg_ctl || true)
    if [[ -n $initdb && -n $pg_ctl ]]; then
        PG_BINDIR=$(dirname "$(readlink -f "$initdb")")
        INITDB=$initdb
        PG_CTL=$pg_ctl
        return 0
    fi
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]]; then
        PG_BINDIR=$dir
        INITDB=$dir/initdb
        PG_CTL=$dir/pg_ctl
        return 0
    fi
    return 1
}

if ! find_pg_bin; then
    # CI machines start bare; installing is only sensible (and possible) as root.
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "PostgreSQL server binaries not found; installing Debian's postgresql package"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
    find_pg_bin || die "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package or put them on PATH"
fi

# Prefer the psql matching the server, then whatever is on PATH.
if [[ -x $PG_BINDIR/psql ]]; then
    PSQL=$PG_BINDIR/psql
elif command -v psql >/dev/null 2>&1; then
    PSQL=$(command -v psql)
elif [[ -x /usr/bin/psql ]]; then
    PSQL=/usr/bin/psql
else
    die "psql not found; install Debian's postgresql-client package or put it on PATH"
fi

# --- decide which user owns the server ---------------------------------------

# PostgreSQL refuses to run as root, so as root we delegate to an unprivileged
# account; otherwise the invoking user runs it.
PG_USER=""
if [[ $EUID -eq 0 ]]; then
    if id postgres >/dev/null 2>&1; then
        PG_USER=postgres
    else
        PG_USER=inboxdesk-pg
        if ! id "$PG_USER" >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
        fi
    fi
fi

# Runs a command as PG_USER from inside the temp dir (the caller's cwd may not
# be readable by that user, which makes initdb/postgres complain).
as_pg() {
    if [[ -z $PG_USER ]]; then
        (cd "$TMP" && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd "$TMP" && runuser -u "$PG_USER" -- "$@")
    else
        local quoted
        printf -v quoted '%q ' "$@"
        (cd "$TMP" && su "$PG_USER" -s /bin/sh -c "$quoted")
    fi
}

# --- temp dir and cleanup ----------------------------------------------------

# As root, TMPDIR may point somewhere the server user cannot traverse, so use
# /tmp (world-traversable) in that case.
if [[ -n $PG_USER ]]; then
    TMP=$(mktemp -d /tmp/inboxdesk-pg.XXXXXX)
    chown "$PG_USER" "$TMP"
else
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/inboxdesk-pg.XXXXXX")
fi
DATA=$TMP/data
SERVER_LOG=$TMP/log
STARTED=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ $STARTED -eq 1 ]]; then
        # Fall back to immediate shutdown so a wedged server can't leak.
        as_pg "$PG_CTL" -D "$DATA" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || as_pg "$PG_CTL" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 \
            || log "warning: failed to stop the server in $TMP"
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
# Route signals through exit so the EXIT trap runs with a conventional code.
trap 'exit 130' INT
trap 'exit 143' TERM

# --- initdb ------------------------------------------------------------------

initdb_with() {
    as_pg "$INITDB" -D "$DATA" -U postgres --auth=trust -E UTF8 "$@" >"$TMP/initdb.log" 2>&1
}
# C.UTF-8 keeps sorting deterministic; minimal systems may lack it.
if ! initdb_with --locale=C.UTF-8; then
    rm -rf "$DATA"
    if ! initdb_with --no-locale; then
        log "initdb failed:"
        cat "$TMP/initdb.log" >&2
        exit 1
    fi
fi
chmod 700 "$DATA"

# --- start -------------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The port is only reserved until the probe socket closes, so another process
# can grab it before the server binds; retry with a fresh port a few times.
for attempt in 1 2 3; do
    PORT=$(free_port)
    if as_pg "$PG_CTL" -D "$DATA" -l "$SERVER_LOG" -w -t 60 \
        -o "-h 127.0.0.1 -p $PORT -k $TMP -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null 2>&1; then
        STARTED=1
        break
    fi
    # A timed-out start may still leave a postmaster running.
    as_pg "$PG_CTL" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    if [[ $attempt -eq 3 ]]; then
        log "PostgreSQL failed to start; server log:"
        cat "$SERVER_LOG" >&2 || true
        exit 1
    fi
done

# --- database ----------------------------------------------------------------

# Keep the caller's libpq environment from redirecting our admin connection.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS

"$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
    -c 'CREATE DATABASE inboxdesk_test' >/dev/null \
    || die "could not create database inboxdesk_test"
VERSION=$("$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atq -c 'SHOW server_version')

log "PostgreSQL $VERSION on 127.0.0.1:$PORT (data in $TMP)"

export INBOXDESK_TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/inboxdesk_test"

# --- run ---------------------------------------------------------------------

rc=0
"$@" || rc=$?
exit "$rc"
