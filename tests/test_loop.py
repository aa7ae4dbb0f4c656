"""The whole loop through REST: client -> API -> EvalJob -> operator -> Job -> (kubelet) -> status
-> API -> client. Real API on uvicorn, real operator process, tests playing the kubelet."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from evalkube import AsyncEvalClient, EvalClient, JobCancelledError, JobFailedError
from evalkube.resource import Phase

RESULTS = {"results": {"mme": {"exact_match,none": 0.75}}, "versions": {"mme": 1}, "n-shot": {"mme": 0}}

pytestmark = pytest.mark.usefixtures("operator")


def test_submit_run_complete_and_read_the_metrics(eval_client: EvalClient, cluster: Any, kubelet: Any) -> None:
    job = eval_client.evaluate(model="huggingface", tasks=["mme"], model_args={"pretrained": "/ckpt/models/ckpt-100"})
    assert job["status"] == "queued"
    name = job["job_id"]

    kubelet.wait_for_pod(name)  # the operator made a Job, the Job controller a pod
    assert cluster.evaljob(name)["spec"]["modelArgs"] == {"pretrained": "/ckpt/models/ckpt-100"}
    kubelet.start_container(name)
    cluster.wait(lambda: eval_client.get_job(name)["status"] == "running", what="running through REST")

    kubelet.finish(name, 0, results=RESULTS)
    done = eval_client.wait_for_job(name, poll_interval=0.05, timeout=30, verbose=False)
    assert done["status"] == "completed"
    assert done["metrics"] == RESULTS
    assert done["started_at"] and done["completed_at"]


def test_a_failure_reaches_the_client_with_its_reason(eval_client: EvalClient, kubelet: Any) -> None:
    name = eval_client.evaluate(model="huggingface", tasks=["mme"])["job_id"]
    kubelet.run_pod(name)
    kubelet.finish(name, 1, message="task 'mme': dataset not found offline")
    with pytest.raises(JobFailedError, match="dataset not found offline"):
        eval_client.wait_for_job(name, poll_interval=0.05, timeout=30, verbose=False)


def test_cancel_a_running_job_through_rest(eval_client: EvalClient, cluster: Any, kubelet: Any) -> None:
    name = eval_client.evaluate(model="huggingface", tasks=["mme"])["job_id"]
    kubelet.run_pod(name)
    cluster.wait(lambda: eval_client.get_job(name)["status"] == "running", what="running")
    eval_client.cancel_job(name)
    with pytest.raises(JobCancelledError):
        eval_client.wait_for_job(name, poll_interval=0.05, timeout=30, verbose=False)
    cluster.wait(lambda: cluster.job(name) is None, what="the Job to be deleted")


def test_queue_lists_every_running_job(eval_client: EvalClient, cluster: Any, kubelet: Any) -> None:
    names = [eval_client.evaluate(model="huggingface", tasks=["mme"])["job_id"] for _ in range(3)]
    for name in names[:2]:
        kubelet.run_pod(name)
    cluster.wait(
        lambda: sorted(eval_client.get_queue_status()["running_jobs"]) == sorted(names[:2]), what="two running"
    )
    queue = eval_client.get_queue_status()
    assert queue["queued_jobs"] == [names[2]]
    assert queue["running_job"] in names[:2]


async def test_fifty_concurrent_submissions_all_end_right(
    async_eval_client: AsyncEvalClient, cluster: Any, kubelet: Any
) -> None:
    submitted = await asyncio.gather(
        *(
            async_eval_client.evaluate(model="huggingface", tasks=["mme"], model_args={"pretrained": f"/ckpt/{i}"})
            for i in range(50)
        )
    )
    names = [job["job_id"] for job in submitted]
    assert len(set(names)) == 50

    def play(index: int, name: str) -> None:
        kubelet.run_pod(name, timeout=60)
        if index % 5 == 4:
            kubelet.finish(name, 2, message=f"bad checkpoint {index}")
        else:
            kubelet.finish(name, 0, results={"results": {"mme": {"exact_match,none": index / 100}}})

    await asyncio.gather(*(asyncio.to_thread(play, i, name) for i, name in enumerate(names)))

    async def outcome(name: str) -> dict[str, Any]:
        for _ in range(1200):
            job = await async_eval_client.get_job(name)
            if job["status"] in ("completed", "failed"):
                return job
            await asyncio.sleep(0.05)
        raise AssertionError(f"{name} did not finish")

    finished = await asyncio.gather(*(outcome(name) for name in names))
    for index, job in enumerate(finished):
        assert job["request"]["model_args"] == {"pretrained": f"/ckpt/{index}"}
        if index % 5 == 4:
            assert job["status"] == "failed" and f"bad checkpoint {index}" in job["error"]
        else:
            assert job["status"] == "completed" and job["metrics"]["results"]["mme"]["exact_match,none"] == index / 100
    assert len(cluster.batch.list_namespaced_job(cluster.namespace).items) == 50
    assert {cluster.status(name)["phase"] for name in names} == {Phase.COMPLETED, Phase.FAILED}
