"""What the operator's indexes keep of each Job and pod is all that its decisions read.

The indexes hold a cut-down copy of every watched object (memory at 10,000 EvalJobs); here every
state a real cluster shows is decided from the whole objects and from the kept copies, and the
decisions agree.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import kopf
import pytest
from test_operator_observe import cond

from evalkube.operator.handlers import _evaljob_entry, _job_entry, _pod_entry
from evalkube.operator.jobspec import build_job
from evalkube.operator.observe import lacks_exit_details, observe
from evalkube.operator.settings import OperatorSettings

EVALJOB = {
    "apiVersion": "evalkube.dev/v1alpha1",
    "kind": "EvalJob",
    "metadata": {
        "name": "eval-x",
        "namespace": "research",
        "uid": "uid-x",
        "generation": 1,
        "resourceVersion": "7",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "annotations": {"evalkube.dev/submitted-at": "2026-01-01T00:00:00.000000Z"},
        "managedFields": [{"manager": "evalkube-api", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
    },
    "spec": {"model": "huggingface", "tasks": ["mme"], "numGpus": 1, "timeoutSeconds": 600},
    "status": {"phase": "Queued", "jobName": "eval-x"},
}


def full_job(status: dict[str, Any], suspend: bool = False) -> dict[str, Any]:
    job = build_job(copy.deepcopy(EVALJOB), OperatorSettings(evaluator_image="evaluator:test"))
    job["metadata"].update(uid="job-uid", resourceVersion="9", creationTimestamp="2026-01-01T00:00:01Z")
    job["metadata"]["managedFields"] = [{"manager": "evalkube-operator", "operation": "Update"}]
    job["spec"]["suspend"] = suspend
    job["status"] = status
    return job


def full_pod(job: dict[str, Any], status: dict[str, Any], node: str | None, deleting: bool = False) -> dict[str, Any]:
    template = job["spec"]["template"]
    metadata = {
        "name": "eval-x-abcde",
        "namespace": "research",
        "uid": "pod-uid",
        "creationTimestamp": "2026-01-01T00:00:02Z",
        "labels": {**template["metadata"]["labels"], "job-name": "eval-x"},
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "eval-x", "uid": "job-uid"}],
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:09:00Z"
    spec = {**copy.deepcopy(template["spec"]), **({"nodeName": node} if node else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


JOB_STATES = {
    "new": {},
    "active": {"active": 1, "startTime": "2026-01-01T00:00:01Z"},
    "complete": {"startTime": "2026-01-01T00:00:01Z", "completionTime": "2026-01-01T00:08:00Z",
                 "conditions": [cond("SuccessCriteriaMet"), cond("Complete")], "succeeded": 1},
    "deadline": {"startTime": "2026-01-01T00:00:01Z", "failed": 1,
                 "conditions": [cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]},
    "backoff": {"startTime": "2026-01-01T00:00:01Z", "failed": 1,
                "conditions": [cond("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]},
}  # fmt: skip

RUNNING = {"running": {"startedAt": "2026-01-01T00:00:05Z"}}
POD_STATES: dict[str, tuple[dict[str, Any], str | None]] = {
    "unschedulable": ({"phase": "Pending", "conditions": [
        cond("PodScheduled", "Unschedulable", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", "False")]}, None),
    "scheduled": ({"phase": "Pending", "conditions": [cond("PodScheduled")]}, "gpu-1"),
    "pulling": ({"phase": "Pending", "conditions": [cond("PodScheduled")], "containerStatuses": [
        {"name": "evaluator", "image": "evaluator:test", "ready": False, "restartCount": 0,
         "state": {"waiting": {"reason": "ErrImagePull", "message": "pull access denied"}}}]}, "gpu-1"),
    "running": ({"phase": "Running", "podIP": "10.0.0.5", "hostIP": "192.168.0.2", "qosClass": "Burstable",
                 "startTime": "2026-01-01T00:00:03Z", "conditions": [cond("PodScheduled"), cond("Ready")],
                 "containerStatuses": [{"name": "evaluator", "image": "evaluator:test", "imageID": "sha256:abc",
                                        "ready": True, "restartCount": 0, "state": RUNNING}]}, "gpu-1"),
    "oom": ({"phase": "Failed", "containerStatuses": [{"name": "evaluator", "state": {"terminated": {
        "exitCode": 137, "reason": "OOMKilled", "startedAt": "2026-01-01T00:00:05Z", "finishedAt": "2026-01-01T00:07:00Z"}}}]},
        "gpu-1"),
    "exited": ({"phase": "Failed", "containerStatuses": [{"name": "evaluator", "state": {"terminated": {
        "exitCode": 1, "message": "lmms-eval produced no results", "startedAt": "2026-01-01T00:00:05Z",
        "finishedAt": "2026-01-01T00:07:00Z"}}}]}, "gpu-1"),
    "succeeded": ({"phase": "Succeeded", "containerStatuses": [{"name": "evaluator", "state": {"terminated": {
        "exitCode": 0, "startedAt": "2026-01-01T00:00:05Z", "finishedAt": "2026-01-01T00:07:59Z"}}}]}, "gpu-1"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("job_state", "pod_states", "suspend"),
    [
        *((job, pods, False) for job in JOB_STATES for pods in [(), *itertools.combinations(POD_STATES, 1)]),
        *((job, ("exited", "running"), False) for job in JOB_STATES),  # a retried pod beside the old one
        ("new", (), True),  # suspended, for Kueue
    ],
)
def test_the_kept_job_and_pods_decide_as_the_whole_objects_do(
    job_state: str, pod_states: tuple[str, ...], suspend: bool
) -> None:
    job = full_job(copy.deepcopy(JOB_STATES[job_state]), suspend)
    pods = []
    for index, state in enumerate(pod_states):
        status, node = POD_STATES[state]
        pod = full_pod(job, copy.deepcopy(status), node, deleting=index == 0 and len(pod_states) > 1)
        pod["metadata"]["name"] = f"eval-x-{index}"
        pods.append(pod)
    kept_job = _job_entry(kopf.Body(job))
    kept_pods = [_pod_entry(kopf.Body(pod)) for pod in pods]
    assert observe(kept_job, kept_pods) == observe(job, pods)
    assert lacks_exit_details(kept_job, kept_pods) == lacks_exit_details(job, pods)


def test_the_kept_evaljob_is_the_whole_object_without_managed_fields() -> None:
    kept = _evaljob_entry(kopf.Body(copy.deepcopy(EVALJOB)))
    expected = copy.deepcopy(EVALJOB)
    del expected["metadata"]["managedFields"]
    assert kept == expected
