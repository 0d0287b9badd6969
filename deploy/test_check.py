"""Unit tests of deploy/check.py's pure functions.

    cd deploy && python -m unittest -v test_check      # in deploy/check.sh's virtualenv

deploy/check.sh runs them in its `selftest` step (with ruff), before the checks
that rely on these functions.
"""
import copy
import io
import unittest
from contextlib import redirect_stdout
from unittest import mock

import check


def quiet_step(name="test"):
    """A check.Step whose ERROR/ok lines do not clutter the test output."""
    step = check.Step(name)
    step.error = lambda msg: step.errors.append(msg)
    step.ok = lambda msg: None
    step.skip = lambda msg: step.notes.append(msg)
    return step


GOOD_WORKER = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "taskq-worker"},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/component": "worker"}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/component": "worker"}},
            "spec": {
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 35,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "taskq",
                    "image": "registry.example.com/taskq:0.1.0",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [
                        {"name": "ROLE", "value": "worker"},
                        {"name": "WORKER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "SHUTDOWN_GRACE", "value": "25s"},
                    ],
                    "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                  "limits": {"cpu": "1", "memory": "512Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                }],
            },
        },
    },
}


def policy_errors(doc):
    step = quiet_step()
    source = check.Source("test", [("test.yaml", doc)])
    meta, pod = check.pod_templates(doc)
    check.check_pod(step, source, "test.yaml", doc, meta, pod)
    return step.errors


def worker(mutate):
    doc = copy.deepcopy(GOOD_WORKER)
    mutate(doc)
    return doc


def container(doc):
    return doc["spec"]["template"]["spec"]["containers"][0]


class Durations(unittest.TestCase):
    def test_seconds_and_units(self):
        self.assertEqual(check.parse_duration("30"), 30)
        self.assertEqual(check.parse_duration("2.5"), 2.5)
        self.assertEqual(check.parse_duration("500ms"), 0.5)
        self.assertEqual(check.parse_duration("7d"), 7 * 86400)
        self.assertEqual(check.parse_duration("1h 30m"), 5400)

    def test_invalid(self):
        for text in ("", "abc", "5 parsecs", "-1s", "1h x"):
            self.assertIsNone(check.parse_duration(text), text)


class Contract(unittest.TestCase):
    def test_valid_values(self):
        for name, value in (("SERVER_PORT", "8080"), ("WORKER_CONCURRENCY", "5"), ("WORKER_PREFETCH", "0"),
                            ("SHUTDOWN_GRACE", "25s"), ("ROLE", "worker"), ("SERVER_HOST", "0.0.0.0"),
                            ("SERVER_HOST", "::"), ("DATABASE_URL", "postgres://a:b@c:5432/d"),
                            ("DEMO_TIME_SCALE", "0.5"), ("LOG_FORMAT", "pretty")):
            self.assertIsNone(check.check_value(name, value), f"{name}={value}")

    def test_invalid_values(self):
        for name, value in (("SERVER_PORT", "0"), ("SERVER_PORT", "70000"), ("WORKER_CONCURRENCY", "0"),
                            ("WORKER_PREFETCH", "-1"), ("SHUTDOWN_GRACE", "soon"), ("ROLE", "both"),
                            ("SERVER_HOST", "localhost"), ("DATABASE_URL", "mysql://x"),
                            ("DEMO_TIME_SCALE", "fast"), ("DEMO_TIME_SCALE", "0"), ("LOG_FORMAT", "xml")):
            self.assertIsNotNone(check.check_value(name, value), f"{name}={value}")

    def test_deserialized_fields(self):
        rust = '''
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub database_url: Option<String>,
    pub(crate) worker_id: String,
    log_format: String,
}

#[derive(Debug)]
pub struct NotRead {
    pub secret_field: String,
}
'''
        self.assertEqual(check.deserialized_fields(rust), {"database_url", "worker_id", "log_format"})


class Interpolation(unittest.TestCase):
    def test_defaults(self):
        env = {"SET": "x", "EMPTY": ""}
        self.assertEqual(check.interpolate("${UNSET:-d}", env), "d")
        self.assertEqual(check.interpolate("${EMPTY:-d}", env), "d")
        self.assertEqual(check.interpolate("${EMPTY-d}", env), "")
        self.assertEqual(check.interpolate("${UNSET-d}", env), "d")
        self.assertEqual(check.interpolate("${SET:-d}", env), "x")
        self.assertEqual(check.interpolate("${SET:+alt}/${UNSET:+alt}", env), "alt/")
        self.assertEqual(check.interpolate("$SET ${SET} $$SET", env), "x x $SET")

    def test_nested_default(self):
        self.assertEqual(check.interpolate("${A:-${B:-inner}}", {}), "inner")
        self.assertEqual(check.interpolate("postgres://${U:-taskq}@h/${D:-taskq}", {"D": "db"}),
                         "postgres://taskq@h/db")

    def test_required(self):
        with self.assertRaises(ValueError):
            check.interpolate("${NEEDED:?set it}", {})
        with self.assertRaises(ValueError):
            check.interpolate("${NEEDED:?set it}", {"NEEDED": ""})
        self.assertEqual(check.interpolate("${NEEDED?set it}", {"NEEDED": ""}), "")


class Compose(unittest.TestCase):
    def test_environment_forms(self):
        self.assertEqual(check.compose_env({"environment": ["A=1", "B", "C=x=y"]}), {"A": "1", "B": None, "C": "x=y"})
        self.assertEqual(check.compose_env({"environment": {"A": 1, "B": None}}), {"A": "1", "B": None})
        self.assertEqual(check.compose_env({}), {})

    def test_taskq_services(self):
        model = {"services": {"postgres": {"image": "postgres:16"}, "server": {"build": {"context": "."}},
                              "worker": {"image": "registry.example.com/taskq:1@sha256:00"}}}
        self.assertEqual(set(check.compose_taskq_services(model)), {"server", "worker"})


    def test_workers_must_serve_default(self):
        step = quiet_step()
        check.check_compose_workers(step, {"worker": {"environment": {"ROLE": "worker"}},
                                           "worker-emails": {"environment": {"ROLE": "worker", "WORKER_QUEUES": "emails=20"}},
                                           "server": {"environment": {"ROLE": "server"}}})
        self.assertEqual(step.errors, [])
        check.check_compose_workers(step, {"worker-emails": {"environment": ["ROLE=worker", "WORKER_QUEUES=emails=20"]}})
        self.assertEqual(len(step.errors), 1, step.errors)
        check.check_compose_workers(step, {"w": {"environment": ["ROLE=worker", "WORKER_QUEUES=emails"]}})
        self.assertEqual(len(step.errors), 2, step.errors)
        self.assertIn("is not QUEUE=EXECUTORS", step.errors[-1])


class Images(unittest.TestCase):
    def test_repo(self):
        self.assertEqual(check.image_repo("registry.example.com:5000/team/taskq:1.2@sha256:ab"), "taskq")
        self.assertTrue(check.is_taskq_image("taskq"))
        self.assertFalse(check.is_taskq_image("postgres:16-bookworm"))
        self.assertFalse(check.is_taskq_image("example.com/taskq-tools:1"))


class Yaml(unittest.TestCase):
    def test_duplicate_keys_are_refused(self):
        with self.assertRaises(ValueError):
            check.load_docs("a: 1\na: 2\n", "dup.yaml")

    def test_empty_documents_dropped(self):
        self.assertEqual(check.load_docs("---\na: 1\n---\n---\nb: 2\n", "x.yaml"), [{"a": 1}, {"b": 2}])


class Env(unittest.TestCase):
    def test_env_from_configmap_and_secret(self):
        cm = {"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"SERVER_PORT": "8080"}}
        secret = {"kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"DATABASE_URL": "x"}}
        source = check.Source("test", [("a", cm), ("b", secret)])
        c = {"envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"}},
                         {"configMapRef": {"name": "absent"}}],
             "env": [{"name": "SERVER_PORT", "value": "9090"}, {"name": "WORKER_ID", "valueFrom": {}}]}
        env = check.container_env(source, c)
        self.assertEqual(env["SERVER_PORT"], ("9090", "env"))
        self.assertEqual(env["DATABASE_URL"], (None, "Secret sec"))
        self.assertEqual(env["WORKER_ID"], (None, "valueFrom"))
        self.assertEqual(env["<keys of ConfigMap absent>"], (None, "unresolved"))


class Policy(unittest.TestCase):
    def test_good_worker_passes(self):
        self.assertEqual(policy_errors(GOOD_WORKER), [])

    def test_root_and_writable_root_fail(self):
        def bad(doc):
            doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False
            container(doc)["securityContext"]["readOnlyRootFilesystem"] = False
        errors = policy_errors(worker(bad))
        self.assertTrue(any("runAsNonRoot" in e for e in errors), errors)
        self.assertTrue(any("readOnlyRootFilesystem" in e for e in errors), errors)

    def test_missing_limits_fail(self):
        errors = policy_errors(worker(lambda d: container(d)["resources"].pop("limits")))
        self.assertEqual(sorted(e.rsplit(": ", 1)[1] for e in errors),
                         ["resources.limits.cpu missing", "resources.limits.memory missing"])

    def test_grace_period_must_exceed_shutdown_grace(self):
        errors = policy_errors(worker(lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=25)))
        self.assertTrue(any("terminationGracePeriodSeconds 25 must exceed SHUTDOWN_GRACE 25s" in e for e in errors), errors)

    def test_worker_id_and_probes(self):
        def bad(doc):
            c = container(doc)
            c["env"] = [e for e in c["env"] if e["name"] != "WORKER_ID"]
            c["readinessProbe"]["httpGet"]["path"] = "/health"
        errors = policy_errors(worker(bad))
        self.assertTrue(any("WORKER_ID must come from the pod name" in e for e in errors), errors)
        self.assertTrue(any("readinessProbe checks /health" in e for e in errors), errors)

    def test_host_path_and_token_fail(self):
        def bad(doc):
            spec = doc["spec"]["template"]["spec"]
            spec["automountServiceAccountToken"] = True
            spec["volumes"] = [{"name": "h", "hostPath": {"path": "/"}}]
        errors = policy_errors(worker(bad))
        self.assertTrue(any("automountServiceAccountToken" in e for e in errors), errors)
        self.assertTrue(any("hostPath" in e for e in errors), errors)


class CustomResources(unittest.TestCase):
    def scaled_object(self, **spec):
        base = {"scaleTargetRef": {"name": "taskq-worker"},
                "triggers": [{"type": "postgresql", "metadata": {"query": "SELECT 1", "targetQueryValue": "20"}}]}
        base.update(spec)
        return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "w"}, "spec": base}

    def test_valid(self):
        step = quiet_step()
        self.assertTrue(check.validate_crd(step, "t", self.scaled_object(minReplicaCount=0)))
        self.assertEqual(step.errors, [])

    def test_unknown_field_and_wrong_type(self):
        step = quiet_step()
        self.assertFalse(check.validate_crd(step, "t", self.scaled_object(minReplicas=1, maxReplicaCount="9")))
        self.assertEqual(len(step.errors), 2, step.errors)

    def test_classify(self):
        self.assertEqual(check.classify(self.scaled_object()), "crd")
        self.assertEqual(check.classify({"apiVersion": "kustomize.config.k8s.io/v1beta1"}), "kustomization")
        self.assertEqual(check.classify({"apiVersion": "apps/v1", "kind": "Deployment"}), "k8s")


class Queues(unittest.TestCase):
    def test_parse_worker_queues(self):
        self.assertEqual(check.parse_worker_queues("default=5,emails=20,reports.v2_x-y=1"),
                         {"default": 5, "emails": 20, "reports.v2_x-y": 1})
        self.assertEqual(check.parse_worker_queues("a=1000"), {"a": 1000})

    def test_parse_worker_queues_refuses(self):
        for text in ("", "emails", "emails=0", "emails=1001", "emails=x", "Emails=1", "a=1,a=2", "a=1,",
                     "a=1, b=2", "=3", "x" * 65 + "=1", "a=-1"):
            with self.assertRaises(ValueError, msg=text):
                check.parse_worker_queues(text)

    def test_contract_value(self):
        self.assertIsNone(check.check_value("WORKER_QUEUES", "default=5,emails=20"))
        self.assertIn("twice", check.check_value("WORKER_QUEUES", "a=1,a=1"))

    def test_served_queues(self):
        self.assertEqual(check.served_queues(None), {"default"})
        self.assertEqual(check.served_queues(""), {"default"})
        self.assertEqual(check.served_queues("emails=20,reports=1"), {"emails", "reports"})

    def test_query_queues(self):
        base = "SELECT count(*) FROM tasks WHERE status = 'queued' AND run_at <= now()"
        self.assertIsNone(check.query_queues(base))
        self.assertEqual(check.query_queues(base + " AND queue IN ('emails', 'reports')"), {"emails", "reports"})
        self.assertEqual(check.query_queues(base + " AND queue in ('default')"), {"default"})
        self.assertEqual(check.query_queues(base + " AND queue = ANY('{emails,reports}')"), {"emails", "reports"})
        self.assertEqual(check.query_queues(base + " AND queue = ANY('{a}'::text[])"), {"a"})
        self.assertEqual(check.query_queues(base + " AND queue = 'emails'"), {"emails"})

    def test_query_queues_refuses_what_it_cannot_read(self):
        base = "SELECT count(*) FROM tasks WHERE status = 'queued' AND run_at <= now()"
        for tail in (" AND queue LIKE 'e%'", " AND queue IN ('a') AND queue = 'b'", " AND queue IN (SELECT name FROM q)",
                     " AND queue IN ('Bad Name')"):
            with self.assertRaises(ValueError, msg=tail):
                check.query_queues(base + tail)

    def test_selector_matches(self):
        labels = {"app": "taskq", "component": "worker-emails"}
        self.assertTrue(check.selector_matches({"matchLabels": {"app": "taskq"}}, labels))
        self.assertFalse(check.selector_matches({"matchLabels": {"component": "worker"}}, labels))
        expr = {"matchExpressions": [{"key": "component", "operator": "In", "values": ["server", "worker-emails"]}]}
        self.assertTrue(check.selector_matches(expr, labels))
        expr = {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}
        self.assertFalse(check.selector_matches(expr, labels))


def worker_deployment(name, queues=None, component=None):
    doc = copy.deepcopy(GOOD_WORKER)
    doc["metadata"]["name"] = name
    labels = {"app.kubernetes.io/component": component or name}
    doc["spec"]["selector"]["matchLabels"] = labels
    doc["spec"]["template"]["metadata"]["labels"] = dict(labels)
    if queues is not None:
        container(doc)["env"].append({"name": "WORKER_QUEUES", "value": queues})
    return doc


def scaled_object(name, target, query):
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"name": target}, "triggers": [{
                "type": "postgresql", "authenticationRef": {"name": "auth"},
                "metadata": {"query": query, "targetQueryValue": "20"}}]}}


AUTH = {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication", "metadata": {"name": "auth"},
        "spec": {"secretTargetRef": [{"parameter": "connection", "name": "taskq", "key": "DATABASE_URL"}]}}
RUNNABLE = "SELECT count(*) FROM tasks WHERE status = 'queued' AND run_at <= now()"


class WorkerGroups(unittest.TestCase):
    def test_expectations_inherit_keda_and_pdb(self):
        values = {"fullnameOverride": "q", "worker": {
            "keda": {"enabled": True},
            "groups": [{"name": "emails", "queues": "emails=20"},
                       {"name": "reports", "queues": "reports=1", "keda": {"enabled": False},
                        "podDisruptionBudget": {"enabled": False}}]}}
        self.assertEqual(check.worker_expectations(values), [
            {"name": "q-worker", "queues": None, "keda": True, "pdb": True},
            {"name": "q-worker-emails", "queues": "emails=20", "keda": True, "pdb": True},
            {"name": "q-worker-reports", "queues": "reports=1", "keda": False, "pdb": False},
        ])
        self.assertEqual(check.worker_expectations(None),
                         [{"name": "taskq-worker", "queues": None, "keda": False, "pdb": True}])

    def keda_errors(self, docs):
        step = quiet_step()
        check.check_keda(step, check.Source("test", [("t", d) for d in docs + [AUTH]]))
        return step.errors

    def test_query_must_name_exactly_the_served_queues(self):
        dep = worker_deployment("w-emails", "emails=20,bulk=2")
        good = scaled_object("w-emails", "w-emails", RUNNABLE + " AND queue IN ('bulk', 'emails')")
        self.assertEqual(self.keda_errors([dep, good]), [])
        fewer = scaled_object("w-emails", "w-emails", RUNNABLE + " AND queue IN ('emails')")
        self.assertTrue(any("counts the queues emails, but" in e for e in self.keda_errors([dep, fewer])))
        every = scaled_object("w-emails", "w-emails", RUNNABLE)
        self.assertTrue(any("every queue" in e for e in self.keda_errors([dep, every])))

    def test_main_worker_serves_default(self):
        dep = worker_deployment("w")
        self.assertEqual(self.keda_errors([dep, scaled_object("w", "w", RUNNABLE + " AND queue = 'default'")]), [])
        errors = self.keda_errors([dep, scaled_object("w", "w", RUNNABLE + " AND queue IN ('emails')")])
        self.assertTrue(any("serves default" in e for e in errors), errors)

    def test_query_must_count_runnable_tasks(self):
        dep = worker_deployment("w")
        errors = self.keda_errors([dep, scaled_object("w", "w", "SELECT count(*) FROM tasks WHERE queue = 'default'")])
        self.assertTrue(any("runnable" in e for e in errors), errors)

    def test_check_workers(self):
        values = {"worker": {"groups": [{"name": "emails", "queues": "emails=20"}]}}
        main, group = worker_deployment("taskq-worker"), worker_deployment("taskq-worker-emails", "emails=20")
        pdbs = [{"kind": "PodDisruptionBudget", "metadata": {"name": d["metadata"]["name"]},
                 "spec": {"selector": d["spec"]["selector"]}} for d in (main, group)]
        for d in (main, group):
            d["spec"]["replicas"] = 1
        step = quiet_step()
        check.check_workers(step, check.Source("t", [("t", d) for d in [main, group, *pdbs]]), values)
        self.assertEqual(step.errors, [])
        wrong = worker_deployment("taskq-worker-emails", "emails=5")
        wrong["spec"]["replicas"] = 1
        step = quiet_step()
        check.check_workers(step, check.Source("t", [("t", d) for d in [main, wrong, pdbs[0]]]), values)
        self.assertTrue(any("WORKER_QUEUES='emails=5'" in e for e in step.errors), step.errors)
        self.assertTrue(any("one PodDisruptionBudget expected" in e for e in step.errors), step.errors)

    def test_overlapping_selectors(self):
        main = worker_deployment("taskq-worker", component="worker")
        group = worker_deployment("taskq-worker-emails", "emails=1", component="worker")
        step = quiet_step()
        check.check_selectors(step, check.Source("t", [("t", main), ("t", group)]))
        self.assertEqual(len(step.errors), 2, step.errors)


class Docs(unittest.TestCase):
    def test_metric_labels(self):
        text = ('`max by (queue) (taskq_queue_depth{status="queued"})` and '
                '`rate(taskq_tasks_released_total{reason="not_started"}[5m])`, `taskq_live_workers`')
        self.assertEqual(check.doc_metric_labels(text), {("taskq_queue_depth", "queue"), ("taskq_queue_depth", "status"),
                                                         ("taskq_tasks_released_total", "reason")})
        src = 'gauge!("taskq_queue_depth", "queue" => q.to_owned(), "status" => s).set(1.0);\ngauge!("taskq_x").set(0.0);'
        self.assertTrue(check.metric_has_label(src, "taskq_queue_depth", "status"))
        self.assertFalse(check.metric_has_label(src, "taskq_x", "queue"))

    def test_values_examples(self):
        text = "x\n```yaml\nworker:\n  replicas: 2\n```\n```yaml\nkind: Job\n```\n```sh\nworker: 1\n```\n"
        self.assertEqual(check.doc_values_examples(text, {"worker", "server"}), [{"worker": {"replicas": 2}}])


class Main(unittest.TestCase):
    def test_unknown_step(self):
        with redirect_stdout(io.StringIO()), mock.patch("sys.stderr", io.StringIO()):
            self.assertEqual(check.main(["nonsense"]), 2)


if __name__ == "__main__":
    unittest.main()
