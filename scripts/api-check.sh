#!/usr/bin/env bash
# The OpenAPI document against the API it describes: Schemathesis generates requests
# from GET /api/openapi.json (valid and invalid ones) and checks every answer against
# the document: status codes, headers, content types, bodies, and that valid input is
# accepted and invalid input refused. It runs twice against `taskq` with ROLE=all on
# a fresh PostgreSQL database each time: with API_TOKEN set and without. Any failure
# fails the script.
#
#   scripts/api-check.sh [BINARY]     # default $CARGO_TARGET_DIR/release/taskq (target/)
#
# Schemathesis is pinned in scripts/api-check-requirements.txt and installed once into
# a virtualenv under ${XDG_CACHE_HOME:-$HOME/.cache}/taskq-api-check. Every request
# goes to the local server on 127.0.0.1. API_CHECK_EXAMPLES (default 25) caps the
# test cases per operation and phase, and the data is derandomised, so a run is
# repeatable and bounded (under a minute for both runs). API_CHECK_SEED=n
# explores instead: random data from that seed (use it with more examples).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh

BINARY=${1:-${CARGO_TARGET_DIR:-target}/release/taskq}
EXAMPLES=${API_CHECK_EXAMPLES:-25}
if [[ -n ${API_CHECK_SEED:-} ]]; then
    DATA=(--seed "$API_CHECK_SEED")
else
    DATA=(--generation-deterministic)
fi
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/taskq-api-check
REQUIREMENTS=$ROOT/scripts/api-check-requirements.txt

die() { echo "api-check.sh: $*" >&2; exit 2; }
[[ -x $BINARY ]] || die "no binary at $BINARY (cargo build --release)"

install_schemathesis() {
    command -v python3 >/dev/null 2>&1 || die "python3 is required"
    local key
    key=$( (python3 -c 'import sys, platform; print(sys.version, platform.machine())'; cat "$REQUIREMENTS") \
        | sha256sum | cut -c1-16)
    VENV=$CACHE_DIR/venv-$key
    [[ -f $VENV/.complete ]] && return
    echo "api-check.sh: installing Schemathesis into $VENV"
    rm -rf "$VENV"
    mkdir -p "$CACHE_DIR"
    python3 -m venv "$VENV" || die "python3 -m venv failed; install python3-venv"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --no-cache-dir --quiet \
        -r "$REQUIREMENTS" || die "pip install -r $REQUIREMENTS failed"
    touch "$VENV/.complete"
    local d
    for d in "$CACHE_DIR"/venv-*; do
        [[ $d == "$VENV" ]] || rm -rf "$d"
    done
}

psql_bin() {
    command -v psql 2>/dev/null && return
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x $dir/psql ]] && { echo "$dir/psql"; return; }
    done
    die "psql is required to create the check's databases"
}

# One run: a taskq on database DB_NAME with the given environment, Schemathesis with
# the options in EXTRA. Runs in a subshell: start_taskq's exit trap stops that taskq
# when the run ends.
run() (
    local label=$1
    shift
    local dir
    dir=$(mktemp -d "/tmp/taskq-api-check-$label.XXXXXX")
    # The worker runs what the generated requests create, webhooks included: every
    # HTTP request it makes goes to a proxy on a closed local port and fails there,
    # so nothing leaves the machine whatever URL a payload names.
    local nowhere=http://127.0.0.1:9
    start_taskq "$BINARY" "$dir" ROLE=all DATABASE_URL="$DB_BASE/$DB_NAME" \
        RUST_LOG=warn WORKER_CONCURRENCY=2 DEMO_TIME_SCALE=0.01 \
        HTTP_PROXY=$nowhere HTTPS_PROXY=$nowhere ALL_PROXY=$nowhere \
        http_proxy=$nowhere https_proxy=$nowhere all_proxy=$nowhere NO_PROXY= no_proxy= "$@"
    local base="http://127.0.0.1:$TASKQ_PORT"
    echo "== schemathesis against $base ($label)"
    # Checks that cannot apply to some operations are excluded in api-check.toml,
    # by name and with the reason; the run without API_TOKEN excludes one more.
    # POST /api/tasks/import takes NDJSON, which schemathesis cannot generate ("no
    # supported serializers"): tests/suite/import.rs checks its answers instead.
    (cd "$dir" && "$VENV/bin/schemathesis" --config-file "$ROOT/scripts/api-check.toml" \
        run "$base/api/openapi.json" --url "$base" \
        "${EXTRA[@]}" --exclude-path /api/tasks/import \
        --max-examples "$EXAMPLES" "${DATA[@]}" \
        --workers 1 --request-timeout 30 \
        --no-color) || { echo "api-check.sh: mismatches ($label); the server's log:" >&2; \
                         tail -20 "$dir/taskq.log" >&2; exit 1; }
)

install_schemathesis
PSQL=$(psql_bin)
DB_BASE=${TASKQ_TEST_PG%/*}
rc=0
for label in token open; do
    DB_NAME=taskq_api_check_$$_$label
    "$PSQL" -q "$TASKQ_TEST_PG" -c "CREATE DATABASE $DB_NAME" >/dev/null
    if [[ $label == token ]]; then
        EXTRA=(--header "Authorization: Bearer api-check")
        run "$label" API_TOKEN=api-check || rc=1
    else
        # ignored_auth sends requests without credentials (or with made-up ones) and
        # fails when they are answered 2xx; without API_TOKEN the API is open by
        # design (its document declares no security). The run with API_TOKEN checks it.
        EXTRA=(--exclude-checks ignored_auth)
        run "$label" || rc=1
    fi
    "$PSQL" -q "$TASKQ_TEST_PG" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
done
[[ $rc -eq 0 ]] && echo "== api-check: the OpenAPI document matches the API, with API_TOKEN and without"
exit $rc
