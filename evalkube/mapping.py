"""The one mapping between the REST request, the EvalJob resource and the REST JobInfo.

REST speaks lmms-eval's snake_case; the EvalJob speaks Kubernetes' camelCase. Nothing here lists
fields: a spec name is its protocol field's name in camelCase (or the field's own
`x-evalkube-spec-name`), nested protocol models are renamed the same way, and user data (model_args
keys, resource names, node labels) passes untouched. So a field added to the protocol appears in
the spec, the CRD and JobInfo with no further edit.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from evalkube import resource
from evalkube.protocol import SPEC_NAME, EvalJobSpec, EvaluateRequest, JobInfo, JobProgress, JobStatus


@functools.cache
def spec_names(model: type[BaseModel]) -> dict[str, str]:
    """{protocol field name: spec name} of a protocol model."""
    names = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        names[name] = str(extra.get(SPEC_NAME) or to_camel(name))
    return names


@functools.cache
def _nested(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The fields of `model` that hold another protocol model (possibly optional)."""
    nested = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
        for option in options:
            if isinstance(option, type) and issubclass(option, BaseModel):
                nested[name] = option
    return nested


def to_spec(value: BaseModel) -> dict[str, Any]:
    """A protocol object as the EvalJob stores it; unset (None) fields stay absent, as kubectl users write them."""
    names, nested = spec_names(type(value)), _nested(type(value))
    spec: dict[str, Any] = {}
    for name in type(value).model_fields:
        item = getattr(value, name)
        if item is None:
            continue
        spec[names[name]] = to_spec(item) if name in nested else item
    return spec


def from_spec(model: type[BaseModel], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol-named fields of a stored spec, for `model` to validate. A key that names no field
    is kept as it is, so the model's `extra="forbid"` reports it."""
    names, nested = spec_names(model), _nested(model)
    by_spec_name = {spec_name: name for name, spec_name in names.items()}
    fields: dict[str, Any] = {}
    for key, item in spec.items():
        name = by_spec_name.get(key, key)
        if name in nested and isinstance(item, Mapping):
            item = from_spec(nested[name], item)
        fields[name] = item
    return fields


PHASE_TO_STATUS: dict[str, JobStatus] = {
    resource.Phase.QUEUED: JobStatus.QUEUED,
    resource.Phase.RUNNING: JobStatus.RUNNING,
    resource.Phase.COMPLETED: JobStatus.COMPLETED,
    resource.Phase.FAILED: JobStatus.FAILED,
    resource.Phase.CANCELLED: JobStatus.CANCELLED,
}


def request_to_spec(request: EvaluateRequest) -> dict[str, Any]:
    """EvalJob spec for a request."""
    return to_spec(request)


def parse_spec(spec: Mapping[str, Any]) -> EvalJobSpec:
    """The spec of an EvalJob, judged by the API's own rules (pydantic ValidationError if it breaks one).

    The runner and the operator call this on whatever wrote the EvalJob (the API, kubectl, a
    script), so a request one component accepts is accepted by all.
    """
    return EvalJobSpec.model_validate(from_spec(EvalJobSpec, spec))


def field_path(loc: tuple[int | str, ...], model: type[BaseModel] | None = None) -> str:
    """A pydantic error location as a field path: `model_args.pretrained`, `tasks[0]`; with
    `model`, in the EvalJob's spec names (`modelArgs.pretrained`)."""
    path, current = "", model
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        if part == "[key]":  # a dict key's own error: the key is already in the path
            continue
        name = spec_names(current).get(part, part) if current is not None else part
        path = f"{path}.{name}" if path else name
        current = _nested(current).get(part) if current is not None else None
    return path


def reason(error: dict[str, Any]) -> str:
    """A pydantic error's message without pydantic's "Value error, " prefix."""
    return str(error["msg"]).removeprefix("Value error, ")


def describe_errors(error: ValidationError, model: type[BaseModel] = EvalJobSpec) -> str:
    """'field: reason; ...' in the EvalJob's own field names."""
    return "; ".join(f"{field_path(tuple(item['loc']), model)}: {reason(item)}" for item in error.errors())


def spec_to_request(spec: Mapping[str, Any]) -> EvaluateRequest:
    """The request an EvalJob stands for, whoever wrote it (API or kubectl), for JobInfo.

    Not re-validated: a job must stay readable even if the rules have since become stricter.
    """
    fields = from_spec(EvaluateRequest, spec)
    nested = _nested(EvaluateRequest)
    values = {
        name: nested[name].model_construct(**item) if name in nested and isinstance(item, dict) else item
        for name, item in fields.items()
        if name in EvaluateRequest.model_fields
    }
    return EvaluateRequest.model_construct(**values)


def evaljob_manifest(request: EvaluateRequest, namespace: str, submitted_by: str | None = None) -> dict[str, Any]:
    """A new EvalJob for a request; the apiserver picks the name (job_id) from `eval-`."""
    return {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {
            "generateName": resource.GENERATE_NAME,
            "namespace": namespace,
            "annotations": {
                resource.ANNOTATION_SUBMITTED_AT: now_rfc3339(precise=True),
                **({resource.ANNOTATION_SUBMITTED_BY: submitted_by} if submitted_by else {}),
            },
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
        progress=from_spec(JobProgress, status["progress"]) if status.get("progress") else None,
        metrics=status.get("metrics"),
        submitted_by=(metadata.get("annotations") or {}).get(resource.ANNOTATION_SUBMITTED_BY),
    )


def now_rfc3339(precise: bool = False) -> str:
    """UTC now as Kubernetes writes times (RFC 3339, 'Z'); microseconds when order matters."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if precise else "%Y-%m-%dT%H:%M:%SZ")
