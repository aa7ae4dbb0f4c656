"""With a Kueue queue configured, Jobs are created suspended and Kueue decides when they run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evalkube.resource import Phase

SPEC = {"model": "huggingface", "tasks": ["mme"], "numGpus": 2}
RESULTS = {"results": {"mme": {"exact_match,none": 1.0}}}


def test_kueue_admits_the_suspended_job_and_the_evaljob_runs(
    cluster: Any, kubelet: Any, start_operator: Callable[..., Any]
) -> None:
    start_operator(kueue_queue_name="team-a")
    name = cluster.apply(SPEC)
    job = cluster.wait(lambda: cluster.job(name), what="the Job")
    assert job.spec.suspend is True
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    cluster.wait(
        lambda: cluster.status(name).get("message") == "waiting for Kueue to admit the Job", what="the Kueue message"
    )
    assert cluster.core.list_namespaced_pod(cluster.namespace).items == []  # suspended: no pod

    # Kueue admits the workload: it unsuspends the Job, and the Job controller creates the pod.
    cluster.batch.patch_namespaced_job(name, cluster.namespace, {"spec": {"suspend": False}})
    kubelet.run_pod(name)
    cluster.wait_phase(name, Phase.RUNNING)
    kubelet.finish(name, 0, results=RESULTS)
    assert cluster.wait_phase(name, Phase.COMPLETED)["metrics"] == RESULTS
