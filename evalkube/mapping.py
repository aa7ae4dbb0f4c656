"""The one mapping between the REST request, the EvalJob resource and the REST JobInfo.

REST speaks lmms-eval's snake_case; the EvalJob speaks Kubernetes' camelCase. The field table
below is the whole translation: a field added to the protocol without a row here fails the
round-trip test instead of silently vanishing. model_args keys are user data and pass untouched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from evalkube import resource
from evalkube.protocol import CustomTasks, EvaluateRequest, JobInfo, JobStatus

#: (EvaluateRequest field, EvalJob spec field)
SPEC_FIELDS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("tasks", "tasks"),
    ("model_args", "modelArgs"),
    ("num_fewshot", "numFewshot"),
    ("batch_size", "batchSize"),
    ("device", "device"),
    ("limit", "limit"),
    ("gen_kwargs", "genKwargs"),
    ("log_samples", "logSamples"),
    ("predict_only", "predictOnly"),
    ("num_gpus", "numGpus"),
    ("output_dir", "outputDir"),
    ("priority", "priority"),
    ("timeout_seconds", "timeoutSeconds"),
    ("image", "image"),
    ("resources", "resources"),
    ("node_selector", "nodeSelector"),
    ("tolerations", "tolerations"),
    ("custom_tasks", "customTasks"),
    ("allow_online", "allowOnline"),
)

PHASE_TO_STATUS: dict[str, JobStatus] = {
    resource.Phase.QUEUED: JobStatus.QUEUED,
    resource.Phase.RUNNING: JobStatus.RUNNING,
    resource.Phase.COMPLETED: JobStatus.COMPLETED,
    resource.Phase.FAILED: JobStatus.FAILED,
    resource.Phase.CANCELLED: JobStatus.CANCELLED,
}


def request_to_spec(request: EvaluateRequest) -> dict[str, Any]:
    """EvalJob spec for a request; unset optional fields stay absent, as kubectl users write them."""
    spec: dict[str, Any] = {}
    for rest_name, spec_name in SPEC_FIELDS:
        value = getattr(request, rest_name)
        if value is None:
            continue
        if isinstance(value, CustomTasks):
            value = {"configMap": value.config_map}
        spec[spec_name] = value
    return spec


def spec_to_request(spec: dict[str, Any]) -> EvaluateRequest:
    """The request an EvalJob stands for, whoever wrote it (API or kubectl)."""
    fields: dict[str, Any] = {}
    for rest_name, spec_name in SPEC_FIELDS:
        if spec.get(spec_name) is None:
            continue
        value = spec[spec_name]
        if rest_name == "custom_tasks":
            value = CustomTasks(config_map=value["configMap"])
        fields[rest_name] = value
    # Not re-validated: an EvalJob applied with kubectl was already checked by the CRD schema,
    # and a job must stay readable even if the API's rules have since become stricter.
    return EvaluateRequest.model_construct(**fields)


def evaljob_manifest(request: EvaluateRequest, namespace: str) -> dict[str, Any]:
    """A new EvalJob for a request; the apiserver picks the name (job_id) from `eval-`."""
    return {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {
            "generateName": resource.GENERATE_NAME,
            "namespace": namespace,
            "annotations": {resource.ANNOTATION_SUBMITTED_AT: now_rfc3339(precise=True)},
        },
        "spec": request_to_spec(request),
    }


def job_status(evaljob: dict[str, Any]) -> JobStatus:
    """REST status of an EvalJob; one the operator has not seen yet is queued."""
    phase = (evaljob.get("status") or {}).get("phase")
    return PHASE_TO_STATUS.get(phase, JobStatus.QUEUED)


def job_info(evaljob: dict[str, Any], position_in_queue: int | None = None) -> JobInfo:
    """lmms-eval's JobInfo for an EvalJob; times fall back to the object's creationTimestamp."""
    metadata = evaljob["metadata"]
    status = evaljob.get("status") or {}
    state = job_status(evaljob)
    return JobInfo(
        job_id=metadata["name"],
        status=state,
        created_at=status.get("createdAt") or metadata.get("creationTimestamp", ""),
        started_at=status.get("startedAt"),
        completed_at=status.get("completedAt"),
        request=spec_to_request(evaljob.get("spec") or {}),
        result=status.get("result"),
        error=status.get("error"),
        position_in_queue=position_in_queue if state is JobStatus.QUEUED else None,
        message=status.get("message"),
        artifacts=status.get("artifacts"),
    )


def now_rfc3339(precise: bool = False) -> str:
    """UTC now as Kubernetes writes times (RFC 3339, 'Z'); microseconds when order matters."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if precise else "%Y-%m-%dT%H:%M:%SZ")
