"""What an EvalJob's Job and pods say about it: phase, a human message, and why it failed.

Pure functions of Kubernetes objects, so every state a real cluster can show (unschedulable,
image pull errors, OOMKilled, deadline, crash, success) is a unit test, and the operator's
handlers only fetch objects and write the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evalkube.resource import Phase

#: Container waiting reasons that never fix themselves: the EvalJob fails instead of hanging.
FATAL_WAITING = {
    "ErrImagePull": "cannot pull the evaluator image",
    "ImagePullBackOff": "cannot pull the evaluator image",
    "InvalidImageName": "the evaluator image name is invalid",
    "ErrImageNeverPull": "the evaluator image is not on the node and imagePullPolicy is Never",
    "CreateContainerConfigError": "the evaluator container's configuration is invalid",
    "CreateContainerError": "the evaluator container could not be created",
}
#: The longest error text kept in status (the log tail is inside it).
MAX_ERROR_CHARS = 4096


@dataclass(frozen=True)
class Observation:
    """The EvalJob's state as its children show it."""

    phase: str
    message: str
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    #: True when the Job succeeded: the results ConfigMap decides Completed vs Failed.
    succeeded: bool = False
    #: Failed while the pod still holds its node (e.g. stuck pulling an image): delete the Job.
    stuck: bool = False


def observe(job: dict[str, Any], pods: list[dict[str, Any]]) -> Observation:
    """Phase and message for an EvalJob whose Job exists."""
    job_spec = job.get("spec") or {}
    job_status = job.get("status") or {}
    pod = _newest(pods)
    container = _container_status(pod)
    started_at = _started_at(container) or job_status.get("startTime") if container else None

    complete = _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet")
    if complete:
        return Observation(
            Phase.RUNNING,
            "evaluation finished; collecting results",
            started_at=started_at or job_status.get("startTime"),
            finished_at=job_status.get("completionTime") or complete.get("lastTransitionTime"),
            succeeded=True,
        )

    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    terminated = (container or {}).get("state", {}).get("terminated")
    if failed or (terminated and terminated.get("exitCode", 0) != 0):
        return Observation(
            Phase.FAILED,
            "evaluation failed",
            error=_failure_reason(job, failed, terminated),
            started_at=started_at,
            finished_at=(terminated or {}).get("finishedAt") or (failed or {}).get("lastTransitionTime"),
        )

    if job_spec.get("suspend"):
        return Observation(Phase.QUEUED, "waiting for Kueue to admit the Job")
    if pod is None:
        return Observation(Phase.QUEUED, "waiting for the Job controller to create the evaluator pod")

    waiting = (container or {}).get("state", {}).get("waiting") or {}
    if waiting.get("reason") in FATAL_WAITING:
        detail = waiting.get("message") or waiting["reason"]
        image = _image(pod)
        return Observation(
            Phase.FAILED,
            "evaluation failed",
            error=f"{FATAL_WAITING[waiting['reason']]} {image!r} ({waiting['reason']}): {detail}",
            stuck=True,
        )

    if container and container.get("state", {}).get("running"):
        node = (pod.get("spec") or {}).get("nodeName")
        where = f" on node {node}" if node else ""
        return Observation(Phase.RUNNING, f"evaluating{where}", started_at=started_at)
    if terminated:  # exit 0, the Job controller has not marked the Job complete yet
        return Observation(Phase.RUNNING, "evaluation finished; waiting for the Job to complete", started_at=started_at)

    return Observation(Phase.QUEUED, _pending_message(pod, waiting))


def lacks_exit_details(job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """The Job failed but the pod's termination is not in view yet (watches race each other).

    The exit code and the runner's message live on the pod; deciding from the Job alone would
    record a vague reason forever, since a finished EvalJob is never revisited.
    """
    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    container = _container_status(_newest(pods))
    return bool(failed) and not (container or {}).get("state", {}).get("terminated")


def _pending_message(pod: dict[str, Any], waiting: dict[str, Any]) -> str:
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        detail = scheduled.get("message") or scheduled.get("reason") or "no node fits"
        return f"waiting for a node: {detail}"
    if waiting.get("reason"):
        detail = f": {waiting['message']}" if waiting.get("message") else ""
        return f"starting the evaluator container ({waiting['reason']}{detail})"
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        return f"scheduled on node {node}; starting the evaluator container"
    return "waiting for the pod to be scheduled"


def _failure_reason(job: dict[str, Any], failed: dict[str, Any] | None, terminated: dict[str, Any] | None) -> str:
    """The most specific reason a human can act on; never a bare 'failed'."""
    reason = (failed or {}).get("reason")
    if reason == "DeadlineExceeded":
        limit = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return f"timed out: the evaluation ran longer than timeoutSeconds={limit}"
    if terminated:
        code = terminated.get("exitCode")
        message = (terminated.get("message") or "").strip()
        if terminated.get("reason") == "OOMKilled":
            text = "the evaluator ran out of memory (OOMKilled); raise resources.limits.memory or lower batch_size"
        elif code is not None and code >= 128:
            text = f"the evaluator was killed by signal {code - 128} (exit code {code})"
        else:
            text = f"the evaluator exited with code {code}"
        if message:
            text = f"{text}: {message}"
        return text[-MAX_ERROR_CHARS:] if len(text) > MAX_ERROR_CHARS else text
    if failed:
        detail = failed.get("message") or reason or "the Job failed"
        return f"the Job failed ({reason}): {detail}" if reason else detail
    return "the evaluator pod failed"


def _condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
        if kind == "PodScheduled" and condition.get("type") == kind:
            return condition
    return None


def _newest(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    live = [pod for pod in pods if not pod.get("metadata", {}).get("deletionTimestamp")] or pods
    return max(live, key=lambda pod: pod["metadata"].get("creationTimestamp", ""), default=None)


def _container_status(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        return status
    return None


def _started_at(container: dict[str, Any]) -> str | None:
    state = container.get("state") or {}
    return (state.get("running") or state.get("terminated") or {}).get("startedAt")


def _image(pod: dict[str, Any]) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return containers[0].get("image", "")
