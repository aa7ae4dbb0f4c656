"""The operator survives restarts, keeps finished EvalJobs bounded and runs queued ones in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evalkube.resource import Phase

SPEC = {"model": "huggingface", "tasks": ["mme"], "numGpus": 1}
RESULTS = {"results": {"mme": {"exact_match,none": 1.0}}}


def test_restart_in_the_middle_of_a_job_resumes_it(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any]
) -> None:
    operator = start_operator()
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    cluster.wait_phase(name, Phase.RUNNING)
    job_uid = cluster.job(name).metadata.uid

    operator.stop(kill=True)  # a crash: no graceful shutdown
    kubelet.finish(name, 0, results=RESULTS)  # the job finishes while no operator runs
    operator.start()
    operator.wait_ready()

    done = cluster.wait_phase(name, Phase.COMPLETED)
    assert done["metrics"] == RESULTS
    assert cluster.job(name).metadata.uid == job_uid  # the same Job: nothing was re-created or re-run


def test_restart_before_the_job_exists_creates_it_once(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any]
) -> None:
    names = [cluster.apply(SPEC) for _ in range(3)]  # applied while no operator runs
    operator = start_operator()
    for name in names:
        cluster.wait(lambda name=name: cluster.job(name), what=f"Job {name}")
    operator.restart(kill=True)
    operator.wait_ready()
    for name in names:
        assert cluster.wait_phase(name, Phase.QUEUED)["jobName"] == name
    assert len(cluster.batch.list_namespaced_job(cluster.namespace).items) == 3


def test_a_job_deleted_while_the_operator_was_down_fails_the_evaljob(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any]
) -> None:
    operator = start_operator()
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    cluster.wait_phase(name, Phase.RUNNING)
    operator.stop(kill=True)
    cluster.batch.delete_namespaced_job(name, cluster.namespace, propagation_policy="Background")
    cluster.wait(lambda: cluster.job(name) is None, what="the Job to be gone")
    operator.start()
    operator.wait_ready()
    assert "deleted before the evaluation finished" in cluster.wait_phase(name, Phase.FAILED)["error"]


def test_retention_keeps_the_newest_finished_evaljobs(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any]
) -> None:
    start_operator(max_completed_jobs=2)
    names = []
    for _ in range(4):
        name = cluster.apply(SPEC)
        kubelet.run_pod(name)
        kubelet.finish(name, 0, results=RESULTS)
        cluster.wait_phase(name, Phase.COMPLETED)
        names.append(name)
    cluster.wait(lambda: all(cluster.evaljob(name) is None for name in names[:2]), what="the two oldest to be deleted")
    assert all(cluster.evaljob(name) is not None for name in names[2:])
    # their children went with them
    cluster.wait(
        lambda: all(cluster.config_map(f"{name}-result") is None for name in names[:2]),
        what="their results ConfigMaps to go",
    )


def test_running_slots_admit_queued_evaljobs_by_priority_then_age(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any]
) -> None:
    start_operator(max_running=1)
    first = cluster.apply(SPEC)
    cluster.wait(lambda: cluster.job(first), what="the first Job")
    low = cluster.apply({**SPEC, "priority": 0})
    high = cluster.apply({**SPEC, "priority": 5})
    cluster.wait(lambda: "waiting for a free slot" in cluster.status(high).get("message", ""), what="high to wait")
    assert "1 of max 1" in cluster.status(low)["message"]
    assert cluster.job(low) is None and cluster.job(high) is None

    kubelet.run_pod(first)
    kubelet.finish(first, 0, results=RESULTS)
    cluster.wait_phase(first, Phase.COMPLETED)
    cluster.wait(lambda: cluster.job(high), what="the high-priority EvalJob to be admitted next")
    assert cluster.job(low) is None

    kubelet.run_pod(high)
    kubelet.finish(high, 0, results=RESULTS)
    cluster.wait(lambda: cluster.job(low), what="the low-priority EvalJob to be admitted last")
