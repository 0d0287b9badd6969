#!/usr/bin/env bash
# Delete the kind cluster created by up.sh, with everything in it.
set -euo pipefail
cluster=${KIND_CLUSTER_NAME:-taskq}
command -v kind >/dev/null 2>&1 || { echo "down.sh: kind is required but not on PATH" >&2; exit 1; }
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind delete cluster --name "$cluster"
else
  echo "no kind cluster named $cluster"
fi
