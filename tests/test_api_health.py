"""GET /health: 200 only while the Kubernetes API answers and the EvalJob cache is loaded."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from evalkube.api.settings import ApiSettings

from harness.api_server import ApiServer, wait_until

pytestmark = pytest.mark.timeout(60)


def test_healthy_with_the_queue_size(http) -> None:
    for _ in range(2):
        http.post("/evaluate", json={"model": "m", "tasks": ["t"]})

    response = http.get("/health")

    assert response.status_code == 200
    health = response.json()
    assert (health["status"], health["queue_size"], health["detail"]) == ("healthy", 2, None)
    assert datetime.fromisoformat(health["timestamp"]).tzinfo is not None


def test_unhealthy_when_the_kubernetes_api_goes_away(private_kube) -> None:
    emulator, kubeconfig = private_kube
    with ApiServer(ApiSettings(kubeconfig=kubeconfig)) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/health").status_code == 200

        emulator.stop()

        # the watch usually notices first; the reachability check within a second
        response = wait_until(
            lambda: (r := http.get("/health")).status_code == 503 and "Kubernetes API is unreachable" in r.text and r,
            "a 503 naming the unreachable Kubernetes API",
        )
        assert response.json()["status"] == "unhealthy"


def test_an_api_started_without_kubernetes_serves_and_says_why_it_is_unhealthy(private_kube) -> None:
    emulator, kubeconfig = private_kube
    emulator.stop()
    settings = ApiSettings(kubeconfig=kubeconfig, startup_sync_seconds=0)

    with ApiServer(settings) as server, httpx.Client(base_url=server.url) as http:
        health = http.get("/health")
        assert health.status_code == 503
        assert "the Kubernetes API is unreachable" in health.json()["detail"]
        assert "EvalJobs have not been loaded yet" in health.json()["detail"]

        queue = http.get("/queue")
        assert queue.status_code == 503
        assert queue.json()["detail"].startswith("EvalJobs have not been loaded from Kubernetes yet")
