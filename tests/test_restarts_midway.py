"""The operator and the API restarted in the middle: while a job runs, and while a cancel is
pending, and during a checkpoint merge that POST /merge waits on. Whatever the order, the EvalJob
or the merge ends as it should, through the restarted API, with one Job."""

from __future__ import annotations

import concurrent.futures
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from evalkube import resource
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


def merge_summary(path: str) -> str:
    """What `evalkube-runner merge` leaves in its termination message on success."""
    return json.dumps({"merged_path": path, "format": "fsdp2", "world_size": 2, "seconds": 1.0})


def only_merge(cluster: Any) -> str | None:
    listed = cluster.custom.list_namespaced_custom_object(
        resource.GROUP, resource.VERSION, cluster.namespace, resource.MERGE_PLURAL
    )["items"]
    return listed[0]["metadata"]["name"] if len(listed) == 1 else None


def test_the_operator_killed_while_post_merge_waits_the_answer_still_comes(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any], api_kubeconfig: str, namespace: str,
    shared_volumes: str,
) -> None:  # fmt: skip
    operator = start_operator(shared_volumes=shared_volumes)
    settings = ApiSettings(namespace=namespace, kubeconfig=api_kubeconfig, shared_volumes=shared_volumes)
    with ApiServer(settings) as api, concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(httpx.post, f"{api.url}/merge", json={"checkpoint_path": "/ckpt/run"}, timeout=90)
        merge = wait_until(lambda: only_merge(cluster), "the CheckpointMerge")
        kubelet.run_pod(merge)
        operator.stop(kill=True)  # the merge pod runs on and finishes while no operator watches
        kubelet.finish(merge, 0, message=merge_summary("/ckpt/run"))
        operator.start()
        operator.wait_ready()
        answer = waiting.result(60).json()
    assert (answer["success"], answer["merged_path"], answer["merge_id"]) == (True, "/ckpt/run", merge)
    assert [job.metadata.name for job in cluster.batch.list_namespaced_job(namespace).items] == [merge]


def test_the_api_restarted_during_a_merge_the_merge_is_read_back_by_its_id(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any], api_kubeconfig: str, namespace: str,
    shared_volumes: str,
) -> None:  # fmt: skip
    start_operator(shared_volumes=shared_volumes)
    settings = ApiSettings(namespace=namespace, kubeconfig=api_kubeconfig, shared_volumes=shared_volumes)
    port = free_port()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with ApiServer(settings, port=port) as api:
            waiting = pool.submit(httpx.post, f"{api.url}/merge", json={"checkpoint_path": "/ckpt/run"}, timeout=90)
            merge = wait_until(lambda: only_merge(cluster), "the CheckpointMerge")
            kubelet.run_pod(merge)
        try:  # the API went away under the waiting request (after its shutdown grace): no success
            cut_short = waiting.result(30)
            assert cut_short.status_code != 200 or cut_short.json()["success"] is False
        except httpx.HTTPError:
            pass  # or the connection was cut
    kubelet.finish(merge, 0, message=merge_summary("/ckpt/run"))
    with ApiServer(settings, port=port) as api:
        done = wait_until(
            lambda: (body := httpx.get(f"{api.url}/merges/{merge}").json())["status"] == "completed" and body,
            "the merge to read completed",
        )
    assert (done["success"], done["merged_path"]) == (True, "/ckpt/run")
    assert len(cluster.batch.list_namespaced_job(namespace).items) == 1
