#!/usr/bin/env bash
# Real-browser test of the taskq dashboard against a running server.
#
#   TASKQ_URL=http://127.0.0.1:8080 tests/browser/run.sh
#
# Installs what the test needs first: playwright-core from package-lock.json (npm ci)
# and Debian's Chromium when /usr/bin/chromium is missing (playwright-core never
# downloads a browser of its own). TASKQ_TOKEN is passed through for servers with
# API_TOKEN set; screenshots are written to tests/browser/screenshots/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

: "${TASKQ_URL:?set TASKQ_URL to the base URL of a running taskq server, e.g. http://127.0.0.1:8080}"
export TASKQ_URL

if [ -z "${CHROMIUM_PATH:-}" ] && [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "browser test: installing chromium with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

npm ci --no-audit --no-fund --loglevel=error

exec node --test --test-concurrency=1 dashboard.test.mjs
