#!/usr/bin/env bash
# Starts PostgreSQL servers of a script's own, from the binaries on the machine.
# Source it.
#
#   find_pg_bin                  prints the directory of initdb and pg_ctl (PATH, then
#                                /usr/lib/postgresql/*/bin)
#   start_pg_server NAME MAXCONN initialises and starts a server in a new directory
#                                /tmp/NAME.XXXXXX, as the user postgres when run as
#                                root; sets PG_SERVER_URL (an admin URL), PG_SERVER_DIR
#                                (data in $PG_SERVER_DIR/data) and PG_SERVER_BIN
#   stop_pg_server               stops that server and removes its directory

source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

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

pg_server_runas=()

start_pg_server() {
    local port
    PG_SERVER_BIN=$(find_pg_bin) || return 1
    PG_SERVER_DIR=$(mktemp -d "/tmp/$1.XXXXXX")
    port=$(free_port)
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system postgres
        chown postgres "$PG_SERVER_DIR"
        pg_server_runas=(runuser -u postgres --)
    fi
    "${pg_server_runas[@]}" "$PG_SERVER_BIN/initdb" -D "$PG_SERVER_DIR/data" -U postgres --auth=trust >/dev/null
    "${pg_server_runas[@]}" "$PG_SERVER_BIN/pg_ctl" -D "$PG_SERVER_DIR/data" -l "$PG_SERVER_DIR/log" -w \
        -o "-p $port -k $PG_SERVER_DIR -c listen_addresses=127.0.0.1 -c max_connections=$2" start >/dev/null
    PG_SERVER_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_pg_server() {
    "${pg_server_runas[@]}" "$PG_SERVER_BIN/pg_ctl" -D "$PG_SERVER_DIR/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$PG_SERVER_DIR"
}
