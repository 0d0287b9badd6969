#!/usr/bin/env bash
# The `scale` bound in raw SQL: does the database give more drain throughput to more
# clients, and would a worker that limits its writers get more? Drains 100,000 tasks
# in batches of 100 with 1, 2, 4 and 8 pgbench clients (a taskq worker process is two
# of them: one claim and one acknowledgement in flight), in four shapes:
#   plain       claim_complete.sql: claim, commit, complete, commit
#   gated-1     the claim admitted by one advisory lock across all clients
#   gated-2     the claim admitted by one of two advisory locks (client k takes k mod 2)
#   one-commit  complete then claim in one transaction: one writer per client
# The shapes alternate within each repetition, so all see the same machine.
#   bash bench/scale-sql.sh [REPETITIONS]      (default 3)
# Needs target/release/taskq (cargo build --release; or TASKQ=path), pgbench and
# psql, and DATABASE_URL: a postgres:// URL of a role that may create databases.
# Works in a database of its own, taskq_scale_sql, dropped at the end. TASKS sets
# the tasks per drain (a multiple of 800).
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${1:-3}
tasks=${TASKS:-100000}
taskq=${TASKQ:-target/release/taskq}
admin=${DATABASE_URL:?DATABASE_URL must be a postgres:// URL}
url="${admin%/*}/taskq_scale_sql"
command -v pgbench >/dev/null 2>&1 || for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pgbench" ] && PATH="$PATH:$dir"
done
work=$(mktemp -d)
trap 'psql -q "$admin" -c "DROP DATABASE IF EXISTS taskq_scale_sql" >/dev/null 2>&1; rm -rf "$work"' EXIT

psql -q "$admin" -c "DROP DATABASE IF EXISTS taskq_scale_sql" -c "CREATE DATABASE taskq_scale_sql" >/dev/null
DATABASE_URL=$url RUST_LOG=warn "$taskq" migrate

# The variants are built from the baselines' own statements, so they cannot drift apart.
claim=$(sed -n '/^WITH/,$p' bench/claim.sql)
complete=$(grep -v '^--' bench/complete.sql)
cp bench/claim_complete.sql "$work/plain.sql"
for slots in 1 2; do
    printf 'BEGIN;\nSELECT pg_advisory_xact_lock(4242, :client_id %% %s);\n%s\nCOMMIT;\n%s\n' \
        "$slots" "$claim" "$complete" >"$work/gated-$slots.sql"
done
printf 'BEGIN;\n%s\n%s\nCOMMIT;\n' "$complete" "$claim" >"$work/one-commit.sql"

shapes=(plain gated-1 gated-2 one-commit)
clients=(1 2 4 8)
for rep in $(seq "$reps"); do
    for shape in "${shapes[@]}"; do
        for c in "${clients[@]}"; do
            psql -q "$url" -c "TRUNCATE tasks, task_history, task_counts, task_throughput" \
                -c "INSERT INTO tasks (id, name, type) SELECT gen_random_uuid(), 'bench', 'noop' FROM generate_series(1, $tasks)" \
                -c "VACUUM ANALYZE tasks" >/dev/null
            tps=$(pgbench -n -M prepared -f "$work/$shape.sql" -D batch=100 -c "$c" -j "$c" \
                -t $((tasks / 100 / c)) "$url" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
            echo "$shape $c $(awk -v t="$tps" 'BEGIN { printf "%.0f", t * 100 }')" >>"$work/results"
            echo "rep $rep: $shape, $c clients: $(tail -1 "$work/results" | cut -d' ' -f3) tasks/s" >&2
        done
    done
done

echo
printf '%-11s' "clients"; printf '%22s' "${clients[@]}"; echo
for shape in "${shapes[@]}"; do
    printf '%-11s' "$shape"
    for c in "${clients[@]}"; do
        awk -v s="$shape" -v c="$c" '$1 == s && $2 == c { print $3 }' "$work/results" | sort -n |
            awk '{ v[NR] = $1 } END { printf "%22s", sprintf("%d (%d-%d)", v[int((NR + 1) / 2)], v[1], v[NR]) }'
    done
    echo
done
echo "tasks/s: median (range) of $reps runs"
