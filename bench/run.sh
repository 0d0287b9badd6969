#!/usr/bin/env bash
# `make bench`: builds the release binary and runs the benchmark suite against
# DATABASE_URL (a postgres:// URL whose role may create databases), or else against the
# PostgreSQL that scripts/postgres.sh finds or starts. Prints the results table and
# keeps the JSON in bench/results/. Arguments go to `taskq bench`, for example
#   bash bench/run.sh drain latency --runs 5
# See docs/benchmarks.md for what each scenario measures.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${DATABASE_URL:-}" != postgres* ]]; then
    unset DATABASE_URL
fi
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
export DATABASE_URL=${DATABASE_URL:-$TASKQ_TEST_PG}

command -v pgbench >/dev/null 2>&1 || for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pgbench" ] && PATH="$PATH:$dir"
done

cargo build --release --locked
mkdir -p bench/results
out="bench/results/$(date -u +%Y%m%dT%H%M%SZ).json"
RUST_LOG=${RUST_LOG:-warn} target/release/taskq bench --output "$out" "$@"
echo "results: $out"
