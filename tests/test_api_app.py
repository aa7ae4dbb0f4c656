"""The app as a whole: its OpenAPI document, /merge, and how it is launched."""

from __future__ import annotations

import pytest

from evalkube.api.server import ServerArgs

pytestmark = pytest.mark.timeout(60)


def test_the_openapi_document_lists_lmms_evals_endpoints_and_metrics(http) -> None:
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {path: sorted(paths[path]) for path in paths} == {
        "/health": ["get"],
        "/evaluate": ["post"],
        "/jobs/{job_id}": ["delete", "get"],
        "/queue": ["get"],
        "/tasks": ["get"],
        "/models": ["get"],
        "/merge": ["post"],
        "/metrics": ["get"],
    }


def test_merge_is_not_implemented_yet(http) -> None:
    response = http.post("/merge", json={"checkpoint_path": "/ckpt/step-100", "checkpoint_type": "ema"})

    assert response.status_code == 501
    assert "not implemented by evalkube yet" in response.json()["detail"]


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
