#!/usr/bin/env bash
# The fault-injection suite in one command (see docs/reliability.md).
#
#   scripts/faults.sh          the bounded run that CI also runs (a few minutes)
#   scripts/faults.sh --ci     the same
#   scripts/faults.sh --soak   every fault longer and harder (TASKQ_SOAK=1), then the
#                              OpenAPI-driven fuzz with more examples
#
# It needs the PostgreSQL server binaries (initdb, pg_ctl): each fault starts a
# throwaway server of its own on a free port, so nothing else is disturbed. The
# measured figures are printed as a table at the end (and kept in $FIGURES).
# The schemathesis run needs /api/openapi.json and pip; without either it is skipped
# with the reason printed.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=ci
case "${1:-}" in
    ""|--ci) mode=ci ;;
    --soak) mode=soak ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "faults.sh: unknown option $1 (expected --ci or --soak)" >&2; exit 2 ;;
esac

FIGURES=${FIGURES:-target/faults-figures.txt}
mkdir -p "$(dirname "$FIGURES")"
: > "$FIGURES"
export TASKQ_FIGURES="$PWD/$FIGURES"
if [ "$mode" = soak ]; then
    export TASKQ_SOAK=1
fi

echo "== fault-injection suite ($mode)"
started=$(date +%s)
cargo test --locked --test faults -- --nocapture 2>&1 | tee target/faults-run.log | grep -E '^(FIGURE|test |test result)' || {
    echo "faults.sh: the suite failed; the whole output is in target/faults-run.log" >&2
    exit 1
}
grep -q '^test result: ok' target/faults-run.log || { echo "faults.sh: the suite failed (target/faults-run.log)" >&2; exit 1; }
echo "== the suite took $(( $(date +%s) - started )) s"

echo "== OpenAPI-driven fuzz (schemathesis)"
examples=$([ "$mode" = soak ] && echo 500 || echo 25)
dir=$(mktemp -d /tmp/taskq-schemathesis.XXXXXX)
cargo build --locked --quiet --bin taskq
source scripts/serve.sh
start_taskq "${CARGO_TARGET_DIR:-target}/debug/taskq" "$dir" DATABASE_URL="sqlite://$dir/fuzz.db" ROLE=server
port=$TASKQ_PORT
if ! curl -sf "http://127.0.0.1:$port/api/openapi.json" -o "$dir/openapi.json"; then
    echo "faults.sh: SKIPPED schemathesis: this build serves no /api/openapi.json"
else
    venv=${SCHEMATHESIS_VENV:-$HOME/.cache/taskq/schemathesis}
    if [ ! -x "$venv/bin/schemathesis" ]; then
        # Schemathesis 3 with OpenAPI 3.1 behind its flag; newer Hypothesis releases break it.
        python3 -m venv "$venv" && "$venv/bin/pip" install --quiet 'schemathesis>=3.39,<4' 'hypothesis<6.125' \
            || { echo "faults.sh: SKIPPED schemathesis: it could not be installed with pip"; venv=; }
    fi
    if [ -n "$venv" ]; then
        # Server errors are what this run hunts: any 5xx fails it.
        set +e
        "$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/openapi.json" \
            --experimental=openapi-3.1 --checks not_a_server_error --hypothesis-max-examples "$examples" --hypothesis-seed 7 \
            --exclude-path /api/tasks/stream 2>&1 | tee "$dir/schemathesis.log" | tail -25
        status=${PIPESTATUS[0]}
        set -e
        echo "FIGURE | OpenAPI fuzz (schemathesis) | exit status, 0 = no 5xx | $status" | tee -a "$FIGURES"
        [ "$status" = 0 ] || { echo "faults.sh: schemathesis found server errors" >&2; exit 1; }
    fi
fi

echo "== figures"
echo "| fault | figure | value |"
echo "|---|---|---|"
sed -E 's/^FIGURE \| (.*) \| (.*) \| (.*)$/| \1 | \2 | \3 |/' "$FIGURES"
