#!/usr/bin/env bash
# Finds a PostgreSQL for the tests and exports TASKQ_TEST_PG (an admin URL on which
# the tests create and drop their own databases). In order:
#   1. TASKQ_TEST_PG, or DATABASE_URL when it is a postgres:// URL;
#   2. 127.0.0.1:5432 when it answers;
#   3. a throwaway server started from the PostgreSQL binaries on PATH (or in
#      /usr/lib/postgresql/*/bin), stopped again when the calling shell exits.
# Without any of these it stops with a message: the suite never skips PostgreSQL.
# Source it: `source scripts/postgres.sh`.

source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

pg_answers() {
    if command -v psql >/dev/null 2>&1; then
        psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
    else
        local rest=${1#*@}; local hostport=${rest%%/*}
        (exec 3<>"/dev/tcp/${hostport%%:*}/${hostport##*:}") 2>/dev/null
    fi
}

find_pg_bin() {
    local dir
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return 0
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
    done
    return 1
}

start_throwaway_pg() {
    local bin dir port runas=()
    bin=$(find_pg_bin) || return 1
    dir=$(mktemp -d /tmp/taskq-pg.XXXXXX)
    port=$(free_port)
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system postgres
        chown postgres "$dir"
        runas=(runuser -u postgres --)
    fi
    "${runas[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
    "${runas[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
    trap '"${runas[@]}" "'"$bin"'/pg_ctl" -D "'"$dir"'/data" -m immediate stop >/dev/null 2>&1; rm -rf "'"$dir"'"' EXIT
    export TASKQ_TEST_PG="postgres://postgres@127.0.0.1:$port/postgres"
    echo "postgres.sh: started a throwaway PostgreSQL on port $port ($dir)"
}

if [ -z "${TASKQ_TEST_PG:-}" ] && [[ "${DATABASE_URL:-}" == postgres* ]]; then
    export TASKQ_TEST_PG="$DATABASE_URL"
fi
if [ -n "${TASKQ_TEST_PG:-}" ]; then
    pg_answers "$TASKQ_TEST_PG" || { echo "postgres.sh: TASKQ_TEST_PG=$TASKQ_TEST_PG does not answer" >&2; exit 1; }
elif pg_answers "postgres://postgres@127.0.0.1:5432/postgres"; then
    export TASKQ_TEST_PG="postgres://postgres@127.0.0.1:5432/postgres"
elif ! start_throwaway_pg; then
    cat >&2 <<'MSG'
postgres.sh: no PostgreSQL for the tests. Either
  - set TASKQ_TEST_PG (or DATABASE_URL) to a postgres:// URL of a role that may CREATE DATABASE,
  - run PostgreSQL on 127.0.0.1:5432 with trust auth for the user postgres, or
  - install the PostgreSQL server binaries (initdb, pg_ctl) so a throwaway server can be started.
MSG
    exit 1
fi
echo "postgres.sh: tests use $TASKQ_TEST_PG"
