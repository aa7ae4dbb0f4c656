"""GET /tasks and /models from the catalog ConfigMap, and the name checks POST /evaluate makes with it."""

from __future__ import annotations

import json

import kubernetes
import pytest

from evalkube import resource

from harness.api_server import wait_until

pytestmark = pytest.mark.timeout(60)

CATALOG = {
    "tasks": ["mme", "mmmu_val", "mmmu_test", "gsm8k"],
    "models": ["huggingface", "vllm", "qwen2_5_vl"],
    "lmmsEvalVersion": "0.7.3",
    "generatedAt": "2026-01-01T00:00:00Z",
}


def write_configmap(kube_client: kubernetes.client.ApiClient, namespace: str, name: str, data: dict[str, str]) -> None:
    core = kubernetes.client.CoreV1Api(kube_client)
    body = {"metadata": {"name": name}, "data": data}
    try:
        core.create_namespaced_config_map(namespace, body)
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_config_map(name, namespace, body)


def publish_catalog(http, kube_client, namespace, catalog=CATALOG) -> None:
    """Write the catalog ConfigMap as `evalkube-runner catalog` does, and wait for the API to serve it."""
    write_configmap(kube_client, namespace, "evalkube-catalog", {resource.CATALOG_KEY: json.dumps(catalog)})
    wait_until(lambda: http.get("/tasks").json().get("tasks") == catalog["tasks"], "the catalog to be served")


def submit(http, **body):
    return http.post("/evaluate", json={"model": "huggingface", "tasks": ["mme"], **body})


@pytest.mark.parametrize("path", ["/tasks", "/models"])
def test_without_a_catalog_the_lists_are_503_saying_why_and_how_to_get_one(http, path) -> None:
    response = http.get(path)

    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "catalog is not available" in detail
    assert "ConfigMap 'evalkube-catalog'" in detail
    assert "evalkube-runner catalog" in detail


def test_without_a_catalog_names_are_not_checked(http) -> None:
    assert submit(http, model="any_model", tasks=["any_task"]).status_code == 200


def test_the_catalog_is_served_in_lmms_evals_shapes_and_follows_updates(http, kube_client, namespace) -> None:
    publish_catalog(http, kube_client, namespace)
    assert http.get("/tasks").json() == {"tasks": CATALOG["tasks"]}
    assert http.get("/models").json() == {"models": CATALOG["models"]}

    publish_catalog(http, kube_client, namespace, {**CATALOG, "tasks": ["mme", "new_task"]})
    assert http.get("/tasks").json() == {"tasks": ["mme", "new_task"]}


def test_an_unusable_catalog_is_503_saying_what_is_wrong(http, kube_client, namespace) -> None:
    write_configmap(kube_client, namespace, "evalkube-catalog", {resource.CATALOG_KEY: '{"tasks": "mme"}'})

    response = wait_until(
        lambda: (r := http.get("/tasks")).status_code == 503 and "not usable" in r.text and r, "a 503 about the catalog"
    )

    assert "'tasks' is not a list of names" in response.json()["detail"]


def test_unknown_names_are_422_with_the_closest_known_ones(http, kube_client, namespace) -> None:
    publish_catalog(http, kube_client, namespace)

    response = submit(http, model="hugginface", tasks=["mme", "mmmu_vall"])

    assert response.status_code == 422
    assert [(error["loc"], error["msg"]) for error in response.json()["detail"]] == [
        (["body", "model"], "model: unknown model 'hugginface'; did you mean 'huggingface'?"),
        (["body", "tasks", 1], "tasks[1]: unknown task 'mmmu_vall'; did you mean 'mmmu_val'?"),
    ]
    assert http.get("/queue").json()["queue_size"] == 0


def test_known_names_are_accepted(http, kube_client, namespace) -> None:
    publish_catalog(http, kube_client, namespace)

    assert submit(http, model="vllm", tasks=["mmmu_val", "gsm8k"]).status_code == 200


TASK_YAML = """\
task: my_tinyqa
dataset_path: json
process_results: !function utils.process_results
"""
GROUP_YAML = """\
group: my_suite
task: [my_tinyqa]
"""


def test_tasks_defined_by_the_requests_custom_tasks_configmap_are_accepted(http, kube_client, namespace) -> None:
    publish_catalog(http, kube_client, namespace)
    write_configmap(kube_client, namespace, "my-tasks", {"tinyqa.yaml": TASK_YAML, "suite.yaml": GROUP_YAML})

    accepted = submit(http, tasks=["mme", "my_tinyqa", "my_suite"], custom_tasks={"config_map": "my-tasks"})
    rejected = submit(http, tasks=["my_tinyqa", "my_tinyqb"], custom_tasks={"config_map": "my-tasks"})

    assert accepted.status_code == 200
    assert rejected.status_code == 422
    assert [error["msg"] for error in rejected.json()["detail"]] == [
        "tasks[1]: unknown task 'my_tinyqb'; did you mean 'my_tinyqa'?"
    ]


@pytest.mark.parametrize("with_catalog", [False, True])
def test_a_missing_custom_tasks_configmap_is_422(http, kube_client, namespace, with_catalog) -> None:
    if with_catalog:
        publish_catalog(http, kube_client, namespace)

    response = submit(http, custom_tasks={"config_map": "nowhere"})

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "custom_tasks", "config_map"]
    assert error["msg"] == f"custom_tasks.config_map: ConfigMap 'nowhere' not found in namespace '{namespace}'"


def test_a_custom_tasks_configmap_with_broken_yaml_is_422(http, kube_client, namespace) -> None:
    write_configmap(kube_client, namespace, "broken", {"task.yaml": "task: [unclosed"})

    response = submit(http, custom_tasks={"config_map": "broken"})

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "custom_tasks", "config_map"]
    assert error["msg"].startswith("custom_tasks.config_map: ConfigMap 'broken': 'task.yaml' is not valid YAML")
