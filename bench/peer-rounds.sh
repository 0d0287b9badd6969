#!/usr/bin/env bash
# taskq beside graphile-worker and beside an older taskq, interleaved in one run:
# drain (20,000 no-op tasks, 5 executors) and pickup latency (100 tasks 50 ms apart)
# of each taskq binary with `taskq bench`, and graphile-worker's w1 (drain) and w2
# (latency) in its tuned setting, ROUNDS times. Needs the peer installed
# (../shared/peers/graphile-worker/setup.sh). JSON lines go to OUT/.
#
#   bench/peer-rounds.sh OLD_BINARY NEW_BINARY [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: bench/peer-rounds.sh OLD_BINARY NEW_BINARY [ROUNDS]}
new=${2:?usage: bench/peer-rounds.sh OLD_BINARY NEW_BINARY [ROUNDS]}
rounds=${3:-3}
peers=${PEERS:-../shared/peers}
if [[ "${DATABASE_URL:-}" != postgres* ]]; then
    unset DATABASE_URL
fi
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
export DATABASE_URL=${DATABASE_URL:-$TASKQ_TEST_PG}
out=${OUT:-bench/results/peers-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
for round in $(seq "$rounds"); do
    for side in old new; do
        bin=$old
        [[ $side == new ]] && bin=$new
        echo "round $round: taskq $side" >&2
        # The peer runs once per round, below, not inside either binary's bench.
        QBENCH_DIR=/nonexistent RUST_LOG=warn "$bin" bench drain latency --runs 1 --no-baseline --concurrency 5 \
            --taskq-bin "$bin" --output "$out/taskq-$side-$round.json" >/dev/null
    done
    echo "round $round: graphile-worker" >&2
    PGBASE=${DATABASE_URL%/*} bash "$peers/graphile-worker/run.sh" w1 --setting tuned >"$out/graphile-w1-$round.json"
    PGBASE=${DATABASE_URL%/*} bash "$peers/graphile-worker/run.sh" w2 --setting tuned >"$out/graphile-w2-$round.json"
done
echo "$out"
