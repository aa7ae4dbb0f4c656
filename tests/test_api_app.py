"""The app as a whole: its OpenAPI document, /merge, and how it is launched."""

from __future__ import annotations

import kubernetes
import pytest

from evalkube import resource
from evalkube.api.server import ServerArgs

pytestmark = pytest.mark.timeout(60)


def test_the_openapi_document_lists_lmms_evals_endpoints_and_metrics(http) -> None:
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {path: sorted(paths[path]) for path in paths} == {
        "/health": ["get"],
        "/evaluate": ["post"],
        "/jobs/{job_id}": ["delete", "get"],
        "/jobs/{job_id}/logs": ["get"],
        "/queue": ["get"],
        "/tasks": ["get"],
        "/models": ["get"],
        "/merge": ["post"],
        "/merges/{merge_id}": ["get"],
        "/metrics": ["get"],
    }


def test_a_merge_is_a_checkpointmerge_answered_within_the_bound(http, kube_client, namespace) -> None:
    response = http.post("/merge", json={"checkpoint_path": "/ckpt/step-100", "checkpoint_type": "ema"})

    assert response.status_code == 200  # no operator here: the API's bound (2 s in tests) passed
    body = response.json()
    assert (body["success"], body["status"]) == (False, "queued")
    merge = kubernetes.client.CustomObjectsApi(kube_client).get_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.MERGE_PLURAL, body["merge_id"]
    )
    assert merge["spec"] == {"checkpointPath": "/ckpt/step-100", "checkpointType": "ema"}
    assert http.get(f"/merges/{body['merge_id']}").json()["merge_id"] == body["merge_id"]
    assert http.get("/merges/merge-nope").status_code == 404


def test_a_merge_path_no_pod_mounts_is_refused_before_anything_exists(http, kube_client, namespace) -> None:
    response = http.post("/merge", json={"checkpoint_path": "/elsewhere/step-100"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "checkpoint_path"]
    listed = kubernetes.client.CustomObjectsApi(kube_client).list_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.MERGE_PLURAL
    )
    assert listed["items"] == []


def test_merge_still_validates_its_body(http) -> None:
    response = http.post("/merge", json={"checkpoint_path": "/ckpt", "checkpoint_type": "fp8"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "checkpoint_type"]


def test_server_args_override_the_environment_which_overrides_defaults(monkeypatch) -> None:
    monkeypatch.setenv("EVALKUBE_API_PORT", "9000")
    monkeypatch.setenv("EVALKUBE_API_NAMESPACE", "evals")
    monkeypatch.setenv("EVALKUBE_CATALOG_CONFIGMAP", "my-catalog")

    settings = ServerArgs(host="127.0.0.1", namespace="team-a").settings()

    assert (settings.host, settings.port, settings.namespace, settings.catalog_configmap) == (
        "127.0.0.1", 9000, "team-a", "my-catalog",
    )  # fmt: skip


def test_server_args_reject_a_bad_port() -> None:
    with pytest.raises(ValueError, match="Port must be an integer between 1 and 65535"):
        ServerArgs(port=70000)
