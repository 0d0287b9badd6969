#!/usr/bin/env bash
# Starts the release binary on a fresh SQLite file and runs the dashboard's browser
# test (tests/browser) against it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/taskq-browser.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATABASE_URL="sqlite://$dir/taskq.db" SERVER_PORT=$port DEMO_TIME_SCALE=0.05 LOG_FORMAT=json \
    "${CARGO_TARGET_DIR:-target}/release/taskq" >"$dir/taskq.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/livez" >/dev/null && break
    sleep 0.1
done
TASKQ_URL="http://127.0.0.1:$port" bash tests/browser/run.sh || { tail -50 "$dir/taskq.log"; exit 1; }
