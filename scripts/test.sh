#!/usr/bin/env bash
# The whole suite, as `make test` runs it: unit, store, engine and API tests on
# PostgreSQL and SQLite; the README's run command from a fresh clone; the OpenAPI
# document against the running API (Schemathesis, with and without API_TOKEN); the
# dashboard in headless Chromium; and the deployment files' validation.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh

echo "== build"
cargo build --release --locked
echo "== cargo test (PostgreSQL at $TASKQ_TEST_PG, SQLite files)"
cargo test --locked
echo "== the OpenAPI document against the API"
bash scripts/api-check.sh "${CARGO_TARGET_DIR:-target}/release/taskq"
echo "== dashboard in a browser"
bash scripts/browser-test.sh
echo "== deployment files"
bash deploy/check.sh
echo "== all tests passed"
