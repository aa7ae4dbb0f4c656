"""GET /queue: the queue in run order (priority, then age), every running job, finished counts."""

from __future__ import annotations

from datetime import UTC, datetime

import kubernetes
import pytest

from evalkube import resource

from harness.api_server import evaljob_manifest, set_status, wait_until

pytestmark = pytest.mark.timeout(60)


def kubectl_create(kube_client: kubernetes.client.ApiClient, namespace: str, name: str, **spec) -> str:
    """Create an EvalJob as `kubectl create` would; returns its creationTimestamp."""
    created = kubernetes.client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL, evaljob_manifest(name, **spec)
    )
    return created["metadata"]["creationTimestamp"]


def test_an_empty_queue(http) -> None:
    assert http.get("/queue").json() == {
        "queue_size": 0,
        "running_job": None,
        "queued_jobs": [],
        "completed_jobs": 0,
        "failed_jobs": 0,
        "running_jobs": [],
        "cancelled_jobs": 0,
    }


def test_queued_jobs_run_by_priority_then_age_then_name(http, kube_client, namespace) -> None:
    oldest = kubectl_create(kube_client, namespace, "z-oldest")
    # creationTimestamp has one-second resolution: let the clock pass into the next second
    wait_until(lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") > oldest, "the next second")
    for name, priority in (("b-newer", 0), ("a-newer", 0), ("m-urgent", 5), ("c-low", -3)):
        kubectl_create(kube_client, namespace, name, priority=priority)

    queue = wait_until(lambda: (q := http.get("/queue").json())["queue_size"] == 5 and q, "5 queued jobs")

    assert queue["queued_jobs"] == ["m-urgent", "z-oldest", "a-newer", "b-newer", "c-low"]
    positions = [http.get(f"/jobs/{name}").json()["position_in_queue"] for name in queue["queued_jobs"]]
    assert positions == [0, 1, 2, 3, 4]


def test_queue_lists_every_running_job_and_counts_finished_ones(http, kube_client, namespace) -> None:
    names = [http.post("/evaluate", json={"model": "m", "tasks": ["t"]}).json()["job_id"] for _ in range(6)]
    queued, later, earlier, done, failed, cancelled = names
    set_status(kube_client, namespace, later, phase="Running", startedAt="2026-01-01T00:00:02Z")
    set_status(kube_client, namespace, earlier, phase="Running", startedAt="2026-01-01T00:00:01Z")
    for name, phase in ((done, "Completed"), (failed, "Failed"), (cancelled, "Cancelled")):
        set_status(kube_client, namespace, name, phase=phase)

    queue = wait_until(lambda: (q := http.get("/queue").json())["cancelled_jobs"] == 1 and q, "all phases")

    assert queue == {
        "queue_size": 1,
        "running_job": earlier,  # lmms-eval's single running job: the longest-running one
        "queued_jobs": [queued],
        "completed_jobs": 1,
        "failed_jobs": 1,
        "running_jobs": [earlier, later],
        "cancelled_jobs": 1,
    }
