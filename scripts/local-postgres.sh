#!/usr/bin/env bash
# A PostgreSQL server on this machine, listening on 127.0.0.1 only, for sweeps and the integration
# tests. Installs Debian's postgresql when it is missing (needs root and apt).
#
#   bash scripts/local-postgres.sh start     # prints the URL to use as sweep.storage=...
#   bash scripts/local-postgres.sh url | status | stop
#
# Settings (environment): TRPO_PG_PORT (55432), TRPO_PG_DATA (/var/tmp/trpo_exp-postgres),
# TRPO_PG_PASSWORD (trpo). The role "trpo" owns the database "optuna" and may create databases.
set -euo pipefail
PORT="${TRPO_PG_PORT:-55432}"
DATA="${TRPO_PG_DATA:-/var/tmp/trpo_exp-postgres}"
PASSWORD="${TRPO_PG_PASSWORD:-trpo}"
URL="postgresql://trpo:${PASSWORD}@127.0.0.1:${PORT}/optuna"

die() { echo "local-postgres: error: $*" >&2; exit 1; }

bin_dir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$dir" ]; then
        [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
        echo "local-postgres: installing Debian's postgresql ..." >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
            || die "apt-get install postgresql failed"
        dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    echo "$dir"
}

# PostgreSQL refuses to run as root: run its programs as the postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start() {
    local bin; bin=$(bin_dir)
    if [ ! -f "$DATA/PG_VERSION" ]; then
        mkdir -p "$DATA"
        [ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA"
        chmod 700 "$DATA"
        as_pg "$bin/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C --auth-local=trust --auth-host=scram-sha-256 >/dev/null \
            || die "initdb failed in $DATA"
    fi
    if ! as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA" start >/dev/null \
            || die "the server did not start (see $DATA/server.log)"
    fi
    local psql=("$bin/psql" -h "$DATA" -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
    if [ "$(as_pg "${psql[@]}" -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname='trpo'")" != 1 ]; then
        as_pg "${psql[@]}" -d postgres -c "CREATE ROLE trpo LOGIN CREATEDB PASSWORD '$PASSWORD'" >/dev/null
    fi
    if [ "$(as_pg "${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname='optuna'")" != 1 ]; then
        as_pg "${psql[@]}" -d postgres -c "CREATE DATABASE optuna OWNER trpo" >/dev/null
    fi
    echo "$URL"
}

stop() {
    local bin; bin=$(bin_dir)
    if as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    fi
    echo "local-postgres: stopped"
}

status() {
    local bin; bin=$(bin_dir)
    if as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then echo "running: $URL"; else echo "stopped"; exit 3; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    url) echo "$URL" ;;
    *) echo "usage: bash scripts/local-postgres.sh start|stop|status|url" >&2; exit 2 ;;
esac
