#!/usr/bin/env bash
# WAL bytes per task of a taskq binary: N no-op tasks inserted with their history
# (1,000 per statement, as create_tasks writes them), then drained by one worker
# process with its defaults (5 executors). The WAL is counted from the server's insert
# position before and after each phase, in a database of its own, so only this
# workload is counted while nothing else writes to the server. Prints one JSON line.
#
#   bench/wal-per-task.sh BINARY [N]
#
# DATABASE_URL (or the PostgreSQL that scripts/postgres.sh finds) must allow creating
# databases. A count, not a rate: it holds on any machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: bench/wal-per-task.sh BINARY [N]}
n=${2:-20000}

if [[ "${DATABASE_URL:-}" != postgres* ]]; then
    unset DATABASE_URL
fi
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
admin=${DATABASE_URL:-$TASKQ_TEST_PG}
db=taskq_wal_$$
url="${admin%/*}/$db"
psql_() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
psql_ "$admin" -c "CREATE DATABASE $db" >/dev/null
worker=
cleanup() {
    [[ -n $worker ]] && kill "$worker" 2>/dev/null && wait "$worker" 2>/dev/null
    psql_ "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}
trap cleanup EXIT
DATABASE_URL=$url RUST_LOG=warn "$bin" migrate >/dev/null
lsn() { psql_ "$url" -c "CHECKPOINT" -c "SELECT pg_current_wal_insert_lsn()" | tail -1; }
bytes() { psql_ "$url" -c "SELECT pg_wal_lsn_diff('$2', '$1')::int8"; }

start=$(lsn)
for ((done = 0; done < n; done += 1000)); do
    size=$((n - done < 1000 ? n - done : 1000))
    psql_ "$url" -c "
        WITH inserted AS (
            INSERT INTO tasks (id, name, type, payload)
            SELECT gen_random_uuid(), 'wal', 'noop', '{}' FROM generate_series(1, $size)
            RETURNING id, created_at
        )
        INSERT INTO task_history (task_id, event_type, status, retry_count, created_at)
        SELECT id, 'task_queued', 'queued', 0, created_at FROM inserted" >/dev/null
done
enqueued=$(lsn)

DATABASE_URL=$url ROLE=worker SERVER_PORT=0 WORKER_ID=wal RUST_LOG=warn "$bin" >/dev/null 2>&1 &
worker=$!
until [[ $(psql_ "$url" -c "SELECT count(*) FROM tasks WHERE status = 'succeeded'") -ge $n ]]; do
    kill -0 "$worker" || { echo "the worker exited" >&2; exit 1; }
    sleep 0.2
done
drained=$(lsn)

enqueue=$(bytes "$start" "$enqueued")
drain=$(bytes "$enqueued" "$drained")
echo "{\"tasks\": $n, \"enqueue_wal_bytes_per_task\": $((enqueue / n)), \"drain_wal_bytes_per_task\": $((drain / n))}"
