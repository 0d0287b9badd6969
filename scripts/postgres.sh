#!/usr/bin/env bash
# Finds a PostgreSQL for the tests and exports TASKQ_TEST_PG (an admin URL on which
# the tests create and drop their own databases). In order:
#   1. TASKQ_TEST_PG, or DATABASE_URL when it is a postgres:// URL;
#   2. 127.0.0.1:5432 when it answers;
#   3. a throwaway server started from the PostgreSQL binaries on PATH (or in
#      /usr/lib/postgresql/*/bin), stopped again when the calling shell exits.
# Without any of these it stops with a message: the suite never skips PostgreSQL.
# Source it: `source scripts/postgres.sh`.

source "$(dirname "${BASH_SOURCE[0]}")/postgres-bin.sh"

pg_answers() {
    if command -v psql >/dev/null 2>&1; then
        psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
    else
        local rest=${1#*@}; local hostport=${rest%%/*}
        (exec 3<>"/dev/tcp/${hostport%%:*}/${hostport##*:}") 2>/dev/null
    fi
}

start_throwaway_pg() {
    start_pg_server taskq-pg 300 || return 1
    trap stop_pg_server EXIT
    export TASKQ_TEST_PG=$PG_SERVER_URL
    echo "postgres.sh: started a throwaway PostgreSQL at $PG_SERVER_URL ($PG_SERVER_DIR)"
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
