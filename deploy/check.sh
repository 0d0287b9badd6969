#!/usr/bin/env bash
# Validate taskq's deployment files offline, and fail loudly.
#
#   deploy/check.sh              # every step
#   deploy/check.sh helm env     # some steps
#
# The shell and docker steps are here; the others are deploy/check.py, run
# with the virtualenv's Python. deploy/test_check.py holds that program's own
# unit tests (stdlib unittest).
#
# Steps:
#   shell    shellcheck on deploy/check.sh and k8s/kind/*.sh
#   selftest ruff on deploy/*.py, then the unit tests of deploy/check.py
#            (deploy/test_check.py)
#   docker   hadolint on the Dockerfile, plus the image contract (numeric
#            non-root USER, HEALTHCHECK via `taskq healthcheck`, EXPOSE 8080,
#            SERVER_HOST=0.0.0.0)
#   compose  compose.yml against the compose-spec JSON schema (as written and
#            after ${VAR:-default} interpolation), dependency conditions,
#            stop_grace_period > SHUTDOWN_GRACE, declared volumes
#   k8s      every file under k8s/ (except the chart) with
#            `kubernetes-validate --strict` for each of KUBE_VERSIONS; the
#            kustomizations (every resource listed exists, no manifest is left
#            out) and, where kubectl is installed, their `kubectl kustomize`
#            output as well
#   helm     k8s/chart/taskq: `helm lint --strict` and `helm template` with
#            Helm's own engine, for the default values, ci/all-on-values.yaml
#            and an inline-URL variant; each rendering through
#            `kubernetes-validate --strict`; custom resources (KEDA, Prometheus
#            Operator) against the subset schemas in deploy/check.py; what
#            each variant must (not) contain; each worker Deployment (the
#            main one and one per worker group) with its WORKER_QUEUES, PDB and
#            ScaledObject as the values give them, and each KEDA query
#            counting the runnable backlog of exactly the queues of the
#            Deployment it scales; values that must be refused, each for its
#            reason
#   policy   every pod template: restricted Pod Security (non-root,
#            read-only root, no privilege escalation, capabilities dropped,
#            RuntimeDefault seccomp), requests and limits, probes on
#            /livez and /readyz, terminationGracePeriodSeconds > SHUTDOWN_GRACE
#            (+ preStop sleep), WORKER_ID from the pod name, ROLE per
#            Deployment; workload selectors that pick only their own pods,
#            one workload per PDB, and a ServiceMonitor that reaches every
#            taskq Deployment
#   env      every environment variable that compose.yml, k8s/ and the chart
#            give taskq is in the configuration contract, has a valid value
#            where it is a literal, and is read by src/config.rs: its quoted
#            name appears there, or src/config.rs feeds config::Environment
#            into a Deserialize struct with a field of the lower-cased name
#            (RUST_LOG: tracing's EnvFilter reads it); every probe or scrape
#            path appears quoted in src/http/
#   docs     every taskq_* metric docs/deploy.md names is defined (quoted) in
#            src/, and every repository path it names exists
#
# Tools are pinned in deploy/requirements.txt and installed once into a
# virtualenv under ${XDG_CACHE_HOME:-$HOME/.cache}/taskq-deploy-tools.
# Nothing here needs a cluster, a Docker engine or network access beyond PyPI.
# KUBE_VERSIONS (default "1.30.0 1.37.0") picks the Kubernetes schemas: the
# chart's minimum (kubeVersion >=1.30) and the newest that kubernetes-validate
# ships.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/taskq-deploy-tools
REQUIREMENTS=$ROOT/deploy/requirements.txt
export KUBE_VERSIONS=${KUBE_VERSIONS:-1.30.0 1.37.0}
ALL_STEPS=(shell selftest docker compose k8s helm policy env docs)
PY_STEPS=" compose k8s helm policy env docs "

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'deploy/check.sh: %s\n' "$*" >&2; exit 2; }

steps=("$@")
if [[ ${#steps[@]} -eq 0 ]]; then
  steps=("${ALL_STEPS[@]}")
fi
for s in "${steps[@]}"; do
  case " ${ALL_STEPS[*]} " in
    *" $s "*) ;;
    *) die "unknown step '$s' (steps: ${ALL_STEPS[*]})" ;;
  esac
done

# --- tools -------------------------------------------------------------------
install_tools() {
  command -v python3 >/dev/null 2>&1 || die "python3 is required"
  local key
  key=$( (python3 -c 'import sys, platform; print(sys.version, platform.machine())'; cat "$REQUIREMENTS") | sha256sum | cut -c1-16)
  VENV=$CACHE_DIR/venv-$key
  if [[ -f $VENV/.complete ]]; then
    log "tools: using $VENV"
    return
  fi
  log "tools: installing deploy/requirements.txt into $VENV"
  rm -rf "$VENV"
  mkdir -p "$CACHE_DIR"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's own python3 ships venv separately.
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      rm -rf "$VENV"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$VENV" || die "cannot create a virtualenv in $VENV"
    else
      die "python3 -m venv failed; install python3-venv"
    fi
  fi
  # The virtualenv is the cache; a pip download cache would only double it.
  "$VENV/bin/python" -m pip install \
    --disable-pip-version-check --no-input --no-cache-dir --quiet -r "$REQUIREMENTS" \
    || die "pip install -r deploy/requirements.txt failed"
  touch "$VENV/.complete"
  # Drop virtualenvs of older requirement sets.
  local d
  for d in "$CACHE_DIR"/venv-*; do
    [[ $d == "$VENV" ]] || rm -rf "$d"
  done
}

# --- bash steps ----------------------------------------------------------------
step_shell() {
  local rc=0
  log "shell: shellcheck"
  "$VENV/bin/shellcheck" --version | sed -n 2p
  "$VENV/bin/shellcheck" "$ROOT/deploy/check.sh" "$ROOT"/k8s/kind/*.sh || rc=1
  [[ $rc -eq 0 ]] && echo "ok: deploy/check.sh k8s/kind/*.sh"
  return $rc
}

step_selftest() {
  local rc=0
  log "selftest: ruff $("$VENV/bin/ruff" --version | awk '{print $2}'), then deploy/test_check.py"
  if "$VENV/bin/ruff" check --no-cache --quiet "$ROOT"/deploy/*.py; then
    echo "ok: ruff reports nothing on deploy/*.py"
  else
    rc=1
  fi
  # -B: no __pycache__ beside the sources.
  if (cd "$ROOT/deploy" && "$VENV/bin/python" -B -m unittest -q test_check 2>&1); then
    echo "ok: deploy/test_check.py passes"
  else
    echo "ERROR: deploy/test_check.py failed (above)"
    rc=1
  fi
  return $rc
}

step_docker() {
  local rc=0 f=$ROOT/Dockerfile
  log "docker: hadolint $("$VENV/bin/hadolint" --version)"
  [[ -f $f ]] || { echo "ERROR: no Dockerfile"; return 1; }
  if "$VENV/bin/hadolint" "$f"; then
    echo "ok: hadolint reports nothing"
  else
    rc=1
  fi
  # The contract the orchestrators rely on; hadolint does not know it.
  local user
  user=$(grep -E '^USER ' "$f" | tail -n1 | awk '{print $2}')
  if [[ ! $user =~ ^[0-9]+(:[0-9]+)?$ || ${user%%:*} -eq 0 ]]; then
    echo "ERROR: Dockerfile: the last USER must be a numeric non-root uid (runAsNonRoot needs it), found '${user}'"
    rc=1
  fi
  grep -Eq '^\s*CMD \["taskq", *"healthcheck"\]' "$f" \
    || { echo "ERROR: Dockerfile: HEALTHCHECK must run [\"taskq\", \"healthcheck\"]"; rc=1; }
  grep -Eq '^HEALTHCHECK ' "$f" || { echo "ERROR: Dockerfile: no HEALTHCHECK"; rc=1; }
  grep -Eq '^EXPOSE 8080$' "$f" || { echo "ERROR: Dockerfile: EXPOSE 8080 missing"; rc=1; }
  grep -Eq 'SERVER_HOST=0\.0\.0\.0' "$f" || { echo "ERROR: Dockerfile: ENV SERVER_HOST=0.0.0.0 missing"; rc=1; }
  grep -Eq 'cargo build --release --locked' "$f" || { echo "ERROR: Dockerfile: must build with cargo build --release --locked"; rc=1; }
  grep -Eq '^target/?$' "$ROOT/.dockerignore" 2>/dev/null || { echo "ERROR: .dockerignore must exclude target"; rc=1; }
  [[ $rc -eq 0 ]] && echo "ok: numeric non-root USER $user, HEALTHCHECK, EXPOSE 8080, SERVER_HOST=0.0.0.0"
  return $rc
}

# --- main ----------------------------------------------------------------------
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TASKQ_ROOT=$ROOT TASKQ_WORK=$WORK TASKQ_RESULTS=$WORK/results
: >"$TASKQ_RESULTS"

install_tools

py_steps=()
for s in "${steps[@]}"; do
  case $PY_STEPS in
    *" $s "*) py_steps+=("$s") ;;
    *)
      if "step_$s"; then
        printf '%s\tPASS\t0\n' "$s" >>"$TASKQ_RESULTS"
      else
        printf '%s\tFAIL\t-\n' "$s" >>"$TASKQ_RESULTS"
      fi
      ;;
  esac
done
if [[ ${#py_steps[@]} -gt 0 ]]; then
  PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" "$ROOT/deploy/check.py" "${py_steps[@]}" \
    || printf 'check.py\tFAIL\t-\n' >>"$TASKQ_RESULTS"
fi

log "summary"
failed=0
while IFS=$'\t' read -r name status count; do
  if [[ $status == PASS ]]; then
    printf '  PASS  %s\n' "$name"
  else
    if [[ $count == - ]]; then
      printf '  FAIL  %s\n' "$name"
    else
      printf '  FAIL  %s (%s errors)\n' "$name" "$count"
    fi
    failed=1
  fi
done <"$TASKQ_RESULTS"
if [[ $failed -ne 0 ]]; then
  echo "deploy/check.sh: FAILED (see the ERROR lines above)"
  exit 1
fi
echo "deploy/check.sh: all steps passed"
