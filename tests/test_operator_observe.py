"""What the operator reads from a Job and its pod: every state a real cluster shows."""

from __future__ import annotations

from typing import Any

from evalkube.operator.observe import observe
from evalkube.resource import Phase


def job(conditions: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "eval-x"},
        "spec": {"backoffLimit": 0, **spec},
        "status": {"startTime": "2026-01-01T00:00:00Z", "conditions": conditions or []},
    }


def pod(
    state: dict[str, Any] | None = None, conditions: list[dict[str, Any]] | None = None, node: str | None = "gpu-1"
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": conditions or []}
    if state is not None:
        status["containerStatuses"] = [{"name": "evaluator", "state": state}]
    return {
        "metadata": {"name": "eval-x", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": node, "containers": [{"image": "eval:1"}]},
        "status": status,
    }


def cond(kind: str, reason: str = "", message: str = "", status: str = "True") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:05:00Z",
    }


def test_no_pod_yet_is_queued() -> None:
    seen = observe(job(), [])
    assert seen.phase == Phase.QUEUED
    assert "pod" in seen.message


def test_unschedulable_pod_says_why_it_waits() -> None:
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    seen = observe(job(), [pod(conditions=[cond("PodScheduled", "Unschedulable", message, status="False")], node=None)])
    assert seen.phase == Phase.QUEUED
    assert seen.message == f"waiting for a node: {message}"


def test_container_creating_is_still_queued() -> None:
    seen = observe(job(), [pod({"waiting": {"reason": "ContainerCreating"}})])
    assert seen.phase == Phase.QUEUED
    assert "ContainerCreating" in seen.message


def test_suspended_job_waits_for_kueue() -> None:
    assert observe(job(suspend=True), []).message == "waiting for Kueue to admit the Job"


def test_started_container_is_running_with_its_start_time() -> None:
    seen = observe(job(), [pod({"running": {"startedAt": "2026-01-01T00:01:00Z"}})])
    assert seen.phase == Phase.RUNNING
    assert seen.started_at == "2026-01-01T00:01:00Z"
    assert "gpu-1" in seen.message


def test_complete_job_succeeded_and_waits_for_results() -> None:
    finished = {
        "terminated": {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": "2026-01-01T00:01:00Z",
            "finishedAt": "2026-01-01T00:04:00Z",
        }
    }
    seen = observe(job([cond("Complete")]), [pod(finished)])
    assert seen.succeeded
    assert seen.started_at == "2026-01-01T00:01:00Z"


def test_nonzero_exit_fails_with_the_runners_message() -> None:
    finished = {"terminated": {"exitCode": 1, "reason": "Error", "message": "unknown task 'mmmu_vall'"}}
    seen = observe(job([cond("Failed", "BackoffLimitExceeded")]), [pod(finished)])
    assert seen.phase == Phase.FAILED
    assert seen.error == "the evaluator exited with code 1: unknown task 'mmmu_vall'"


def test_oom_killed_says_so_and_what_to_do() -> None:
    seen = observe(
        job([cond("Failed", "BackoffLimitExceeded")]), [pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})]
    )
    assert seen.phase == Phase.FAILED
    assert "OOMKilled" in seen.error and "memory" in seen.error


def test_killed_by_a_signal() -> None:
    seen = observe(job(), [pod({"terminated": {"exitCode": 139, "reason": "Error"}})])
    assert seen.phase == Phase.FAILED
    assert seen.error == "the evaluator was killed by signal 11 (exit code 139)"


def test_deadline_exceeded_names_the_timeout() -> None:
    seen = observe(job([cond("Failed", "DeadlineExceeded")], activeDeadlineSeconds=600), [pod({"running": {}})])
    assert seen.phase == Phase.FAILED
    assert seen.error == "timed out: the evaluation ran longer than timeoutSeconds=600"


def test_image_pull_errors_fail_instead_of_hanging() -> None:
    for reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        seen = observe(job(), [pod({"waiting": {"reason": reason, "message": "manifest unknown"}})])
        assert seen.phase == Phase.FAILED
        assert "'eval:1'" in seen.error and reason in seen.error and "manifest unknown" in seen.error
        assert seen.stuck


def test_job_failed_without_a_pod_status_still_explains() -> None:
    seen = observe(job([cond("Failed", "PodFailurePolicy", "Container evaluator failed")]), [])
    assert seen.phase == Phase.FAILED
    assert seen.error == "the Job failed (PodFailurePolicy): Container evaluator failed"


def test_long_messages_are_bounded() -> None:
    seen = observe(job([cond("Failed")]), [pod({"terminated": {"exitCode": 1, "message": "x" * 10000}})])
    assert len(seen.error) <= 4096
