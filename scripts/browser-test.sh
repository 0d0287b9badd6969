#!/usr/bin/env bash
# Starts the release binary on a fresh SQLite file and runs the dashboard's browser
# test (tests/browser) against it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/serve.sh
dir=$(mktemp -d /tmp/taskq-browser.XXXXXX)
start_taskq "${CARGO_TARGET_DIR:-target}/release/taskq" "$dir" DATABASE_URL="sqlite://$dir/taskq.db" DEMO_TIME_SCALE=0.05
TASKQ_URL="http://127.0.0.1:$TASKQ_PORT" bash tests/browser/run.sh || { tail -50 "$dir/taskq.log"; exit 1; }
