"""RBAC is sufficient and minimal: each ServiceAccount of the chart may do exactly what its
component does.

A representative workload runs through the REAL components, each with its own bearer token, and
the emulator records every request: the API (token "api": submit, custom tasks, get, queue,
catalog with and without its ConfigMap, cancel queued and running, a pod's log, health), the operator (token
"operator": Jobs through queued/running/completed/failed, a failure whose pods it must re-read,
cancel, retention, a running-slot limit, a restart) and the evaluator (token "evaluator": the
runner's own ConfigMap writes, `evalkube.runner.kube`, called with the evaluator's kubeconfig;
the runner itself needs lmms-eval, which is too heavy here). The chart is rendered with real helm
for the test's namespace, and for each component:

- sufficient: every recorded call is allowed by its ServiceAccount's rules (else a 403 in a cluster);
- minimal: every (verb, resource) granted was used, or is in UNEXERCISED with the reason.

Discovery (/api, /apis, /version) needs no RBAC and is left out. A second, short workload runs the
operator cluster-wide (no --namespace) against the default render's ClusterRole.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from conftest import Cluster
from test_chart import NAMESPACE as RELEASE_NAMESPACE
from test_chart import container, env, granted, render, service_account

from evalkube import EvalClient, kube, resource
from evalkube.api.settings import ApiSettings
from evalkube.client import EvalServerError
from evalkube.resource import Phase
from evalkube.runner import kube as runner_kube

import rbac
from harness.api_server import ApiServer, PrivateKube, wait_until
from harness.kubelet import FakeKubelet
from harness.operator_process import OperatorProcess
from kubeemu import KubeEmulator, RequestRecord

Call = tuple[str, str, str, str, str | None]  # verb, API group, resource, subresource, namespace (None: all)
Grant = tuple[str, str, str, str]  # verb, API group, resource, subresource

# Granted, justified, and not exercised by the workload below: (component, grant) -> why.
UNEXERCISED: dict[tuple[str, Grant], str] = {
    (
        "operator",
        ("update", "evalkube.dev", "evaljobs", "finalizers"),
    ): "the operator's Jobs carry an ownerReference with blockOwnerDeletion; where the "
    "OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift) that needs update "
    "on the owner's finalizers. The emulator runs no admission plugins.",
    (
        "operator",
        ("update", "evalkube.dev", "checkpointmerges", "finalizers"),
    ): "as for evaljobs/finalizers: a merge's Job has an ownerReference with blockOwnerDeletion.",
}

CATALOG = {"tasks": ["mme", "mmmu_val"], "models": ["huggingface", "llava"]}
CUSTOM_TASKS = {"my_task.yaml": "task: my_task\ndataset_path: json\noutput_type: generate_until\n"}
RESULTS = {
    resource.RESULTS_KEY: json.dumps({"results": {"mme": {"exact_match,none": 1.0}}}),
    resource.RESULTS_META_KEY: json.dumps({"dropped": []}),
}


def recorded(records: Iterable[RequestRecord], token: str, namespace: str | None = None) -> set[Call]:
    """The token's calls as RBAC sees them (discovery and /version, resource "", left out); with
    `namespace`, only those in it or cluster-wide, so a thread another test left behind (with the
    same token, in its own namespace) is not counted here."""
    return {
        (r.verb, r.api_group, r.resource, r.subresource, r.namespace or None)
        for r in records
        if r.token == token and r.resource and (namespace is None or r.namespace in ("", namespace))
    }


def forbidden(rules: list[dict[str, Any]], calls: set[Call]) -> list[Call]:
    return sorted((c for c in calls if not rbac.allows(rules, *c[:4], namespace=c[4])), key=str)


def show(calls: Iterable[Call]) -> str:
    return "\n  ".join(
        sorted(f"{v} {g or 'core'}/{r}{'/' + s if s else ''} in {ns or '(all)'}" for v, g, r, s, ns in calls)
    )


def assert_exactly_what_it_does(component: str, rules: list[dict[str, Any]], calls: set[Call]) -> None:
    denied = forbidden(rules, calls)
    assert not denied, f"the {component}'s ServiceAccount may not:\n  {show(denied)}"
    used = {call[:4] for call in calls}
    excused = {grant for (who, grant) in UNEXERCISED if who == component}
    assert excused <= granted(rules), f"UNEXERCISED lists grants the {component} no longer has"
    assert not excused & used, f"UNEXERCISED lists grants the {component} uses: {sorted(excused & used)}"
    unused = granted(rules) - used - excused
    assert not unused, f"the {component}'s ServiceAccount may, but never does: {sorted(unused)}"


def catalog_served(client: EvalClient) -> bool:
    try:
        return client.list_tasks() == CATALOG["tasks"] and client.list_models() == CATALOG["models"]
    except EvalServerError:
        return False


#: The chart README's example tenant Role, and what the workload's caller needs besides.
SUBMITTER_RULES = [
    {"apiGroups": ["evalkube.dev"], "resources": ["evaljobs"], "verbs": ["create", "get", "list", "patch"]},
    {"apiGroups": ["evalkube.dev"], "resources": ["checkpointmerges"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


def cluster_client(cluster: Cluster) -> kubernetes.client.ApiClient:
    return cluster.custom.api_client


def merge_names(cluster: Cluster) -> list[str]:
    listed = cluster.custom.list_namespaced_custom_object(
        resource.GROUP, resource.VERSION, cluster.namespace, resource.MERGE_PLURAL
    )
    return [item["metadata"]["name"] for item in listed["items"]]


def run_to_running(cluster: Cluster, kubelet: FakeKubelet, name: str) -> None:
    kubelet.run_pod(name)
    cluster.wait_phase(name, Phase.RUNNING)


def test_each_serviceaccount_may_do_exactly_what_its_component_does(
    kube_emulator: KubeEmulator,
    kubeconfigs: dict[str, str],
    api_kubeconfig: str,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    kubelet: FakeKubelet,
    cluster: Cluster,
    shared_volumes: str,
) -> None:
    first = len(kube_emulator.requests)
    operator = start_operator(max_completed_jobs=1, max_running=1, shared_volumes=shared_volumes)
    # The API authenticates and authorizes its caller (the default): a submitter with the chart
    # README's tenant Role, so the API's own TokenReviews and SubjectAccessReviews are recorded too.
    kube_emulator.add_token("submitter-token", "submitter")
    rbac_api = kubernetes.client.RbacAuthorizationV1Api(cluster_client(cluster))
    rbac_api.create_namespaced_role(namespace, {"metadata": {"name": "submitter"}, "rules": SUBMITTER_RULES})
    rbac_api.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "submitter"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "submitter"},
            "subjects": [{"kind": "User", "name": "submitter", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    settings = ApiSettings(
        namespace=namespace, kubeconfig=api_kubeconfig, shared_volumes=shared_volumes, auth="kubernetes"
    )
    with (
        ApiServer(settings) as api,
        EvalClient(api.url, timeout=30, token="submitter-token") as client,
        kube.api_client(kubeconfigs["evaluator"]) as pod,
    ):
        evaluator = kubernetes.client.CoreV1Api(pod)
        assert client.health()["status"] == "healthy"
        assert not catalog_served(client)  # no catalog ConfigMap yet: 503 saying why
        # The catalog hook (evaluator ServiceAccount) at install, and again at upgrade (replace).
        for _ in range(2):
            runner_kube.put_configmap(
                evaluator,
                namespace,
                "evalkube-catalog",
                {resource.CATALOG_KEY: json.dumps(CATALOG)},
                {resource.LABEL_MANAGED_BY: resource.MANAGED_BY},
            )
        wait_until(lambda: catalog_served(client), "the API to serve the catalog")

        # A's Job takes the one running slot (max_running=1); B waits for it and is cancelled.
        cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "my-tasks"}, "data": CUSTOM_TASKS})
        a = client.evaluate("huggingface", ["mme", "my_task"], custom_tasks="my-tasks")["job_id"]
        cluster.wait(lambda: cluster.job(a), what="A's Job")
        b = client.evaluate("llava", ["mme"], priority=1)["job_id"]
        cluster.wait(lambda: "waiting for a free slot" in cluster.status(b).get("message", ""), what="B to wait")
        assert client.get_queue_status()["queued_jobs"] == [b, a]  # priority first
        client.cancel_job(b)
        cluster.wait_phase(b, Phase.CANCELLED)

        # A runs, its pod writes the results (a retried pod replaces them), and it completes;
        # retention (max_completed_jobs=1) then deletes one of the two finished EvalJobs.
        run_to_running(cluster, kubelet, a)
        assert client.get_job(a)["status"] == "running"
        assert client.get_logs(a) == ""  # the API finds A's pod by label and reads its log
        with pytest.raises(EvalServerError, match="404"):
            client.get_job("no-such-job")  # not in the cache: one direct GET
        uid = cluster.evaljob(a)["metadata"]["uid"]
        for _ in range(2):
            runner_kube.put_results(evaluator, namespace, resource.result_configmap_name(a), a, uid, RESULTS)
        kubelet.finish(a, 0)
        # (B and A finished within the same second: which of them goes is not the point here.)
        cluster.wait(lambda: [cluster.evaljob(n) for n in (a, b)].count(None) == 1, what="retention")

        # C's Job fails while the pod in view still runs: the operator re-reads the pods.
        c = client.evaluate("huggingface", ["mme"], timeout_seconds=60)["job_id"]
        run_to_running(cluster, kubelet, c)
        kubelet.deadline_exceeded(c)
        assert "timed out" in cluster.wait_phase(c, Phase.FAILED)["error"]

        # D is cancelled while running: the operator deletes its Job.
        d = client.evaluate("huggingface", ["mme"])["job_id"]
        run_to_running(cluster, kubelet, d)
        client.cancel_job(d)
        cluster.wait_phase(d, Phase.CANCELLED)
        cluster.wait(lambda: cluster.job(d) is None, what="D's Job to be deleted")

        # F: a checkpoint merge (POST /merge waits); the kubelet plays its pod, which says where it wrote.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            merging = pool.submit(client.merge_checkpoint, "/ckpt/run/checkpoint-100")
            f = cluster.wait(lambda: next(iter(merge_names(cluster)), None), what="the CheckpointMerge")
            kubelet.run_pod(f)
            summary = {"merged_path": "/ckpt/run/checkpoint-100", "format": "fsdp2", "world_size": 2, "seconds": 1.0}
            kubelet.finish(f, 0, message=json.dumps(summary))
            assert merging.result(60)["success"] is True
        with pytest.raises(EvalServerError, match="404"):
            client.get_merge("merge-nope")  # not in the cache: one direct GET

        # A crash and restart; E then fails with the runner's message.
        operator.restart(kill=True)
        operator.wait_ready()
        e = client.evaluate("huggingface", ["mme"])["job_id"]
        run_to_running(cluster, kubelet, e)
        kubelet.finish(e, 1, message="lmms-eval failed: out of memory")
        assert "out of memory" in cluster.wait_phase(e, Phase.FAILED)["error"]
        assert client.health()["status"] == "healthy"
    records = kube_emulator.requests[first:]
    assert any(
        r.token == "operator" and (r.verb, r.resource) == ("list", "pods") and "kopf" not in r.user_agent
        for r in records
    ), "the operator never re-read C's pods"

    docs = render("--set", f"watchNamespaces={{{namespace}}}", "--set", f"api.namespace={namespace}")
    evaluator_sa = env(container(docs, "operator"))["EVALKUBE_EVALUATOR_SERVICE_ACCOUNT"]
    accounts = {
        "operator": (service_account(docs, "operator"), RELEASE_NAMESPACE, "operator"),
        "API": (service_account(docs, "api"), RELEASE_NAMESPACE, "api"),
        "evaluator": (evaluator_sa, namespace, "evaluator"),
    }
    calls = {component: recorded(records, token, namespace) for component, (_, _, token) in accounts.items()}
    for component, made in calls.items():
        print(f"\n{component} ({accounts[component][0]}):\n  {show(made)}")
    for component, (account, account_ns, _) in accounts.items():
        rules = rbac.rules_from_manifests(docs, account, account_ns)
        assert_exactly_what_it_does(component, rules, calls[component])


def test_the_cluster_wide_operator_may_do_what_it_does(private_kube: PrivateKube, tmp_path: Path) -> None:
    """No --namespace: kopf lists and watches across all namespaces, which the ClusterRole allows.

    On an emulator of its own, so that the operator sees no other test's EvalJobs. The ClusterRole
    holds the same rules as the namespaced Role (minimal is checked above).
    """
    emulator = private_kube.emulator
    kubeconfig = str(emulator.write_kubeconfig(tmp_path / "operator", token="operator"))
    tests = kube.api_client(str(emulator.write_kubeconfig(tmp_path / "test", token="test")))
    namespace = "team-a"
    kubernetes.client.CoreV1Api(tests).create_namespace({"metadata": {"name": namespace}})
    cluster = Cluster(tests, namespace)
    kubelet = FakeKubelet(tests, namespace, workdir=tmp_path / "kubelet").start()
    operator = OperatorProcess(kubeconfig, [], tmp_path / "operator.log", {"max_completed_jobs": "0"}).start()
    try:
        operator.wait_ready()
        name = cluster.apply({"model": "huggingface", "tasks": ["mme"]})
        run_to_running(cluster, kubelet, name)
        uid = cluster.evaljob(name)["metadata"]["uid"]
        # The pod's results (the evaluator's rights were checked above; here it is the operator's).
        runner_kube.put_results(cluster.core, namespace, resource.result_configmap_name(name), name, uid, RESULTS)
        kubelet.finish(name, 0)
        cluster.wait(lambda: cluster.evaljob(name) is None, what="retention (max_completed_jobs=0)")
    finally:
        operator.stop()
        kubelet.stop()
        tests.close()
    assert not operator.problems(), operator.log()

    docs = render()
    rules = rbac.rules_from_manifests(docs, service_account(docs, "operator"), RELEASE_NAMESPACE)
    calls = recorded(emulator.requests, "operator")
    print(f"\ncluster-wide operator:\n  {show(calls)}")
    assert ("watch", "evalkube.dev", "evaljobs", "", None) in calls
    denied = forbidden(rules, calls)
    assert not denied, f"the operator's ClusterRole does not allow:\n  {show(denied)}"
