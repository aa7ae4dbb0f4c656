"""The operator and the API restarted in the middle: while a job runs, and while a cancel is
pending. Whatever the order, the EvalJob ends as it should, through the restarted API, with one
Job. (Restarts during a checkpoint merge are left until merging has landed.)"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from evalkube.api.settings import ApiSettings
from evalkube.resource import Phase

from harness.api_server import ApiServer, wait_until

pytestmark = pytest.mark.timeout(90)

RESULTS = {"results": {"mme": {"exact_match,none": 0.625}}, "versions": {"mme": 1}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metrics(job_info: dict[str, Any]) -> Any:
    """The results document in a JobInfo (`metrics` where the API has that field, else `result`)."""
    return job_info["metrics"] if "metrics" in job_info else job_info.get("result")


def status_via_api(url: str, job_id: str, status: str) -> dict[str, Any]:
    return wait_until(
        lambda: (info := httpx.get(f"{url}/jobs/{job_id}").json())["status"] == status and info,
        f"GET /jobs/{job_id} to say {status}",
        30,
    )


def test_both_restarted_while_a_job_runs_it_completes_with_its_results(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any], api_kubeconfig: str, namespace: str
) -> None:
    settings, port = ApiSettings(namespace=namespace, kubeconfig=api_kubeconfig), free_port()
    operator = start_operator()
    with ApiServer(settings, port=port) as api:
        job_id = httpx.post(f"{api.url}/evaluate", json={"model": "huggingface", "tasks": ["mme"]}).json()["job_id"]
        kubelet.run_pod(job_id)
        status_via_api(api.url, job_id, "running")
    job_uid = cluster.job(job_id).metadata.uid

    operator.stop(kill=True)  # both gone while the pod runs and finishes
    kubelet.finish(job_id, 0, results=RESULTS)
    operator.start()
    operator.wait_ready()
    with ApiServer(settings, port=port) as api:
        done = status_via_api(api.url, job_id, "completed")
    assert metrics(done) == RESULTS
    assert cluster.job(job_id).metadata.uid == job_uid  # the same Job, never re-created


def test_a_cancel_pending_across_both_restarts_is_carried_out(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any], api_kubeconfig: str, namespace: str
) -> None:
    settings, port = ApiSettings(namespace=namespace, kubeconfig=api_kubeconfig), free_port()
    operator = start_operator()
    with ApiServer(settings, port=port) as api:
        job_id = httpx.post(f"{api.url}/evaluate", json={"model": "huggingface", "tasks": ["mme"]}).json()["job_id"]
        kubelet.run_pod(job_id)
        status_via_api(api.url, job_id, "running")
        operator.stop(kill=True)  # the cancel is accepted while no operator runs
        answer = httpx.delete(f"{api.url}/jobs/{job_id}")
        assert answer.status_code == 200 and "being cancelled" in answer.json()["message"]
    assert cluster.job(job_id) is not None  # nothing acted on it yet: the request is only recorded

    with ApiServer(settings, port=port) as api:  # a new API sees the pending cancel
        assert httpx.get(f"{api.url}/jobs/{job_id}").json()["status"] == "running"
        again = httpx.delete(f"{api.url}/jobs/{job_id}")
        assert again.json() == {"message": f"Job {job_id} is already being cancelled"}
        operator.start()
        operator.wait_ready()
        status_via_api(api.url, job_id, "cancelled")
    cluster.wait(lambda: cluster.job(job_id) is None, what="the Job to be deleted")
    assert cluster.wait_phase(job_id, Phase.CANCELLED)["message"] == "cancelled on request"


def test_an_operator_killed_right_after_a_cancel_still_cancels_once(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any]
) -> None:
    """Killed between the cancel and its end (Job deleted or not yet): the next one finishes it."""
    operator = start_operator()
    names = [cluster.apply({"model": "huggingface", "tasks": ["mme"]}) for _ in range(3)]
    for name in names:
        kubelet.run_pod(name)
        cluster.wait_phase(name, Phase.RUNNING)
    for name in names:
        cluster.patch_spec(name, {"cancelRequested": True})
    operator.stop(kill=True)
    operator.start()
    operator.wait_ready()
    for name in names:
        cluster.wait_phase(name, Phase.CANCELLED)
        cluster.wait(lambda name=name: cluster.job(name) is None, what=f"Job {name} deleted")
