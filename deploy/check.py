"""The checks of deploy/check.sh that parse files: compose, k8s, helm, policy, env, docs.

    python deploy/check.py STEP...     # run from deploy/check.sh, in its virtualenv

deploy/check.sh sets TASKQ_ROOT (the repository), TASKQ_WORK (a scratch
directory), TASKQ_RESULTS (a file that collects one "step<TAB>PASS|FAIL<TAB>errors"
line per step) and KUBE_VERSIONS. Without them the module still imports, for
deploy/test_check.py: the repository is the parent of deploy/, scratch files go
to a temporary directory, and main() returns 1 when a step failed.
"""
import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(os.environ.get("TASKQ_ROOT") or Path(__file__).resolve().parent.parent)
BIN = Path(sys.executable).parent
KUBE_VERSIONS = os.environ.get("KUBE_VERSIONS", "1.30.0 1.37.0").split()
CHART = ROOT / "k8s" / "chart" / "taskq"
_WORK = []


def work_dir():
    """The scratch directory: TASKQ_WORK, else a temporary one removed at exit."""
    if not _WORK:
        if os.environ.get("TASKQ_WORK"):
            _WORK.append(Path(os.environ["TASKQ_WORK"]))
        else:
            tmp = tempfile.mkdtemp(prefix="taskq-check-")
            atexit.register(shutil.rmtree, tmp, ignore_errors=True)
            _WORK.append(Path(tmp))
    return _WORK[0]

# ---------------------------------------------------------------- contract --
# The environment variables the taskq binary reads, with the shape of a
# valid value. Deployment files may set these and nothing else.
PORT, POSINT, COUNT, DURATION, FLOAT, TEXT, URL, IP, QUEUES = (
    "port", "posint", "count", "duration", "float", "text", "url", "ip", "queues")
CONTRACT = {
    "DATABASE_URL": URL,
    "DB_HOST": TEXT,
    "DB_PORT": PORT,
    "DB_USERNAME": TEXT,
    "DB_PASSWORD": TEXT,
    "DB_DATABASE": TEXT,
    "DB_SSL_MODE": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "DB_MAX_CONNECTIONS": POSINT,
    "ROLE": ("server", "worker", "all"),
    "SERVER_HOST": IP,
    "SERVER_PORT": PORT,
    "WORKER_CONCURRENCY": POSINT,
    "WORKER_QUEUES": QUEUES,
    "WORKER_PREFETCH": COUNT,
    "WORKER_POLL_INTERVAL": DURATION,
    "WORKER_TIMEOUT": DURATION,
    "WORKER_ID": TEXT,
    "RETRY_MAX_BACKOFF": DURATION,
    "SHUTDOWN_GRACE": DURATION,
    "RETENTION_SUCCEEDED": DURATION,
    "RETENTION_FAILED": DURATION,
    "STATS_INTERVAL": DURATION,
    "API_TOKEN": TEXT,
    "CORS_ORIGINS": TEXT,
    "LOG_FORMAT": ("json", "pretty"),
    "RUST_LOG": TEXT,
    "DEMO_TIME_SCALE": FLOAT,
}
# Read by a library rather than by src/config.rs: accepted when the library
# entry point that reads it is used anywhere in src/.
READ_BY_LIBRARY = {"RUST_LOG": ("EnvFilter", ("from_default_env", "try_from_default_env", '"RUST_LOG"'))}
DEFAULT_SHUTDOWN_GRACE = "25s"
# The queue a worker serves without WORKER_QUEUES, and a valid queue name.
DEFAULT_QUEUE = "default"
QUEUE_NAME = re.compile(r"[a-z0-9_.-]{1,64}")
MAX_EXECUTORS = 1000
DEFAULT_SERVER_PORT = "8080"

# ------------------------------------------------------------ CRD schemas --
# Custom resources are not in the Kubernetes schemas. These subset schemas
# list, for the objects the chart renders, the field names and types of the
# upstream CRDs (KEDA 2.x keda.sh/v1alpha1, Prometheus Operator
# monitoring.coreos.com/v1) at every level the chart writes, and reject
# unknown fields there. Deeper structures (TLS, auth) are only type-checked.
def _o(props, required=(), extra=False):
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": extra}

_S, _I, _B, _OBJ, _ARR = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "object"}, {"type": "array"}
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = _o({"name": _S, "namespace": _S, "labels": _STRMAP, "annotations": _STRMAP}, ["name"], extra=True)
_LABELSEL = _o({
    "matchLabels": _STRMAP,
    "matchExpressions": {"type": "array", "items": _o({
        "key": _S, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
        "values": {"type": "array", "items": _S}}, ["key", "operator"])},
})
_HPA_RULES = _o({
    "policies": {"type": "array", "items": _o({"type": {"enum": ["Pods", "Percent"]}, "value": _I, "periodSeconds": _I},
                                              ["type", "value", "periodSeconds"])},
    "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
    "stabilizationWindowSeconds": _I,
    "tolerance": {},
})
_PROM_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_RELABEL = _o({
    "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}},
    "separator": _S, "targetLabel": _S, "regex": _S, "modulus": _I, "replacement": _S,
    "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                        "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
                        "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal", "KeepEqual",
                        "dropequal", "DropEqual"]},
})
_ENDPOINT = _o({
    "port": _S, "targetPort": {"type": ["integer", "string"]}, "path": _S,
    "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]}, "params": _OBJ,
    "interval": _PROM_DURATION, "scrapeTimeout": _PROM_DURATION,
    "honorLabels": _B, "honorTimestamps": _B, "trackTimestampsStaleness": _B,
    "relabelings": {"type": "array", "items": _RELABEL},
    "metricRelabelings": {"type": "array", "items": _RELABEL},
    "tlsConfig": _OBJ, "bearerTokenFile": _S, "bearerTokenSecret": _OBJ, "authorization": _OBJ,
    "basicAuth": _OBJ, "oauth2": _OBJ, "followRedirects": _B, "enableHttp2": _B, "filterRunning": _B,
    "proxyUrl": _S, "noProxy": _S, "proxyFromEnvironment": _B, "proxyConnectHeader": _OBJ,
})


def _resource(api_version, kind, spec, spec_required=True):
    return _o({"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": _META, "spec": spec},
              ["apiVersion", "kind", "metadata"] + (["spec"] if spec_required else []))


CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): _resource("keda.sh/v1alpha1", "ScaledObject", _o({
        "scaleTargetRef": _o({"apiVersion": _S, "kind": _S, "name": _S, "envSourceContainerName": _S}, ["name"]),
        "pollingInterval": _I, "cooldownPeriod": _I, "initialCooldownPeriod": _I, "idleReplicaCount": _I,
        "minReplicaCount": _I, "maxReplicaCount": _I,
        "fallback": _o({"failureThreshold": _I, "replicas": _I, "behavior": _S}, ["failureThreshold", "replicas"]),
        "advanced": _o({
            "restoreToOriginalReplicaCount": _B,
            "horizontalPodAutoscalerConfig": _o({"name": _S, "behavior": _o({"scaleUp": _HPA_RULES, "scaleDown": _HPA_RULES})}),
            "scalingModifiers": _o({"formula": _S, "target": _S, "activationTarget": _S, "metricType": _S}),
        }),
        "triggers": {"type": "array", "minItems": 1, "items": _o({
            "type": _S, "name": _S, "metadata": _STRMAP, "useCachedMetrics": _B,
            "metricType": {"enum": ["Value", "AverageValue", "Utilization"]},
            "authenticationRef": _o({"name": _S, "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}}, ["name"]),
        }, ["type", "metadata"])},
    }, ["scaleTargetRef", "triggers"])),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _resource("keda.sh/v1alpha1", "TriggerAuthentication", _o({
        "secretTargetRef": {"type": "array", "items": _o({"parameter": _S, "name": _S, "key": _S}, ["parameter", "name", "key"])},
        "configMapTargetRef": {"type": "array", "items": _o({"parameter": _S, "name": _S, "key": _S}, ["parameter", "name", "key"])},
        "env": {"type": "array", "items": _o({"parameter": _S, "name": _S, "containerName": _S}, ["parameter", "name"])},
        "podIdentity": _OBJ, "hashiCorpVault": _OBJ, "azureKeyVault": _OBJ, "awsSecretManager": _OBJ,
        "gcpSecretManager": _OBJ, "boundServiceAccountToken": _ARR, "filePath": _S,
    })),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _resource("monitoring.coreos.com/v1", "ServiceMonitor", _o({
        "jobLabel": _S, "targetLabels": {"type": "array", "items": _S}, "podTargetLabels": {"type": "array", "items": _S},
        "endpoints": {"type": "array", "items": _ENDPOINT},
        "selector": _LABELSEL, "selectorMechanism": {"enum": ["RelabelConfig", "RoleSelector"]},
        "namespaceSelector": _o({"any": _B, "matchNames": {"type": "array", "items": _S}}),
        "sampleLimit": _I, "targetLimit": _I, "labelLimit": _I, "labelNameLengthLimit": _I,
        "labelValueLengthLimit": _I, "nativeHistogramBucketLimit": _I, "nativeHistogramMinBucketFactor": {},
        "keepDroppedTargets": _I, "attachMetadata": _OBJ, "scrapeClass": _S, "bodySizeLimit": _S,
        "scrapeProtocols": {"type": "array", "items": _S}, "fallbackScrapeProtocol": _S,
        "scrapeClassicHistograms": _B, "convertClassicHistogramsToNHCB": _B, "serviceDiscoveryRole": _S,
    }, ["selector", "endpoints"])),
}

# ---------------------------------------------------------------- helpers --
class Step:
    """Collects the findings of one step."""

    def __init__(self, name):
        self.name, self.errors, self.notes = name, [], []

    def error(self, msg):
        self.errors.append(msg)
        print(f"ERROR: {msg}", flush=True)

    def ok(self, msg):
        print(f"ok: {msg}", flush=True)

    def skip(self, msg):
        self.notes.append(msg)
        print(f"SKIP: {msg}", flush=True)


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def load_docs(text, where):
    """All non-empty documents of a YAML stream; raises ValueError with `where`."""
    try:
        return [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: {exc}") from None


def rel(path):
    return str(Path(path).relative_to(ROOT))


def parse_duration(value):
    """Seconds of a bare number or a humantime duration ("500ms", "1h 30m"); None if invalid."""
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"ns": 1e-9, "nsec": 1e-9, "us": 1e-6, "usec": 1e-6, "µs": 1e-6, "ms": 1e-3, "msec": 1e-3,
             "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60,
             "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
             "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}
    parts = re.findall(r"(\d+)\s*([a-zµ]+)\s*", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text):
        return None
    total = 0.0
    for number, unit in parts:
        if unit not in units:
            return None
        total += int(number) * units[unit]
    return total


def check_value(name, value):
    """None when `value` is valid for variable `name`, else the reason."""
    shape = CONTRACT[name]
    text = str(value)
    if isinstance(shape, tuple):
        return None if text in shape else f"must be one of {', '.join(shape)}"
    if shape == PORT:
        return None if text.isdigit() and 0 < int(text) < 65536 else "must be a TCP port"
    if shape == POSINT:
        return None if text.isdigit() and int(text) > 0 else "must be a positive integer"
    if shape == COUNT:
        return None if text.isdigit() else "must be a whole number (0 or more)"
    if shape == DURATION:
        return None if parse_duration(text) is not None else "must be seconds or a humantime duration (500ms, 30s, 7d)"
    if shape == FLOAT:
        try:
            return None if float(text) > 0 else "must be a positive number"
        except ValueError:
            return "must be a number"
    if shape == IP:
        import ipaddress
        try:
            ipaddress.ip_address(text)
            return None
        except ValueError:
            return "must be an IP address (taskq does not resolve names here)"
    if shape == URL:
        return None if re.match(r"^(postgres|postgresql|sqlite)://", text) else "must start with postgres://, postgresql:// or sqlite://"
    if shape == QUEUES:
        try:
            parse_worker_queues(text)
            return None
        except ValueError as exc:
            return str(exc)
    return None


# ------------------------------------------------------------------- queues --
def parse_worker_queues(text):
    """{queue: executors} of a WORKER_QUEUES value such as "default=5,emails=20".

    The form the deployment files use: QUEUE=EXECUTORS items separated by commas,
    no spaces, each queue once, QUEUE 1 to 64 of a-z 0-9 _ . -, EXECUTORS 1 to
    1000 (src/config.rs also accepts spaces around items). Raises ValueError
    with the reason otherwise.
    """
    queues = {}
    if not str(text):
        raise ValueError("must name at least one queue (QUEUE=EXECUTORS,...)")
    for item in str(text).split(","):
        name, sep, count = item.partition("=")
        if not sep or not QUEUE_NAME.fullmatch(name) or not re.fullmatch(r"[1-9][0-9]*", count) \
                or int(count) > MAX_EXECUTORS:
            raise ValueError(f"item {item!r} is not QUEUE=EXECUTORS (QUEUE: 1 to 64 of a-z 0-9 _ . -; "
                             f"EXECUTORS: 1 to {MAX_EXECUTORS})")
        if name in queues:
            raise ValueError(f"names queue {name!r} twice")
        queues[name] = int(count)
    return queues


def served_queues(env_value):
    """The queues a worker serves, given its WORKER_QUEUES value (None when unset)."""
    if env_value in (None, ""):
        return {DEFAULT_QUEUE}
    return set(parse_worker_queues(env_value))


_QUEUE_FILTER = re.compile(
    r"\bqueue\s+IN\s*\(([^)]*)\)"                    # queue IN ('a', 'b')
    r"|\bqueue\s*=\s*ANY\s*\(\s*'\{([^}']*)\}'(?:::text\[\])?\s*\)"  # queue = ANY('{a,b}')
    r"|\bqueue\s*=\s*'([^']*)'",                       # queue = 'a'
    re.IGNORECASE)


def query_queues(sql):
    """The queues a backlog query restricts itself to, or None when it counts every queue.

    Understands `queue IN ('a', 'b')`, `queue = ANY('{a,b}')` and `queue = 'a'`;
    a query with more than one such filter, or a filter it cannot read, raises
    ValueError: a check must not guess what a query counts.
    """
    found = list(_QUEUE_FILTER.finditer(sql))
    if not found:
        if re.search(r"\bqueue\b", sql, re.IGNORECASE):
            raise ValueError("names the queue column in a form this check cannot read")
        return None
    if len(found) > 1:
        raise ValueError("filters on the queue more than once")
    in_list, any_array, single = found[0].groups()
    if in_list is not None:
        items = [i.strip() for i in in_list.split(",")]
        if not all(re.fullmatch(r"'[^']*'", i) for i in items):
            raise ValueError(f"queue IN ({in_list}) lists something else than quoted names")
        names = [i[1:-1] for i in items]
    elif any_array is not None:
        names = [n.strip() for n in any_array.split(",")]
    else:
        names = [single]
    bad = [n for n in names if not QUEUE_NAME.fullmatch(n)]
    if bad:
        raise ValueError(f"names invalid queues {bad}")
    return set(names)


def selector_matches(selector, labels):
    """Whether a LabelSelector (matchLabels, matchExpressions) selects `labels`."""
    labels = labels or {}
    for key, value in ((selector or {}).get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in (selector or {}).get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def image_repo(image):
    """`registry/taskq:1.2@sha256:...` -> `taskq`."""
    name = str(image).split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def is_taskq_image(image):
    return image_repo(image) == "taskq"


def api_group(api_version):
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def run(cmd, **kw):
    """The finished process; its exit status is for the caller to judge."""
    return subprocess.run(cmd, check=False, capture_output=True, text=True, **kw)


def kubernetes_validate(step, label, files):
    """Run kubernetes-validate --strict on `files`; every ERROR, WARN or FATAL fails."""
    cmd = [str(BIN / "kubernetes-validate"), "--strict", "--quiet"]
    for version in KUBE_VERSIONS:
        cmd += ["-k", version]
    proc = run(cmd + [str(f) for f in files])
    bad = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    if proc.returncode != 0 or bad:
        for line in bad or [f"kubernetes-validate exited {proc.returncode}"]:
            step.error(f"{label}: {line}")
        return False
    return True


def validate_crd(step, label, doc):
    key = (doc.get("apiVersion"), doc.get("kind"))
    validator = jsonschema.Draft202012Validator(CRD_SCHEMAS[key])
    found = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for err in found:
        path = ".".join(str(p) for p in err.path) or "(root)"
        step.error(f"{label}: {doc['kind']}/{doc.get('metadata', {}).get('name')}: {path}: {err.message}")
    return not found


class Source:
    """A set of Kubernetes objects that are applied together (env and ConfigMaps resolve within it)."""

    def __init__(self, label, docs):
        self.label = label
        self.docs = docs  # [(where, doc)]

    def find(self, kind, name):
        for _, doc in self.docs:
            if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
                return doc
        return None


def pod_templates(doc):
    """(pod metadata, pod spec) of a workload object, else None."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        tpl = spec.get("template") or {}
    elif kind == "CronJob":
        tpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    elif kind == "Pod":
        tpl = doc
    else:
        return None
    return tpl.get("metadata") or {}, tpl.get("spec") or {}


def container_env(source, container):
    """{name: (value or None, origin)} as the container will see it, envFrom first."""
    env = {}
    for ref in container.get("envFrom") or []:
        prefix = ref.get("prefix", "")
        if "configMapRef" in ref:
            name = ref["configMapRef"].get("name")
            cm = source.find("ConfigMap", name)
            if cm is None:
                env[f"<keys of ConfigMap {name}>"] = (None, "unresolved")
                continue
            for key, value in (cm.get("data") or {}).items():
                env[prefix + key] = (value, f"ConfigMap {name}")
        if "secretRef" in ref:
            name = ref["secretRef"].get("name")
            secret = source.find("Secret", name)
            if secret is None:
                env[f"<keys of Secret {name}>"] = (None, "unresolved")
                continue
            for key in list(secret.get("stringData") or {}) + list(secret.get("data") or {}):
                env[prefix + key] = (None, f"Secret {name}")
    for item in container.get("env") or []:
        env[item["name"]] = (item.get("value"), "env" if "value" in item else "valueFrom")
    return env


# ------------------------------------------------------------- collections --
_CACHE = {}


def static_sources(step):
    """Files under k8s/ outside the chart, grouped by directory."""
    if "static" in _CACHE:
        return _CACHE["static"]
    groups = {}
    for path in sorted((ROOT / "k8s").rglob("*")):
        if path.suffix not in (".yaml", ".yml") or CHART in path.parents or not path.is_file():
            continue
        try:
            docs = load_docs(path.read_text(), rel(path))
        except ValueError as exc:
            step.error(str(exc))
            continue
        groups.setdefault(path.parent, []).extend((rel(path), d) for d in docs)
    _CACHE["static"] = [Source(f"{rel(d)}/ (files)", docs) for d, docs in groups.items()]
    return _CACHE["static"]


def kustomize_sources(step):
    if "kustomize" in _CACHE:
        return _CACHE["kustomize"]
    out = []
    kubectl = shutil.which("kubectl")
    dirs = sorted({p.parent for p in (ROOT / "k8s").rglob("kustomization.yaml") if CHART not in p.parents})
    if not kubectl:
        step.skip("kubectl not found: kustomization builds not rendered (their files are validated one by one)")
    else:
        for d in dirs:
            proc = run([kubectl, "kustomize", str(d)])
            if proc.returncode != 0:
                step.error(f"kubectl kustomize {rel(d)}: {proc.stderr.strip()}")
                continue
            try:
                docs = load_docs(proc.stdout, f"kustomize {rel(d)}")
            except ValueError as exc:
                step.error(str(exc))
                continue
            out.append(Source(f"kustomize {rel(d)}", [(f"kustomize {rel(d)}", doc) for doc in docs]))
    _CACHE["kustomize"] = out
    return out


# Values variants rendered by the helm step (and reused by policy and env).
INLINE_VALUES = {
    "database": {"url": "postgres://taskq:secret@db.example.internal:5432/taskq"},
    "auth": {"existingSecret": "taskq-api", "existingSecretKey": "tokens"},
    "server": {"autoscaling": {"enabled": True}},
    # The main worker with queues of its own, and a group without KEDA or PDB.
    "worker": {"queues": "default=4,misc=1", "podDisruptionBudget": {"enabled": True},
               "groups": [{"name": "batch", "queues": "batch=2", "replicas": 1,
                           "podDisruptionBudget": {"enabled": False}}]},
}
# (what, values, a fragment of the refusal's message: refused for that reason)
REFUSED_VALUES = [
    ("database.url together with postgresql.enabled",
     {"database": {"url": "postgres://a:b@c:5432/d"}, "postgresql": {"enabled": True}}, "mutually exclusive"),
    ("server.terminationGracePeriodSeconds not above SHUTDOWN_GRACE + preStop",
     {"server": {"terminationGracePeriodSeconds": 30}}, "server.terminationGracePeriodSeconds must exceed"),
    ("worker.terminationGracePeriodSeconds not above SHUTDOWN_GRACE",
     {"worker": {"terminationGracePeriodSeconds": 25}}, "worker.terminationGracePeriodSeconds must exceed"),
    ("an unknown key (values.schema.json)", {"worker": {"replicass": 3}}, "'replicass'"),
    ("a wrong type (values.schema.json)", {"worker": {"concurrency": "many"}}, "/worker/concurrency"),
    ("no database at all", {"database": {"existingSecret": ""}}, "set database.existingSecret"),
    ("a worker group without queues (values.schema.json)", {"worker": {"groups": [{"name": "emails"}]}},
     "missing property 'queues'"),
    ("a worker group's queues that are not QUEUE=EXECUTORS (values.schema.json)",
     {"worker": {"groups": [{"name": "emails", "queues": "emails"}]}}, "/worker/groups/0/queues"),
    ("an upper-case queue in worker.queues (values.schema.json)", {"worker": {"queues": "Default=5"}}, "/worker/queues"),
    ("spaces in worker.queues (values.schema.json)", {"worker": {"queues": "default=5, misc=1"}}, "/worker/queues"),
    ("a KEDA query of its own in a worker group (values.schema.json)",
     {"worker": {"groups": [{"name": "emails", "queues": "emails=1", "keda": {"query": "SELECT 1"}}]}},
     "additional properties 'query'"),
    ("more than 1000 executors for a queue", {"worker": {"groups": [{"name": "emails", "queues": "emails=1001"}]}},
     "is not QUEUE=EXECUTORS"),
    ("a queue named twice in one WORKER_QUEUES",
     {"worker": {"groups": [{"name": "emails", "queues": "emails=1,emails=2"}]}}, 'names queue "emails" twice'),
    ("two worker groups of the same name",
     {"worker": {"groups": [{"name": "emails", "queues": "emails=1"}, {"name": "emails", "queues": "mail=1"}]}},
     "two worker groups are named"),
    ("a worker group's terminationGracePeriodSeconds not above SHUTDOWN_GRACE",
     {"worker": {"groups": [{"name": "emails", "queues": "emails=1", "terminationGracePeriodSeconds": 20}]}},
     "worker.groups[0].terminationGracePeriodSeconds must exceed"),
]


def doc_values_examples(text, top_keys):
    """The ```yaml blocks of a Markdown text that are chart values: every top-level key is one of `top_keys`."""
    out = []
    for block in re.findall(r"^```yaml\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        try:
            docs = load_docs(block, "docs/deploy.md")
        except ValueError:
            continue
        if len(docs) == 1 and isinstance(docs[0], dict) and docs[0] and set(docs[0]) <= set(top_keys):
            out.append(docs[0])
    return out


def chart_variants():
    all_on = CHART / "ci" / "all-on-values.yaml"
    variants = [
        ("default values", None),
        ("ci/all-on-values.yaml", load_docs(all_on.read_text(), rel(all_on))[0]),
        ("inline database URL", INLINE_VALUES),
    ]
    # The values examples of docs/deploy.md must render and validate too.
    doc = ROOT / "docs" / "deploy.md"
    if doc.exists():
        top_keys = load_docs((CHART / "values.yaml").read_text(), "values.yaml")[0]
        for i, values in enumerate(doc_values_examples(doc.read_text(), top_keys), 1):
            variants.append((f"docs/deploy.md example {i}", values))
    return variants


def helm_sources(step):
    if "helm" in _CACHE:
        return _CACHE["helm"]
    import helm_python as helm

    out = []
    for label, values in chart_variants():
        try:
            with helm.Chart.load(str(CHART)) as chart:
                rendered = chart.render(values, name="taskq", namespace="taskq", is_install=True)
        except Exception as exc:  # noqa: BLE001 - the SDK raises HelmError subclasses
            step.error(f"helm template ({label}): {exc}")
            continue
        docs = []
        for template, text in sorted(rendered.items()):
            if template.endswith("NOTES.txt") or not text.strip():
                continue
            try:
                docs.extend((f"chart {label}: {template}", d) for d in load_docs(text, f"{template} ({label})"))
            except ValueError as exc:
                step.error(str(exc))
        out.append(Source(f"chart ({label})", docs))
    _CACHE["helm"] = out
    return out


def all_sources(step):
    return static_sources(step) + kustomize_sources(step) + helm_sources(step)


# ------------------------------------------------------------------ compose --
_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text, env):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR:+alt}, $VAR and $$."""
    def replace(m):
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        value = env.get(name)
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else interpolate(arg, env)
        if op == "-":
            return value if value is not None else interpolate(arg, env)
        if op in (":?", "?"):
            if (op == ":?" and not value) or value is None:
                raise ValueError(f"required variable {name} is not set: {arg}")
            return value
        if op == ":+":
            return interpolate(arg, env) if value else ""
        return interpolate(arg, env) if value is not None else ""
    return _VAR.sub(replace, text)


def compose_taskq_services(model):
    """Services that run the taskq image (built here or named taskq)."""
    return {name: svc for name, svc in (model.get("services") or {}).items()
            if "build" in svc or is_taskq_image(svc.get("image", ""))}


def compose_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.split("=", 1) for item in env]
        return {p[0]: (p[1] if len(p) > 1 else None) for p in pairs}
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def compose_model():
    path = ROOT / "compose.yml"
    raw = path.read_text()
    return path, raw, load_docs(interpolate(raw, {}), "compose.yml (interpolated)")[0]


def step_compose(step):
    path = ROOT / "compose.yml"
    if not path.exists():
        step.error("compose.yml is missing")
        return
    raw = path.read_text()
    try:
        load_docs(raw, "compose.yml")
        text = interpolate(raw, {})
        model = load_docs(text, "compose.yml (interpolated)")[0]
    except ValueError as exc:
        step.error(str(exc))
        return
    interpolated = work_dir() / "compose.interpolated.yml"
    interpolated.write_text(text)
    for label, target in (("as written", path), ("with ${VAR:-default} interpolated", interpolated)):
        proc = run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(target)])
        if proc.returncode != 0:
            step.error(f"compose.yml ({label}) does not match the compose specification:\n{proc.stdout}{proc.stderr}")
        else:
            step.ok(f"compose.yml ({label}) matches the compose-spec schema vendored by check-jsonschema")

    services = model.get("services") or {}
    taskq = compose_taskq_services(model)
    dockerfile = (ROOT / "Dockerfile").read_text() if (ROOT / "Dockerfile").exists() else ""
    image_has_healthcheck = re.search(r"^HEALTHCHECK\s", dockerfile, re.MULTILINE) is not None
    declared_volumes = set((model.get("volumes") or {}).keys())
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if dep not in services:
                step.error(f"compose.yml: {name} depends on unknown service {dep}")
                continue
            cond = (spec or {}).get("condition", "service_started")
            target = services[dep]
            if cond == "service_healthy" and "healthcheck" not in target and not (dep in taskq and image_has_healthcheck):
                step.error(f"compose.yml: {name} waits for {dep} to be healthy, but {dep} has no healthcheck")
            if cond == "service_completed_successfully" and target.get("restart", "no") not in ("no", "on-failure"):
                step.error(f"compose.yml: {name} waits for {dep} to complete, but {dep} restarts ({target.get('restart')})")
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            is_named = source and not source.startswith((".", "/", "~", "$"))
            if is_named and source not in declared_volumes:
                step.error(f"compose.yml: {name} uses volume {source}, which is not declared under volumes:")
    for name, svc in taskq.items():
        env = compose_env(svc)
        grace = parse_duration(env.get("SHUTDOWN_GRACE") or DEFAULT_SHUTDOWN_GRACE) or 0
        stop = parse_duration(str(svc.get("stop_grace_period", "10s")))
        if svc.get("command") in (["migrate"], "migrate"):
            continue
        if stop is None or stop <= grace:
            step.error(f"compose.yml: {name}: stop_grace_period ({svc.get('stop_grace_period', '10s')}) must exceed SHUTDOWN_GRACE ({grace:g}s)")
    check_compose_workers(step, taskq)
    if not step.errors:
        step.ok(f"compose.yml: {len(services)} services, dependency conditions, volumes and stop_grace_period are consistent")


def check_compose_workers(step, taskq):
    """Each worker service serves valid queues, and one of them serves `default`."""
    served = {}
    for name, svc in taskq.items():
        env = compose_env(svc)
        if env.get("ROLE") != "worker":
            continue
        try:
            served[name] = served_queues(env.get("WORKER_QUEUES"))
        except ValueError as exc:
            step.error(f"compose.yml: {name}: WORKER_QUEUES {exc}")
    if served and not any(DEFAULT_QUEUE in queues for queues in served.values()):
        step.error(f"compose.yml: no worker service serves the {DEFAULT_QUEUE} queue, where tasks go without one")
    elif served:
        step.ok("compose.yml: worker services and their queues: " +
                "; ".join(f"{name}: {', '.join(sorted(q))}" for name, q in served.items()))


# ---------------------------------------------------------------------- k8s --
def classify(doc):
    api = str(doc.get("apiVersion", ""))
    if api.startswith("kustomize.config.k8s.io/"):
        return "kustomization"
    if api.startswith("kind.x-k8s.io/"):
        return "kind-config"
    if (api, doc.get("kind")) in CRD_SCHEMAS:
        return "crd"
    return "k8s"


def check_kind_config(step, where, doc):
    problems = []
    if doc.get("kind") != "Cluster" or doc.get("apiVersion") != "kind.x-k8s.io/v1alpha4":
        problems.append("must be kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4")
    allowed = {"kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig",
               "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902", "containerdConfigPatches",
               "containerdConfigPatchesJSON6902"}
    problems += [f"unknown field {k}" for k in doc if k not in allowed]
    roles = [n.get("role") for n in doc.get("nodes") or [{"role": "control-plane"}]]
    if "control-plane" not in roles or any(r not in ("control-plane", "worker") for r in roles):
        problems.append(f"node roles must be control-plane/worker with one control-plane at least, found {roles}")
    for p in problems:
        step.error(f"{where}: {p}")
    if not problems:
        step.ok(f"{where}: kind cluster config ({len(roles)} nodes)")


def check_kustomization(step, path):
    doc = load_docs(path.read_text(), rel(path))[0]
    listed = []
    for entry in doc.get("resources") or []:
        target = (path.parent / entry).resolve()
        if not target.exists():
            step.error(f"{rel(path)}: resource {entry} does not exist")
        listed.append(target)
    # Every file beside it holding Kubernetes objects must be listed (examples excepted).
    for other in sorted(path.parent.glob("*.y*ml")):
        if other == path or ".example." in other.name or other.resolve() in listed:
            continue
        docs = load_docs(other.read_text(), rel(other))
        if any(classify(d) in ("k8s", "crd") for d in docs):
            step.error(f"{rel(path)}: {other.name} holds Kubernetes objects but is not listed in resources")
    step.ok(f"{rel(path)}: {len(listed)} resources, all present")


def step_k8s(step):
    files = sorted(p for p in (ROOT / "k8s").rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file() and CHART not in p.parents)
    if not files:
        step.error("no manifests under k8s/")
        return
    plain = []
    for path in files:
        try:
            docs = load_docs(path.read_text(), rel(path))
        except ValueError as exc:
            step.error(str(exc))
            continue
        kinds = [classify(d) for d in docs]
        for d, kind in zip(docs, kinds):
            if kind == "kind-config":
                check_kind_config(step, rel(path), d)
            elif kind == "crd":
                validate_crd(step, rel(path), d)
            elif kind == "kustomization":
                check_kustomization(step, path)
        k8s_docs = [d for d, kind in zip(docs, kinds) if kind == "k8s"]
        if not k8s_docs:
            continue
        if len(k8s_docs) == len(docs):
            plain.append(path)
        else:
            tmp = work_dir() / ("static-" + rel(path).replace("/", "_"))
            tmp.write_text(yaml.safe_dump_all(k8s_docs))
            plain.append(tmp)
    if plain and kubernetes_validate(step, "k8s files", plain):
        step.ok(f"kubernetes-validate --strict (Kubernetes {', '.join(KUBE_VERSIONS)}): {len(plain)} files")
    for source in kustomize_sources(step):
        validate_source(step, source)


def validate_source(step, source):
    """kubernetes-validate the ordinary objects of `source`, the CRD schemas the custom ones."""
    ordinary = [d for _, d in source.docs if classify(d) == "k8s"]
    custom = [(w, d) for w, d in source.docs if classify(d) == "crd"]
    unknown = [(w, d) for w, d in source.docs if classify(d) not in ("k8s", "crd")]
    for where, d in unknown:
        step.error(f"{where}: unexpected {d.get('apiVersion')} {d.get('kind')} in rendered output")
    fine = True
    if ordinary:
        tmp = work_dir() / (re.sub(r"[^A-Za-z0-9_.-]+", "_", source.label) + ".yaml")
        tmp.write_text(yaml.safe_dump_all(ordinary))
        fine = kubernetes_validate(step, source.label, [tmp])
    for where, d in custom:
        fine = validate_crd(step, where, d) and fine
    if fine:
        crd_note = f" + {len(custom)} custom resources against the embedded CRD subset schemas" if custom else ""
        step.ok(f"{source.label}: {len(ordinary)} objects pass kubernetes-validate --strict{crd_note}")


# --------------------------------------------------------------------- helm --
def objects(source, kind):
    return [d for _, d in source.docs if d.get("kind") == kind]


def hook_of(source):
    jobs = [j for j in objects(source, "Job") if "helm.sh/hook" in (j["metadata"].get("annotations") or {})]
    return jobs[0]["metadata"]["annotations"]["helm.sh/hook"] if jobs else None


def deployment(source, suffix):
    for d in objects(source, "Deployment"):
        if d["metadata"]["name"].endswith(suffix):
            return d
    return None


def expect(step, source, condition, message):
    if not condition:
        step.error(f"{source.label}: {message}")


def step_helm(step):
    import helm_python as helm

    print(f"Helm engine: helm-python-sdk {helm.__version__}, libhelm_c {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}")
    chart_file = CHART / "Chart.yaml"
    if not chart_file.exists():
        step.error("k8s/chart/taskq/Chart.yaml is missing")
        return
    for label, values in chart_variants():
        report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSIONS[0]}")
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + \
                   [{"path": "", "error": e} for e in report.get("errors", [])]
        for m in problems:
            step.error(f"helm lint --strict ({label}): {m.get('path')}: {m.get('error')}")
        if not problems:
            infos = "; ".join(m["error"] for m in report.get("messages", []))
            step.ok(f"helm lint --strict ({label}){' - info: ' + infos if infos else ''}")

    sources = {s.label: s for s in helm_sources(step)}
    for source in sources.values():
        validate_source(step, source)

    default = sources.get("chart (default values)")
    if default:
        kinds = {d.get("kind") for _, d in default.docs}
        for kind in ("ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Job"):
            expect(step, default, kind in kinds, f"renders no {kind}")
        for kind in ("Secret", "HorizontalPodAutoscaler", "ScaledObject", "ServiceMonitor", "StatefulSet", "Ingress"):
            expect(step, default, kind not in kinds, f"renders a {kind} although it is off by default")
        expect(step, default, hook_of(default) == "pre-install,pre-upgrade",
               f"migration Job hook is {hook_of(default)!r}, expected pre-install,pre-upgrade with an existing Secret")
        server, worker = deployment(default, "-server") or deployment(default, "server"), deployment(default, "-worker") or deployment(default, "worker")
        expect(step, default, server is not None and server["spec"].get("replicas") == 2, "server Deployment must default to 2 replicas")
        expect(step, default, worker is not None and worker["spec"].get("replicas") == 3, "worker Deployment must default to 3 replicas")

    all_on = sources.get("chart (ci/all-on-values.yaml)")
    if all_on:
        kinds = {d.get("kind") for _, d in all_on.docs}
        for kind in ("HorizontalPodAutoscaler", "ScaledObject", "TriggerAuthentication", "ServiceMonitor",
                     "StatefulSet", "Ingress", "Secret", "PodDisruptionBudget", "Job"):
            expect(step, all_on, kind in kinds, f"renders no {kind} although ci/all-on-values.yaml turns it on")
        expect(step, all_on, hook_of(all_on) == "post-install,pre-upgrade",
               f"migration Job hook is {hook_of(all_on)!r}, expected post-install,pre-upgrade with the bundled database")
        for suffix, scaler in (("-server", "the HPA"), ("-worker", "KEDA")):
            dep = deployment(all_on, suffix)
            expect(step, all_on, dep is not None and "replicas" not in dep["spec"],
                   f"{suffix[1:]} Deployment sets replicas although {scaler} owns them")

    for label, values in chart_variants():
        source = sources.get(f"chart ({label})")
        if source:
            check_workers(step, source, values)
            check_keda(step, source)
    # A KEDA query that docs/deploy.md shows is one the chart renders.
    rendered = {t["metadata"].get("query") for src in sources.values() for so in objects(src, "ScaledObject")
                for t in so["spec"]["triggers"]}
    doc = ROOT / "docs" / "deploy.md"
    shown = re.findall(r"^```sql\n(SELECT count\(\*\) FROM tasks\b[^\n]*)\n```", doc.read_text(), re.MULTILINE) if doc.exists() else []
    for query in shown:
        if query in rendered:
            step.ok(f"docs/deploy.md shows a KEDA query the chart renders: {query}")
        else:
            step.error(f"docs/deploy.md shows a KEDA query that no rendering has: {query}")

    inline = sources.get("chart (inline database URL)")
    if inline:
        secrets = objects(inline, "Secret")
        expect(step, inline, any("DATABASE_URL" in (s.get("data") or {}) for s in secrets), "no Secret holds the inline DATABASE_URL")
        expect(step, inline, hook_of(inline) == "post-install,pre-upgrade",
               f"migration Job hook is {hook_of(inline)!r}, expected post-install,pre-upgrade with a chart-made Secret")
        server = deployment(inline, "-server")
        refs = [e["valueFrom"]["secretKeyRef"] for e in (server or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0].get("env", [])
                if e.get("name") == "API_TOKEN" and "valueFrom" in e]
        expect(step, inline, refs == [{"name": "taskq-api", "key": "tokens"}], f"API_TOKEN must come from auth.existingSecret, found {refs}")

    for reason, values, why in REFUSED_VALUES:
        try:
            with helm.Chart.load(str(CHART)) as chart:
                chart.render(values, name="taskq", namespace="taskq", is_install=True)
        except Exception as exc:  # noqa: BLE001 - a refusal is any error the engine raises
            if why in str(exc):
                step.ok(f"refused: {reason} ({str(exc).splitlines()[-1].strip()[:120]})")
            else:
                step.error(f"chart refused {reason}, but not with a message containing {why!r}: {exc}")
        else:
            step.error(f"chart accepted {reason}: {json.dumps(values)}")


def worker_expectations(values):
    """The worker Deployments the chart must render for `values` (release "taskq").

    [{"name", "queues" (WORKER_QUEUES or None), "keda", "pdb"}]: the main
    Deployment, then one per worker group; a group inherits keda.enabled and
    podDisruptionBudget.enabled from `worker` unless it sets them.
    """
    values = values or {}
    fullname = values.get("fullnameOverride") or "taskq"  # the release name "taskq" holds the chart name
    worker = values.get("worker") or {}
    keda = (worker.get("keda") or {}).get("enabled", False)
    pdb = (worker.get("podDisruptionBudget") or {}).get("enabled", True)
    out = [{"name": f"{fullname}-worker", "queues": worker.get("queues") or None, "keda": keda, "pdb": pdb}]
    for group in worker.get("groups") or []:
        out.append({"name": f"{fullname}-worker-{group['name']}", "queues": group["queues"],
                    "keda": (group.get("keda") or {}).get("enabled", keda),
                    "pdb": (group.get("podDisruptionBudget") or {}).get("enabled", pdb)})
    return out


def taskq_container(doc):
    """The first container running the taskq image of a workload, else None."""
    tpl = pod_templates(doc)
    containers = (tpl[1].get("containers") or []) if tpl else []
    return next((c for c in containers if is_taskq_image(c.get("image", ""))), None)


def worker_queues_of(source, doc):
    """(present, value) of WORKER_QUEUES as the taskq container of `doc` sees it."""
    c = taskq_container(doc)
    env = container_env(source, c) if c else {}
    return ("WORKER_QUEUES" in env, env.get("WORKER_QUEUES", (None, None))[0])


def role_of(source, doc):
    c = taskq_container(doc)
    return (container_env(source, c).get("ROLE") or (None,))[0] if c else None


def check_workers(step, source, values):
    """Each worker Deployment of the values is rendered with its WORKER_QUEUES, PDB and ScaledObject."""
    expected = worker_expectations(values)
    workers = {d["metadata"]["name"]: d for d in objects(source, "Deployment") if role_of(source, d) == "worker"}
    expect(step, source, set(workers) == {w["name"] for w in expected},
           f"worker Deployments are {sorted(workers)}, the values give {sorted(w['name'] for w in expected)}")
    pdbs, scaled = objects(source, "PodDisruptionBudget"), objects(source, "ScaledObject")
    before = len(step.errors)
    for want in expected:
        dep = workers.get(want["name"])
        if dep is None:
            continue
        present, value = worker_queues_of(source, dep)
        if want["queues"] is None:
            expect(step, source, not present, f"{want['name']} sets WORKER_QUEUES={value!r}, expected none (the default queue)")
        else:
            expect(step, source, value == want["queues"],
                   f"{want['name']} has WORKER_QUEUES={value!r}, the values give {want['queues']!r}")
        labels = (dep["spec"]["template"].get("metadata") or {}).get("labels")
        covering = [p["metadata"]["name"] for p in pdbs if selector_matches(p["spec"].get("selector"), labels)]
        expect(step, source, len(covering) == (1 if want["pdb"] else 0),
               f"{want['name']}: {'one' if want['pdb'] else 'no'} PodDisruptionBudget expected, found {covering}")
        scalers = [so["metadata"]["name"] for so in scaled if so["spec"]["scaleTargetRef"]["name"] == want["name"]]
        expect(step, source, len(scalers) == (1 if want["keda"] else 0),
               f"{want['name']}: {'one' if want['keda'] else 'no'} ScaledObject expected, found {scalers}")
        expect(step, source, ("replicas" in dep["spec"]) != want["keda"],
               f"{want['name']}: replicas must be set {'by KEDA, not the Deployment' if want['keda'] else 'on the Deployment'}")
    if len(step.errors) == before:
        step.ok(f"{source.label}: worker Deployments " + ", ".join(
            f"{w['name']} ({'WORKER_QUEUES=' + w['queues'] if w['queues'] else 'default queue'}"
            f"{', KEDA' if w['keda'] else ''}{', PDB' if w['pdb'] else ''})" for w in expected))


def check_keda(step, source):
    auths = {d["metadata"]["name"]: d for d in objects(source, "TriggerAuthentication")}
    deployments = {d["metadata"]["name"]: d for d in objects(source, "Deployment")}
    for so in objects(source, "ScaledObject"):
        target = so["spec"]["scaleTargetRef"]["name"]
        expect(step, source, target in deployments, f"ScaledObject targets unknown Deployment {target}")
        for trig in so["spec"]["triggers"]:
            if trig["type"] != "postgresql":
                continue
            meta = trig["metadata"]
            expect(step, source, "query" in meta and re.search(r"\bfrom\s+tasks\b", meta["query"], re.IGNORECASE),
                   "postgresql trigger must query the tasks table")
            check_backlog_query(step, source, so["metadata"]["name"], meta.get("query", ""), deployments.get(target))
            try:
                ok = float(meta.get("targetQueryValue", "0")) > 0
            except ValueError:
                ok = False
            expect(step, source, ok, "postgresql trigger needs a positive targetQueryValue")
            ref = (trig.get("authenticationRef") or {}).get("name")
            params = {r["parameter"] for r in (auths.get(ref, {}).get("spec", {}).get("secretTargetRef") or [])}
            expect(step, source, "connection" in params or "connectionFromEnv" in meta,
                   "postgresql trigger has no connection (TriggerAuthentication parameter 'connection')")


def check_backlog_query(step, source, name, query, dep):
    """The query counts the runnable backlog of exactly the queues its Deployment serves."""
    expect(step, source, re.search(r"\bstatus\s*=\s*'queued'", query) and re.search(r"\brun_at\s*<=\s*now\(\)", query),
           f"ScaledObject {name}: the query must count runnable tasks (status = 'queued' AND run_at <= now()): {query}")
    if dep is None:
        return
    try:
        counted = query_queues(query)
    except ValueError as exc:
        step.error(f"{source.label}: ScaledObject {name}: the query {exc}: {query}")
        return
    try:
        served = served_queues(worker_queues_of(source, dep)[1])
    except ValueError as exc:
        step.error(f"{source.label}: {dep['metadata']['name']}: WORKER_QUEUES {exc}")
        return
    if counted is None:
        step.error(f"{source.label}: ScaledObject {name} counts the backlog of every queue, but "
                   f"{dep['metadata']['name']} serves only {', '.join(sorted(served))}")
    elif counted != served:
        step.error(f"{source.label}: ScaledObject {name} counts the queues {', '.join(sorted(counted))}, but "
                   f"{dep['metadata']['name']} serves {', '.join(sorted(served))}")
    else:
        step.ok(f"{source.label}: ScaledObject {name} counts the runnable backlog of exactly the queues "
                f"{dep['metadata']['name']} serves: {', '.join(sorted(served))}")


# ------------------------------------------------------------------- policy --
def step_policy(step):
    for source in all_sources(step):
        before = len(step.errors)
        checked = 0
        for where, doc in source.docs:
            if doc.get("kind") == "Namespace":
                labels = doc.get("metadata", {}).get("labels") or {}
                if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
                    step.error(f"{where}: Namespace {doc['metadata']['name']} does not enforce the restricted Pod Security Standard")
            if doc.get("kind") == "ServiceMonitor":
                for ep in doc["spec"].get("endpoints") or []:
                    if ep.get("path", "/metrics") != "/metrics":
                        step.error(f"{where}: ServiceMonitor scrapes {ep.get('path')}, taskq serves /metrics")
            tpl = pod_templates(doc)
            if tpl is None:
                continue
            checked += 1
            check_pod(step, source, where, doc, *tpl)
        check_selectors(step, source)
        if len(step.errors) == before:
            step.ok(f"{source.label}: {checked} pod templates meet the policy; selectors of workloads, "
                    "PodDisruptionBudgets, Services and ServiceMonitors pick what they should")


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")


def check_selectors(step, source):
    """Workloads select only their own pods; each PDB covers one workload; each Service selects
    pods; a ServiceMonitor reaches the pods of every taskq Deployment (worker groups included)."""
    def pods(doc):
        return ((doc.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}

    def name(doc):
        return f"{doc['kind']}/{doc['metadata'].get('name')}"

    workloads = [d for _, d in source.docs if d.get("kind") in WORKLOADS]
    for w in workloads:
        others = [name(o) for o in workloads if o is not w and selector_matches(w["spec"].get("selector"), pods(o))]
        if others:
            step.error(f"{source.label}: {name(w)} selects the pods of {', '.join(others)} as well")
    for pdb in objects(source, "PodDisruptionBudget"):
        covered = [name(w) for w in workloads if selector_matches(pdb["spec"].get("selector"), pods(w))]
        if len(covered) != 1:
            step.error(f"{source.label}: {name(pdb)} covers {covered or 'no workload'}, expected exactly one")
    services = objects(source, "Service")
    for svc in services:
        sel = (svc.get("spec") or {}).get("selector")
        if sel and not any(selector_matches({"matchLabels": sel}, pods(w)) for w in workloads):
            step.error(f"{source.label}: {name(svc)} selects no workload's pods")
    for sm in objects(source, "ServiceMonitor"):
        scraped = [s for s in services if selector_matches(sm["spec"].get("selector"), s["metadata"].get("labels"))]
        for w in workloads:
            if w["kind"] == "Deployment" and taskq_container(w) and not any(
                    selector_matches({"matchLabels": (s.get("spec") or {}).get("selector") or {"-": "-"}}, pods(w))
                    for s in scraped):
                step.error(f"{source.label}: {name(sm)} reaches no Service in front of {name(w)}: its /metrics are not scraped")


def check_pod(step, source, where, doc, pod_meta, pod):
    name = f"{where}: {doc['kind']}/{doc['metadata'].get('name')}"
    psc = pod.get("securityContext") or {}
    containers = (pod.get("initContainers") or []) + (pod.get("containers") or [])
    if pod.get("automountServiceAccountToken") is not False:
        step.error(f"{name}: automountServiceAccountToken must be false (nothing here calls the API)")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            step.error(f"{name}: {key} is not allowed")
    for vol in pod.get("volumes") or []:
        if "hostPath" in vol:
            step.error(f"{name}: hostPath volume {vol.get('name')} is not allowed")
    for c in containers:
        cname = f"{name} container {c.get('name')}"
        csc = c.get("securityContext") or {}
        if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            step.error(f"{cname}: runAsNonRoot must be true")
        if csc.get("runAsUser", psc.get("runAsUser")) == 0:
            step.error(f"{cname}: runs as uid 0")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            step.error(f"{cname}: seccompProfile must be RuntimeDefault")
        if csc.get("allowPrivilegeEscalation") is not False:
            step.error(f"{cname}: allowPrivilegeEscalation must be false")
        if csc.get("privileged"):
            step.error(f"{cname}: privileged")
        if csc.get("readOnlyRootFilesystem") is not True:
            step.error(f"{cname}: readOnlyRootFilesystem must be true")
        if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
            step.error(f"{cname}: capabilities must drop ALL")
        if (csc.get("capabilities") or {}).get("add"):
            step.error(f"{cname}: adds capabilities")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    step.error(f"{cname}: resources.{part}.{r} missing")
        if is_taskq_image(c.get("image", "")):
            check_taskq_container(step, source, cname, doc, pod_meta, pod, c)


def check_taskq_container(step, source, cname, doc, pod_meta, pod, c):
    env = container_env(source, c)

    def value(key, default=None):
        return env[key][0] if key in env and env[key][0] is not None else default

    host = value("SERVER_HOST")
    if host is not None and host not in ("0.0.0.0", "::", "[::]"):
        step.error(f"{cname}: SERVER_HOST={host} would not be reachable by probes and Services")
    if doc["kind"] == "Job":
        args = (c.get("command") or []) + (c.get("args") or [])
        if "migrate" not in args:
            step.error(f"{cname}: a taskq Job is expected to run `taskq migrate`, runs {args}")
        return
    if doc["kind"] != "Deployment":
        return
    role = value("ROLE")
    if role not in ("server", "worker"):
        step.error(f"{cname}: ROLE must be set to server or worker on a Deployment (found {role!r})")
    fieldref = next((e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c.get("env") or [] if e["name"] == "WORKER_ID"), None)
    if fieldref != "metadata.name":
        step.error(f"{cname}: WORKER_ID must come from the pod name (valueFrom.fieldRef.fieldPath: metadata.name)")
    port = str(value("SERVER_PORT", DEFAULT_SERVER_PORT))
    named = {p.get("name"): str(p.get("containerPort")) for p in c.get("ports") or []}
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = (c.get(probe) or {}).get("httpGet")
        if not get:
            step.error(f"{cname}: {probe} must be an httpGet on {path}")
            continue
        if get.get("path") != path:
            step.error(f"{cname}: {probe} checks {get.get('path')}, expected {path}")
        probe_port = named.get(get.get("port"), str(get.get("port")))
        if probe_port != port:
            step.error(f"{cname}: {probe} port {get.get('port')} is not SERVER_PORT {port}")
    startup = (c.get("startupProbe") or {}).get("httpGet")
    if startup and startup.get("path") != "/livez":
        step.error(f"{cname}: startupProbe should check /livez")
    ann = pod_meta.get("annotations") or {}
    if ann.get("prometheus.io/scrape") == "true" and (
            ann.get("prometheus.io/path", "/metrics") != "/metrics" or str(ann.get("prometheus.io/port")) != port):
        step.error(f"{cname}: prometheus.io annotations must point at /metrics on port {port}")
    grace = parse_duration(value("SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE))
    if grace is None:
        step.error(f"{cname}: SHUTDOWN_GRACE={value('SHUTDOWN_GRACE')} is not a duration")
        return
    pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {})
    sleep = (pre_stop.get("sleep") or {}).get("seconds", 0)
    period = pod.get("terminationGracePeriodSeconds", 30)
    if period <= grace + sleep:
        step.error(f"{cname}: terminationGracePeriodSeconds {period} must exceed SHUTDOWN_GRACE {grace:g}s"
                   f"{f' + preStop sleep {sleep}s' if sleep else ''}")


# ---------------------------------------------------------------------- env --
def deserialized_fields(rust):
    """Field names of the structs that derive Deserialize in a Rust source text."""
    fields = set()
    for m in re.finditer(r"#\[derive\([^)]*\bDeserialize\b[^)]*\)\]\s*(?:#\[[^\]]*\]\s*)*pub\s+struct\s+\w+\s*\{(.*?)\n\}", rust, re.DOTALL):
        fields.update(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?([a-z_][a-z0-9_]*)\s*:", m.group(1), re.MULTILINE))
    return fields


def step_env(step):
    used = {}  # name -> set of places
    literal = []  # (place, name, value)
    probe_paths = {}  # path -> places

    # compose.yml
    if (ROOT / "compose.yml").exists():
        try:
            _, _, model = compose_model()
            for svc_name, svc in compose_taskq_services(model).items():
                for name, val in compose_env(svc).items():
                    used.setdefault(name, set()).add(f"compose.yml:{svc_name}")
                    if val not in (None, ""):
                        literal.append((f"compose.yml:{svc_name}", name, val))
        except ValueError as exc:
            step.error(str(exc))
    # Kubernetes objects
    for source in all_sources(step):
        for where, doc in source.docs:
            if doc.get("kind") == "ServiceMonitor":
                for ep in doc["spec"].get("endpoints") or []:
                    probe_paths.setdefault(ep.get("path", "/metrics"), set()).add(where)
            tpl = pod_templates(doc)
            if tpl is None:
                continue
            pod_meta, pod = tpl
            ann = pod_meta.get("annotations") or {}
            if ann.get("prometheus.io/path"):
                probe_paths.setdefault(ann["prometheus.io/path"], set()).add(where)
            for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                if not is_taskq_image(c.get("image", "")):
                    continue
                place = f"{source.label} {doc['kind']}/{doc['metadata'].get('name')}"
                for name, (val, origin) in container_env(source, c).items():
                    if origin == "unresolved":
                        step.error(f"{place}: cannot see {name}: envFrom a ConfigMap/Secret that is not in this set")
                        continue
                    used.setdefault(name, set()).add(place)
                    if val not in (None, ""):
                        literal.append((place, name, val))
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    get = (c.get(probe) or {}).get("httpGet")
                    if get and get.get("path"):
                        probe_paths.setdefault(get["path"], set()).add(where)

    unknown = sorted(n for n in used if n not in CONTRACT)
    for name in unknown:
        step.error(f"{name} is not a taskq setting (not in the contract), set in: {', '.join(sorted(used[name])[:3])}")
    seen_bad = set()
    for place, name, val in literal:
        if name in CONTRACT:
            reason = check_value(name, val)
            if reason and (name, val) not in seen_bad:
                seen_bad.add((name, val))
                step.error(f"{place}: {name}={val!r} {reason}")
    if not unknown:
        step.ok(f"{len(used)} variables set for taskq, all in the contract: {' '.join(sorted(used))}")

    # The Rust side: src/config.rs must read each of them.
    config_rs = ROOT / "src" / "config.rs"
    src_text = "\n".join(p.read_text(errors="replace") for p in sorted((ROOT / "src").rglob("*.rs"))) if (ROOT / "src").exists() else ""
    if not config_rs.exists():
        step.error(f"src/config.rs does not exist: cannot confirm that taskq reads {', '.join(sorted(n for n in used if n in CONTRACT))}")
    else:
        text = config_rs.read_text(errors="replace")
        fields = deserialized_fields(text) if "config::Environment" in text else set()
        missing, by_field = [], []
        for name in sorted(n for n in used if n in CONTRACT):
            if f'"{name}"' in text:
                continue
            if name.lower() in fields:
                by_field.append(name)
                continue
            lib = READ_BY_LIBRARY.get(name)
            if lib and any(marker in src_text for marker in lib[1]):
                step.ok(f"{name} is read by {lib[0]} (src/ uses it), not by src/config.rs")
                continue
            missing.append(name)
        if by_field:
            step.ok("read through config::Environment into a Deserialize field of the same name (lower-cased) "
                    "in src/config.rs: " + ", ".join(by_field))
        if missing:
            step.error("set by the deployment files but not read by src/config.rs (neither \"NAME\" nor a "
                       "config::Environment field `name`): " + ", ".join(missing))
        else:
            step.ok("src/config.rs reads every variable the deployment files set")

    # Probe and scrape paths must be routes of src/http/.
    http_dir = ROOT / "src" / "http"
    http_text = "\n".join(p.read_text(errors="replace") for p in sorted(http_dir.rglob("*.rs"))) if http_dir.exists() else ""
    for path in ("/livez", "/readyz", "/metrics"):
        probe_paths.setdefault(path, set()).add("the deployment contract")
    missing_paths = sorted(p for p in probe_paths if f'"{p}"' not in http_text)
    if not http_dir.exists():
        step.error(f"src/http/ does not exist: cannot confirm the routes {', '.join(sorted(probe_paths))}")
    elif missing_paths:
        step.error("probed or scraped but not routed in src/http/ (as a quoted path): " + ", ".join(missing_paths))
    else:
        step.ok(f"src/http/ routes every probed or scraped path: {', '.join(sorted(probe_paths))}")


# --------------------------------------------------------------------- docs --
TOP_LEVEL = ("src/", "k8s/", "deploy/", "docs/", "migrations/", "static/", "tests/", "bench/", ".ci/")
TOP_FILES = ("Dockerfile", ".dockerignore", "compose.yml", "Makefile", "Cargo.toml", "README.md")


def doc_metric_labels(text):
    """{(metric, label)} a text uses: in selectors, taskq_x{label="v"}, and in
    aggregations, `by (label) (taskq_x...)`."""
    used = set()
    for metric, selector in re.findall(r"\b(taskq_[a-z0-9_]+)\{([^}]*)\}", text):
        used.update((metric, label) for label in re.findall(r"([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
    for labels, metric in re.findall(r"\bby\s*\(([^)]*)\)\s*\(\s*(taskq_[a-z0-9_]+)", text):
        used.update((metric, label.strip()) for label in labels.split(",") if label.strip())
    return used


def metric_has_label(src, metric, label):
    """Whether a statement of `src` that names "metric" also gives it the label: "label" => ..."""
    return re.search(rf'"{re.escape(metric)}"[^;]*?"{re.escape(label)}"\s*=>', src) is not None


def step_docs(step):
    doc = ROOT / "docs" / "deploy.md"
    if not doc.exists():
        step.error("docs/deploy.md is missing")
        return
    text = doc.read_text()
    src = "\n".join(p.read_text(errors="replace") for p in sorted((ROOT / "src").rglob("*.rs"))) if (ROOT / "src").exists() else ""
    metrics = sorted(set(re.findall(r"\btaskq_[a-z0-9_]+\b", text)))
    missing = [m for m in metrics if f'"{m}"' not in src]
    if missing:
        step.error("docs/deploy.md names metrics that src/ does not define: " + ", ".join(missing))
    else:
        step.ok(f"docs/deploy.md: {len(metrics)} metric names, all defined in src/")
    used = doc_metric_labels(text)
    unlabelled = sorted(f"{m}{{{label}}}" for m, label in used if f'"{m}"' in src and not metric_has_label(src, m, label))
    if unlabelled:
        step.error("docs/deploy.md uses labels that src/ does not set on these metrics: " + ", ".join(unlabelled))
    elif used:
        step.ok(f"docs/deploy.md: {len(used)} metric labels, all set by src/: "
                + ", ".join(f"{m}{{{label}}}" for m, label in sorted(used)))
    paths = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.rstrip(".,:;")
        if token.startswith(TOP_LEVEL) or token in TOP_FILES:
            paths.add(token)
    absent = sorted(p for p in paths if not (ROOT / p).exists())
    if absent:
        step.error("docs/deploy.md names paths that do not exist: " + ", ".join(absent))
    else:
        step.ok(f"docs/deploy.md: {len(paths)} repository paths, all present")


# --------------------------------------------------------------------- main --
STEPS = {"compose": step_compose, "k8s": step_k8s, "helm": step_helm, "policy": step_policy, "env": step_env,
         "docs": step_docs}


def main(names):
    """Run the named steps; 0 when the results went to TASKQ_RESULTS or every step passed."""
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        print(f"deploy/check.py: unknown step(s) {', '.join(unknown)} (steps: {' '.join(STEPS)})", file=sys.stderr)
        return 2
    results = []
    for name in names:
        print(f"\n==> {name}", flush=True)
        step = Step(name)
        try:
            STEPS[name](step)
        except Exception as exc:  # noqa: BLE001 - a crash is a failure, with its cause shown
            import traceback
            traceback.print_exc()
            step.error(f"{name} crashed: {exc!r}")
        results.append((name, "FAIL" if step.errors else "PASS", len(step.errors)))
    if os.environ.get("TASKQ_RESULTS"):
        with open(os.environ["TASKQ_RESULTS"], "a") as fh:
            for name, status, count in results:
                fh.write(f"{name}\t{status}\t{count}\n")
        return 0
    for name, status, count in results:
        print(f"  {status}  {name}" + (f" ({count} errors)" if count else ""))
    return 1 if any(status != "PASS" for _, status, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
