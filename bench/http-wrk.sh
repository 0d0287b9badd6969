#!/usr/bin/env bash
# POST /api/tasks with wrk against a running taskq server, as a cross-check of the
# `http` scenario's own client (Debian: apt-get install wrk).
#   bash bench/http-wrk.sh [BASE_URL] [CONNECTIONS] [DURATION]
# Defaults: http://127.0.0.1:8080, 64 connections, 10s. Run the server with
# ROLE=server so no worker competes for the CPU.
set -euo pipefail
cd "$(dirname "$0")"
wrk -t2 -c"${2:-64}" -d"${3:-10s}" --latency -s post_task.lua "${1:-http://127.0.0.1:8080}"
