"""The real operator against the emulator: EvalJobs written as kubectl would, the tests playing
the Job controller and the kubelet step by step. A specification of the lifecycle
queued -> running -> completed | failed | cancelled, and of what status says at each step.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from evalkube import resource
from evalkube.resource import Phase

SPEC = {"model": "huggingface", "tasks": ["mme"], "numGpus": 1}
RESULTS = {
    "results": {"mme": {"alias": "mme", "exact_match,none": 0.75, "exact_match_stderr,none": "N/A"}},
    "versions": {"mme": 1},
    "n-shot": {"mme": 0},
    "n-samples": {"mme": {"original": 4, "effective": 4}},
    "config": {"model": "huggingface"},
    "lmms_eval_version": "0.7.3",
}

pytestmark = pytest.mark.usefixtures("operator")


def test_kubectl_applied_evaljob_gets_a_job_and_is_queued(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    status = cluster.wait_phase(name, Phase.QUEUED)
    assert status["jobName"] == name
    assert status["createdAt"]
    job = cluster.wait(lambda: cluster.job(name), what="the Job")
    assert job.metadata.labels == {resource.LABEL_MANAGED_BY: resource.MANAGED_BY, resource.LABEL_EVALJOB: name}
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "EvalJob",
        name,
        cluster.evaljob(name)["metadata"]["uid"],
        True,
    )
    assert job.spec.template.spec.containers[0].resources.limits == {"nvidia.com/gpu": "1"}


def test_waiting_for_gpus_says_what_it_waits_for(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    kubelet.wait_for_pod(name)
    kubelet.unschedulable(name, "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    cluster.wait(
        lambda: "Insufficient nvidia.com/gpu" in cluster.status(name).get("message", ""), what="the scheduler's reason"
    )
    assert cluster.status(name)["phase"] == Phase.QUEUED
    assert (
        cluster.status(name)["message"] == "waiting for a node: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    )


def test_full_lifecycle_to_completed_with_the_metrics(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    running = cluster.wait_phase(name, Phase.RUNNING)
    assert running["startedAt"]

    kubelet.finish(name, 0, results=RESULTS)
    done = cluster.wait_phase(name, Phase.COMPLETED)
    assert done["metrics"] == RESULTS
    assert done["completedAt"]
    assert done["startedAt"] == running["startedAt"]  # when the container started, not when it ended
    assert done["message"] == "evaluation completed"
    assert "error" not in done
    [condition] = done["conditions"]  # for `kubectl wait --for=condition=Completed ej/NAME`
    assert (condition["type"], condition["status"]) == ("Completed", "True")


def test_completed_job_without_results_is_a_failure_that_says_so(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    kubelet.finish(name, 0)
    failed = cluster.wait_phase(name, Phase.FAILED)
    assert f"ConfigMap {name}-result" in failed["error"] and "no results" in failed["error"]


def test_runner_error_reaches_status(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    kubelet.finish(name, 1, message="lmms-eval failed: unknown task 'mme'\n...log tail...")
    failed = cluster.wait_phase(name, Phase.FAILED)
    assert failed["error"].startswith("the evaluator exited with code 1: lmms-eval failed: unknown task 'mme'")
    assert failed["completedAt"]


def test_oom_killed_is_explained(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    kubelet.finish(name, 137, reason="OOMKilled")
    assert "OOMKilled" in cluster.wait_phase(name, Phase.FAILED)["error"]


def test_timeout_is_explained(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply({**SPEC, "timeoutSeconds": 30})
    kubelet.run_pod(name)
    kubelet.deadline_exceeded(name)
    assert (
        cluster.wait_phase(name, Phase.FAILED)["error"] == "timed out: the evaluation ran longer than timeoutSeconds=30"
    )


def test_image_pull_error_fails_and_frees_the_job(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply({**SPEC, "image": "registry.invalid/nope:1"})
    kubelet.wait_for_pod(name)
    kubelet.waiting(name, "ErrImagePull", "pull access denied")
    failed = cluster.wait_phase(name, Phase.FAILED)
    assert "cannot pull the evaluator image 'registry.invalid/nope:1'" in failed["error"]
    cluster.wait(lambda: cluster.job(name) is None, what="the stuck Job to be deleted")


def test_missing_custom_tasks_configmap_fails_before_any_job(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply({**SPEC, "customTasks": {"configMap": "no-such-tasks"}})
    failed = cluster.wait_phase(name, Phase.FAILED)
    assert (
        failed["error"]
        == f"spec.customTasks.configMap: ConfigMap 'no-such-tasks' not found in namespace '{cluster.namespace}'"
    )
    assert cluster.job(name) is None


def test_cancel_while_queued(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    cluster.wait(lambda: cluster.job(name), what="the Job")
    cluster.patch_spec(name, {"cancelRequested": True})
    cancelled = cluster.wait_phase(name, Phase.CANCELLED)
    assert cancelled["completedAt"]
    cluster.wait(lambda: cluster.job(name) is None, what="the Job to be deleted")


def test_cancel_while_running_deletes_job_and_pod(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    cluster.wait_phase(name, Phase.RUNNING)
    cluster.patch_spec(name, {"cancelRequested": True})
    cluster.wait_phase(name, Phase.CANCELLED)
    cluster.wait(lambda: cluster.job(name) is None, what="the Job to be deleted")
    cluster.wait(
        lambda: not cluster.core.list_namespaced_pod(cluster.namespace).items, what="the pod to be garbage-collected"
    )


def test_finished_evaljob_never_runs_again(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    kubelet.finish(name, 0, results=RESULTS)
    cluster.wait_phase(name, Phase.COMPLETED)
    cluster.batch.delete_namespaced_job(name, cluster.namespace, propagation_policy="Background")
    cluster.wait(lambda: cluster.job(name) is None, what="the Job to be deleted")
    cluster.patch_spec(name, {"cancelRequested": True, "limit": 3})
    # Give the operator every chance to (wrongly) react, then check nothing moved.
    cluster.wait(lambda: cluster.evaljob(name)["metadata"]["generation"] >= 2, what="the spec change")
    assert cluster.job(name) is None
    assert cluster.status(name)["phase"] == Phase.COMPLETED


def test_job_deleted_behind_evalkubes_back_fails_the_evaljob(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    cluster.wait_phase(name, Phase.RUNNING)
    cluster.batch.delete_namespaced_job(name, cluster.namespace, propagation_policy="Background")
    assert "deleted before the evaluation finished" in cluster.wait_phase(name, Phase.FAILED)["error"]


def test_deleting_the_evaljob_deletes_its_job_pod_and_results(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    kubelet.finish(name, 0, results=RESULTS)
    cluster.wait_phase(name, Phase.COMPLETED)
    cluster.delete(name)
    cluster.wait(
        lambda: cluster.job(name) is None and cluster.config_map(f"{name}-result") is None, what="garbage collection"
    )


def test_large_results_are_bounded_in_status(cluster: Any, kubelet: Any) -> None:
    name = cluster.apply(SPEC)
    kubelet.run_pod(name)
    big = {**RESULTS, "configs": {"mme": {"prompt": "x" * 400_000}}}
    kubelet.finish(name, 0, results=big)
    done = cluster.wait_phase(name, Phase.COMPLETED)
    assert done["metrics"]["results"] == RESULTS["results"]
    assert "configs" not in done["metrics"]
    assert done["metricsDropped"] == ["configs"]
    assert len(json.dumps(done["metrics"])) < 256 * 1024
