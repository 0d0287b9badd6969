#!/usr/bin/env bash
# A/B of two taskq binaries on one machine: runs `taskq bench` with each in turn,
# ROUNDS times (alternating, so both see the same machine noise), keeps every JSON and
# prints each figure's median per binary and the ratio B / A of the medians.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [-- BENCH ARGS]
#   bench/ab.sh /tmp/base/taskq target/release/taskq 5 -- drain --concurrency 5,100
#
# DATABASE_URL (or the PostgreSQL that scripts/postgres.sh finds) must allow creating
# databases; each bench run works in a database of its own. Results go to
# bench/results/ab-<time>/ as a-N.json and b-N.json in the order they ran.
set -euo pipefail
cd "$(dirname "$0")/.."

a=${1:?usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [-- BENCH ARGS]}
b=${2:?usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [-- BENCH ARGS]}
shift 2
rounds=3
if [[ $# -gt 0 && $1 != -- ]]; then
    rounds=$1
    shift
fi
[[ ${1:-} == -- ]] && shift
[[ $# -gt 0 ]] || set -- drain --no-baseline

if [[ "${DATABASE_URL:-}" != postgres* ]]; then
    unset DATABASE_URL
fi
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
export DATABASE_URL=${DATABASE_URL:-$TASKQ_TEST_PG}

out=${AB_OUT:-bench/results/ab-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
for round in $(seq "$rounds"); do
    for side in a b; do
        bin=$a
        [[ $side == b ]] && bin=$b
        echo "round $round/$rounds: $side ($bin)" >&2
        RUST_LOG=${RUST_LOG:-warn} "$bin" bench --runs 1 --taskq-bin "$bin" --output "$out/$side-$round.json" "$@" >/dev/null
    done
done
python3 bench/ab_summary.py "$out"
