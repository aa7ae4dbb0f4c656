"""EvalJob -> batch/v1 Job: the evaluator pod every EvalJob runs as.

Pure: a function of the EvalJob and the operator's settings, so the manifest can be unit-tested,
validated against the Kubernetes schemas and checked against the restricted Pod Security
Standard without a cluster.
"""

from __future__ import annotations

import json
from typing import Any

from evalkube import resource
from evalkube import volumes as shared
from evalkube.operator.settings import OperatorSettings

CONTAINER_NAME = "evaluator"
TASKS_MOUNT = "/etc/evalkube/tasks"
ARTIFACTS_MOUNT = shared.ARTIFACTS_MOUNT
CACHE_MOUNT = shared.CACHE_MOUNT
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
TERMINATION_GRACE_SECONDS = 30
#: The evaluator image's non-root user.
EVALUATOR_UID = 1000

#: Spec fields that shape the pod, not the evaluation; the runner never needs them.
_POD_ONLY_FIELDS = (
    "priority",
    "timeoutSeconds",
    "image",
    "resources",
    "nodeSelector",
    "tolerations",
    "cancelRequested",
)


def build_job(evaljob: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The Job for an EvalJob: same name, owned by it, labelled, GPU-requesting."""
    meta = evaljob["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    spec = evaljob.get("spec") or {}
    labels = resource.child_labels(name)
    job_labels = dict(labels)
    if settings.kueue_queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = settings.kueue_queue_name

    job_spec: dict[str, Any] = {
        # An evaluation that failed once fails again the same way; retrying only burns GPUs.
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": labels},
            "spec": _pod_spec(name, namespace, meta["uid"], spec, settings),
        },
    }
    if spec.get("timeoutSeconds"):
        job_spec["activeDeadlineSeconds"] = int(spec["timeoutSeconds"])
    if settings.kueue_queue_name:
        job_spec["suspend"] = True

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": job_labels,
            "ownerReferences": [resource.owner_reference(name, meta["uid"])],
        },
        "spec": job_spec,
    }


def _pod_spec(name: str, namespace: str, uid: str, spec: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    env = _env(name, namespace, uid, spec, settings)

    tasks_config_map = (spec.get("customTasks") or {}).get("configMap")
    if tasks_config_map:
        volumes.append({"name": "tasks", "configMap": {"name": tasks_config_map}})
        mounts.append({"name": "tasks", "mountPath": TASKS_MOUNT, "readOnly": True})
        env.append({"name": "EVALKUBE_TASKS_DIR", "value": TASKS_MOUNT})
    add_shared_volumes(settings, volumes, mounts)
    if settings.artifacts_pvc:
        volumes.append({"name": "artifacts", "persistentVolumeClaim": {"claimName": settings.artifacts_pvc}})
        mounts.append({"name": "artifacts", "mountPath": ARTIFACTS_MOUNT})
        env.append({"name": "EVALKUBE_ARTIFACTS_DIR", "value": ARTIFACTS_MOUNT})
    if settings.model_cache_pvc:
        volumes.append({"name": "cache", "persistentVolumeClaim": {"claimName": settings.model_cache_pvc}})
        mounts.append({"name": "cache", "mountPath": CACHE_MOUNT})
        env.append({"name": "HF_HOME", "value": f"{CACHE_MOUNT}/huggingface"})

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.get("image") or settings.evaluator_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["evalkube-runner"],
        "args": ["run"],
        "env": env,
        "resources": _resources(spec, settings),
        "volumeMounts": mounts,
        # The runner writes a short error there; the log tail is the fallback for crashes.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": CONTAINER_SECURITY,
    }
    pod = _restricted_pod(container, volumes, settings)
    node_selector = {**settings.node_selector, **(spec.get("nodeSelector") or {})}
    if node_selector:
        pod["nodeSelector"] = node_selector
    tolerations = [*settings.tolerations, *(spec.get("tolerations") or [])]
    if tolerations:
        pod["tolerations"] = tolerations
    return pod


#: The restricted Pod Security Standard, for every container evalkube creates.
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _restricted_pod(
    container: dict[str, Any], volumes: list[dict[str, Any]], settings: OperatorSettings
) -> dict[str, Any]:
    """A run-once pod of the evaluator image as its non-root user."""
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # The runner gives lmms-eval's process group 10 s after SIGTERM before SIGKILL.
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": EVALUATOR_UID,
            "runAsGroup": EVALUATOR_UID,
            "fsGroup": EVALUATOR_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if settings.evaluator_service_account:
        pod["serviceAccountName"] = settings.evaluator_service_account
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in settings.image_pull_secrets]
    return pod


def build_merge_job(merge: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The Job of a CheckpointMerge: `evalkube-runner merge` on the evaluator image, CPU-only (the
    merge holds the model in memory, never on a GPU), with the shared volumes mounted."""
    meta, spec = merge["metadata"], merge.get("spec") or {}
    name, namespace = meta["name"], meta["namespace"]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    add_shared_volumes(settings, volumes, mounts)
    args = [
        "merge",
        f"--checkpoint-path={spec['checkpointPath']}",
        f"--checkpoint-type={spec.get('checkpointType') or 'regular'}",
    ]
    if spec.get("outputPath"):
        args.append(f"--output-path={spec['outputPath']}")
    container = {
        "name": CONTAINER_NAME,
        "image": settings.evaluator_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["evalkube-runner"],
        "args": args,
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "HF_HUB_OFFLINE", "value": "1"}],
        "resources": {"requests": {"memory": settings.merge_memory}, "limits": {"memory": settings.merge_memory}},
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": CONTAINER_SECURITY,
    }
    labels = resource.merge_child_labels(name)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [resource.owner_reference(name, meta["uid"], kind=resource.MERGE_KIND)],
        },
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels}, "spec": _restricted_pod(container, volumes, settings)},
        },
    }


def add_shared_volumes(settings: OperatorSettings, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> None:
    """Every shared volume, at the mountPath the training pods use too (evaluator and merge pods)."""
    for index, volume in enumerate(settings.shared_volumes):
        name = f"shared-{index}"
        claim = {"claimName": volume.claim_name, "readOnly": volume.read_only}
        volumes.append({"name": name, "persistentVolumeClaim": claim})
        mount = {"name": name, "mountPath": volume.mount_path, "readOnly": volume.read_only}
        if volume.sub_path:
            mount["subPath"] = volume.sub_path
        mounts.append(mount)


def _env(name: str, namespace: str, uid: str, spec: dict[str, Any], settings: OperatorSettings) -> list[dict[str, Any]]:
    evaluation = {key: value for key, value in spec.items() if key not in _POD_ONLY_FIELDS}
    env = [
        {"name": "EVALKUBE_EVALJOB_NAME", "value": name},
        {"name": "EVALKUBE_EVALJOB_UID", "value": uid},
        {"name": "EVALKUBE_NAMESPACE", "value": namespace},
        {"name": "EVALKUBE_RESULT_CONFIGMAP", "value": resource.result_configmap_name(name)},
        {"name": "EVALKUBE_SPEC", "value": json.dumps(evaluation, sort_keys=True, separators=(",", ":"))},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if settings.allow_online and spec.get("allowOnline"):
        env.append({"name": "EVALKUBE_ALLOW_ONLINE", "value": "1"})
    return env


def _resources(spec: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """Admin defaults, then the EvalJob's own, then the GPUs numGpus asks for (always last)."""
    merged: dict[str, dict[str, Any]] = {}
    for source in (settings.default_resources, spec.get("resources") or {}):
        for kind in ("requests", "limits"):
            if source.get(kind):
                merged.setdefault(kind, {}).update(source[kind])
    gpus = int(spec.get("numGpus", 1))
    for kind in ("requests", "limits"):
        merged.get(kind, {}).pop(settings.gpu_resource_name, None)
    if gpus > 0:
        merged.setdefault("limits", {})[settings.gpu_resource_name] = gpus
    # Quantities are strings on the wire ("8", "64Gi"); YAML users write `cpu: 8`.
    return {kind: {name: str(value) for name, value in values.items()} for kind, values in merged.items() if values}
