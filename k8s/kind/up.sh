#!/usr/bin/env bash
# Create (or reuse) a local kind cluster, build the taskq image, load it into
# the cluster and deploy k8s/kind (the k8s/manifests base plus a throwaway
# PostgreSQL). Needs docker, kind and kubectl on PATH.
#
#   k8s/kind/up.sh                 # build, load, deploy
#   SKIP_BUILD=1 k8s/kind/up.sh    # reuse an existing taskq:dev image
#   k8s/kind/down.sh               # delete the cluster
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cluster=${KIND_CLUSTER_NAME:-taskq}
# The tag is fixed by k8s/kind/kustomization.yaml (images: newTag: dev).
image=taskq:dev
ns=taskq
ctx=kind-$cluster

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "up.sh: $tool is required but not on PATH" >&2; exit 1; }
done

k() { kubectl --context "$ctx" "$@"; }

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "==> reusing kind cluster $cluster"
else
  echo "==> creating kind cluster $cluster"
  kind create cluster --name "$cluster" --config "$here/cluster.yaml" --wait 120s
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "==> building $image"
  docker build -t "$image" "$root"
fi
echo "==> loading $image into $cluster"
kind load docker-image "$image" --name "$cluster"

# A Job's pod template is immutable: drop the previous migration run so the
# current image migrates the schema.
k -n "$ns" delete job taskq-migrate --ignore-not-found 2>/dev/null || true

# Phases, by the app.kubernetes.io/component label: first what the migration
# needs (namespace, configuration, Secrets, PostgreSQL), then the migration,
# then the server and workers once the schema is in place.
not_app='app.kubernetes.io/component!=server,app.kubernetes.io/component!=worker'

echo "==> phase 1: namespace, configuration, PostgreSQL"
k apply -k "$here" -l "$not_app,app.kubernetes.io/component!=migration"
k -n "$ns" rollout status statefulset/taskq-postgres --timeout=300s

echo "==> phase 2: migration"
k apply -k "$here" -l "$not_app"
deadline=$((SECONDS + 300))
while :; do
  done_=$(k -n "$ns" get job taskq-migrate -o jsonpath='{.status.conditions[?(@.type=="Complete")].status}')
  failed=$(k -n "$ns" get job taskq-migrate -o jsonpath='{.status.conditions[?(@.type=="Failed")].status}')
  if [[ "$done_" == True ]]; then
    break
  fi
  if [[ "$failed" == True || $SECONDS -ge $deadline ]]; then
    echo "up.sh: migration did not complete; its logs:" >&2
    k -n "$ns" logs job/taskq-migrate --all-containers --tail=100 >&2 || true
    exit 1
  fi
  sleep 2
done

echo "==> phase 3: server and workers"
existing=$(k -n "$ns" get deployment taskq-server -o name 2>/dev/null || true)
k apply -k "$here"
if [[ -n "$existing" ]]; then
  # The image name did not change, so the Deployments did not either: restart
  # them so that pods pick up the taskq:dev just loaded.
  k -n "$ns" rollout restart deployment/taskq-server deployment/taskq-worker
fi
k -n "$ns" rollout status deployment/taskq-server --timeout=300s
k -n "$ns" rollout status deployment/taskq-worker --timeout=300s

cat <<MSG

taskq is running in kind cluster "$cluster" (context $ctx, namespace $ns).
  dashboard and API:  kubectl --context $ctx -n $ns port-forward svc/taskq-server 8080:80
                      then open http://127.0.0.1:8080 (API token: dev-token)
  pods:               kubectl --context $ctx -n $ns get pods
  delete everything:  $here/down.sh
MSG
