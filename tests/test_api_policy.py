"""POST /evaluate refuses what the cluster's policy forbids: a 403 naming the rule and the field, before
any EvalJob exists (the operator refuses the same EvalJobs written with kubectl)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import kubernetes
import pytest

from evalkube import resource
from evalkube.api.settings import ApiSettings

from harness.api_server import ApiServer

BASE = {"model": "huggingface", "tasks": ["mme"], "num_gpus": 0}


@pytest.fixture
def strict_http(api_kubeconfig: str, namespace: str) -> Iterator[httpx.Client]:
    """An API with no EVALKUBE_POLICY: the safe default policy."""
    settings = ApiSettings(namespace=namespace, kubeconfig=api_kubeconfig, evaluator_image="evaluator:test")
    with ApiServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def evaljobs(kube_client: kubernetes.client.ApiClient, namespace: str) -> list[dict]:
    found = kubernetes.client.CustomObjectsApi(kube_client).list_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL
    )
    return found["items"]


@pytest.mark.parametrize(
    ("extra", "rule", "loc"),
    [
        ({"image": "evil/miner:latest"}, "allowedImages", ["body", "image"]),
        ({"num_gpus": 9}, "maxGpus", ["body", "num_gpus"]),
        ({"node_selector": {"pool": "a100"}}, "allowNodeSelector", ["body", "node_selector"]),
        ({"tolerations": [{"key": "gpu", "operator": "Exists"}]}, "allowTolerations", ["body", "tolerations"]),
        ({"resources": {"limits": {"memory": "64Gi"}}}, "maxResources", ["body", "resources", "limits", "memory"]),
        ({"allow_online": True}, "allowOnline", ["body", "allow_online"]),
        (
            {"model_args": {"trust_remote_code": True}},
            "allowTrustRemoteCode",
            ["body", "model_args", "trust_remote_code"],
        ),
    ],
)
def test_a_request_breaking_a_rule_is_a_403_naming_it_and_nothing_is_created(
    strict_http: httpx.Client,
    kube_client: kubernetes.client.ApiClient,
    namespace: str,
    extra: dict,
    rule: str,
    loc: list,
) -> None:
    response = strict_http.post("/evaluate", json={**BASE, **extra})
    assert response.status_code == 403, response.text
    [detail] = response.json()["detail"]
    assert (detail["rule"], detail["loc"]) == (rule, loc)
    assert detail["msg"].startswith(f"policy rule {rule}: ")
    assert evaljobs(kube_client, namespace) == []


def test_custom_task_python_in_the_configmap_is_refused(
    strict_http: httpx.Client, kube_client: kubernetes.client.ApiClient, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    data = {"t.yaml": "task: mine\nprocess_results: !function utils.score\n", "utils.py": "def score(): ..."}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "my-tasks"}, "data": data})
    response = strict_http.post(
        "/evaluate", json={**BASE, "tasks": ["mine"], "custom_tasks": {"config_map": "my-tasks"}}
    )
    assert response.status_code == 403, response.text
    messages = [item["msg"] for item in response.json()["detail"]]
    assert any("t.yaml: !function utils.score" in msg for msg in messages)
    assert any("utils.py: a Python module" in msg for msg in messages)
    assert evaljobs(kube_client, namespace) == []


def test_what_the_policy_allows_is_created(strict_http: httpx.Client) -> None:
    response = strict_http.post("/evaluate", json={**BASE, "image": "evaluator:test", "num_gpus": 8})
    assert response.status_code == 200, response.text


def test_the_client_shows_the_rule(strict_http: httpx.Client) -> None:
    from evalkube import EvalClient

    with EvalClient(str(strict_http.base_url), timeout=30) as client, pytest.raises(httpx.HTTPStatusError) as caught:
        client.evaluate(model="huggingface", tasks=["mme"], num_gpus=64)
    assert "policy rule maxGpus" in str(caught.value) and "num_gpus" in str(caught.value)
