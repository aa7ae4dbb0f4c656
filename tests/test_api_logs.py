"""GET /jobs/{id}/logs serves the evaluator pod's log through the Kubernetes API (pods/log).

The real API on uvicorn reads the emulator's pods/log endpoint (which behaves like the apiserver's
and the kubelet's, see test_kubeemu_logs.py); the tests play the Job controller and the kubelet:
they create the labelled pod, report its container's state and feed its log
(`KubeEmulator.append_pod_log`), the way the test kubelet does for a container it really runs.
"""

from __future__ import annotations

import datetime
import sys
import threading
import time
import traceback
from typing import Any

import httpx
import kubernetes
import pytest

from evalkube import AsyncEvalClient, EvalClient, resource
from evalkube.api.routers.logs import SOURCE_HEADER
from evalkube.client import EvalServerError

from harness.api_server import evaljob_manifest, set_status, wait_until
from kubeemu import KubeEmulator

POD = "job-pod-x7k2p"  # the Job controller's name for it; the API finds it by label


@pytest.fixture
def job(kube_client: kubernetes.client.ApiClient, namespace: str) -> str:
    kubernetes.client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL, evaljob_manifest("eval-logs")
    )
    return "eval-logs"


def make_pod(core: kubernetes.client.CoreV1Api, namespace: str, job: str, *, scheduled: bool = True) -> None:
    spec: dict[str, Any] = {"containers": [{"name": "evaluator", "image": "evaluator:test"}]}
    if scheduled:
        spec["nodeName"] = "node-1"
    labels = resource.child_labels(job)
    core.create_namespaced_pod(namespace, {"metadata": {"name": POD, "labels": labels}, "spec": spec})


def container(core: kubernetes.client.CoreV1Api, namespace: str, state: dict[str, Any]) -> None:
    status = {"name": "evaluator", "image": "evaluator:test", "imageID": "", "ready": True, "restartCount": 0}
    core.patch_namespaced_pod_status(POD, namespace, {"status": {"containerStatuses": [{**status, "state": state}]}})


def started(core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    container(core, namespace, {"running": {"startedAt": "2026-01-01T00:00:00Z"}})


def ended(core: kubernetes.client.CoreV1Api, namespace: str, code: int = 0) -> None:
    terminated = {"exitCode": code, "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:01:00Z"}
    container(core, namespace, {"terminated": terminated})


@pytest.fixture
def core(kube_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_client)


def test_an_unknown_job_is_404(http: httpx.Client) -> None:
    response = http.get("/jobs/eval-nope/logs")
    assert response.status_code == 404
    assert "eval-nope not found" in response.json()["detail"]


def test_a_queued_job_has_no_log_yet_and_says_what_it_waits_for(
    http: httpx.Client, kube_client: kubernetes.client.ApiClient, namespace: str, job: str, core: Any
) -> None:
    set_status(kube_client, namespace, job, phase="Queued", message="waiting for a free slot: 1 of max 1")
    wait_until(lambda: http.get(f"/jobs/{job}").json()["status"] == "queued", "the cache to see the EvalJob")
    response = http.get(f"/jobs/{job}/logs")
    assert response.status_code == 409
    assert response.json()["detail"] == f"Job {job} has no log yet (queued: waiting for a free slot: 1 of max 1)"

    make_pod(core, namespace, job, scheduled=False)  # not scheduled: the apiserver has no kubelet to ask
    assert http.get(f"/jobs/{job}/logs").status_code == 409
    core.patch_namespaced_pod(POD, namespace, {"spec": {"nodeName": "node-1"}})
    container(core, namespace, {"waiting": {"reason": "ContainerCreating"}})
    response = http.get(f"/jobs/{job}/logs")  # scheduled, not started: the kubelet's own words
    assert response.status_code == 409
    assert "is waiting to start: ContainerCreating" in response.json()["detail"]


def test_the_log_tail_and_since(
    eval_client: EvalClient, kube_emulator: KubeEmulator, namespace: str, job: str, core: Any
) -> None:
    make_pod(core, namespace, job)
    started(core, namespace)
    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    kube_emulator.append_pod_log(namespace, POD, "importing lmms_eval\n", at=an_hour_ago)
    kube_emulator.append_pod_log(namespace, POD, "Building contexts for mme\nModel Responding: 50%\n")
    kube_emulator.append_pod_log(namespace, POD, "a line still being written")  # no newline yet: not shown

    assert eval_client.get_logs(job) == "importing lmms_eval\nBuilding contexts for mme\nModel Responding: 50%\n"
    assert eval_client.get_logs(job, tail_lines=1) == "Model Responding: 50%\n"
    assert eval_client.get_logs(job, since_seconds=600) == "Building contexts for mme\nModel Responding: 50%\n"
    assert eval_client.get_logs(job, tail_lines=0) == ""


def test_bad_parameters_are_422_naming_them(http: httpx.Client, job: str) -> None:
    response = http.get(f"/jobs/{job}/logs", params={"tail_lines": -1, "since_seconds": 0})
    assert response.status_code == 422
    assert {tuple(error["loc"]) for error in response.json()["detail"]} == {
        ("query", "tail_lines"),
        ("query", "since_seconds"),
    }


def test_follow_streams_the_whole_run_and_ends_with_the_container(
    eval_client: EvalClient, kube_emulator: KubeEmulator, namespace: str, job: str, core: Any
) -> None:
    make_pod(core, namespace, job)
    started(core, namespace)
    kube_emulator.append_pod_log(namespace, POD, "evalkube-runner: python -m lmms_eval ...\n")
    received: list[str] = []
    done = threading.Event()

    def follow() -> None:
        for text in eval_client.stream_logs(job):
            received.append(text)
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    wait_until(lambda: received, "the first chunk")
    for step in range(3):
        kube_emulator.append_pod_log(namespace, POD, f"step {step}\n")
        wait_until(lambda: f"step {step}\n" in "".join(received), f"step {step} to arrive while the pod runs")
    assert not done.is_set()
    kube_emulator.append_pod_log(namespace, POD, "results written")  # the last line, unterminated
    ended(core, namespace)
    assert done.wait(10), "the stream did not end with the container"
    assert "".join(received) == "evalkube-runner: python -m lmms_eval ...\nstep 0\nstep 1\nstep 2\nresults written"


def test_follow_of_a_finished_container_returns_what_it_printed(
    eval_client: EvalClient, kube_emulator: KubeEmulator, namespace: str, job: str, core: Any
) -> None:
    make_pod(core, namespace, job)
    started(core, namespace)
    kube_emulator.append_pod_log(namespace, POD, "one\ntwo\n")
    ended(core, namespace)
    assert "".join(eval_client.stream_logs(job, tail_lines=1)) == "two\n"


def _follows_served() -> int:
    """Threads of the (in-process) emulator now streaming a followed log to a client."""
    return sum(
        1
        for frame in sys._current_frames().values()
        if any(f.name == "_follow" and f.filename.endswith("kubeemu/server.py") for f in traceback.extract_stack(frame))
    )


def test_a_client_that_leaves_a_follow_frees_the_upstream_stream(
    api_url: str, kube_emulator: KubeEmulator, namespace: str, job: str, core: Any
) -> None:
    make_pod(core, namespace, job)
    started(core, namespace)
    kube_emulator.append_pod_log(namespace, POD, "hello\n")
    with (
        httpx.Client(base_url=api_url, timeout=10) as client,
        client.stream("GET", f"/jobs/{job}/logs", params={"follow": "true"}) as response,
    ):
        assert response.status_code == 200
        assert next(response.iter_text()) == "hello\n"
        assert _follows_served() == 1
    # The client went away while the container still runs: the API cuts its upstream read (a
    # connection left open would block a worker thread until the container ends).
    wait_until(lambda: _follows_served() == 0, "the upstream follow to be closed", timeout=10)


def test_once_the_pod_is_gone_the_log_tail_the_evaljob_kept_is_served(
    http: httpx.Client, eval_client: EvalClient, kube_client: Any, namespace: str, job: str, core: Any
) -> None:
    tail = "the evaluator exited with code 1: lmms-eval produced no results: KeyError: 'mme'\nTraceback ..."
    set_status(kube_client, namespace, job, phase="Failed", error=tail, completedAt="2026-01-01T00:01:00Z")
    wait_until(lambda: http.get(f"/jobs/{job}").json()["status"] == "failed", "the cache to see the failure")
    response = http.get(f"/jobs/{job}/logs")
    assert response.status_code == 200
    assert response.headers[SOURCE_HEADER] == "status.error"
    assert response.text == tail + "\n"
    assert eval_client.get_logs(job) == tail + "\n"


def test_a_finished_job_whose_pod_is_gone_and_kept_no_tail_is_404(
    http: httpx.Client, kube_client: Any, namespace: str, job: str
) -> None:
    set_status(kube_client, namespace, job, phase="Cancelled", message="cancelled on request")
    wait_until(lambda: http.get(f"/jobs/{job}").json()["status"] == "cancelled", "the cache to see it")
    response = http.get(f"/jobs/{job}/logs")
    assert response.status_code == 404
    assert response.json()["detail"] == f"Job {job} is cancelled and its evaluator pod is gone; its log went with it"
    with pytest.raises(EvalServerError, match="404"):
        EvalClient(str(http.base_url)).get_logs(job)


async def test_the_async_client(
    async_eval_client: AsyncEvalClient, kube_emulator: KubeEmulator, namespace: str, job: str, core: Any
) -> None:
    make_pod(core, namespace, job)
    started(core, namespace)
    kube_emulator.append_pod_log(namespace, POD, "a\nb\n")
    assert await async_eval_client.get_logs(job, tail_lines=1) == "b\n"
    stream = async_eval_client.stream_logs(job)
    assert await anext(stream) == "a\nb\n"
    kube_emulator.append_pod_log(namespace, POD, "c\n")
    assert await anext(stream) == "c\n"
    ended(core, namespace)
    assert [text async for text in stream] == []


def test_the_log_of_the_newest_pod(eval_client: EvalClient, kube_emulator: KubeEmulator, namespace: str, job: str,
                                   core: Any) -> None:  # fmt: skip
    make_pod(core, namespace, job)
    started(core, namespace)
    kube_emulator.append_pod_log(namespace, POD, "first attempt\n")
    time.sleep(1.1)  # creationTimestamp has whole seconds
    spec = {"containers": [{"name": "evaluator", "image": "evaluator:test"}], "nodeName": "node-1"}
    meta = {"name": POD + "-2", "labels": resource.child_labels(job)}
    core.create_namespaced_pod(namespace, {"metadata": meta, "spec": spec})
    kube_emulator.append_pod_log(namespace, POD + "-2", "second attempt\n")
    assert eval_client.get_logs(job) == "second attempt\n"
