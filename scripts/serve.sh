#!/usr/bin/env bash
# Helpers for scripts that run a taskq process of their own. Source it.
#
#   free_port                       prints a free TCP port on 127.0.0.1
#   start_taskq BINARY DIR [VAR=value ...]
#       starts BINARY on a free port with the given environment, logging to
#       DIR/taskq.log; sets TASKQ_PORT and TASKQ_PID, stops the process and removes
#       DIR when the shell exits, and returns once /livez answers.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_taskq() {
    local binary=$1 dir=$2
    shift 2
    TASKQ_PORT=$(free_port)
    env "$@" SERVER_PORT="$TASKQ_PORT" LOG_FORMAT=json "$binary" >"$dir/taskq.log" 2>&1 &
    TASKQ_PID=$!
    trap 'kill $TASKQ_PID 2>/dev/null; wait $TASKQ_PID 2>/dev/null; rm -rf "'"$dir"'"' EXIT
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$TASKQ_PORT/livez" >/dev/null && return 0
        sleep 0.1
    done
    echo "taskq did not answer /livez on port $TASKQ_PORT:" >&2
    tail -20 "$dir/taskq.log" >&2
    return 1
}
