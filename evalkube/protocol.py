"""The wire protocol: lmms-eval's evaluation-server models, plus evalkube's optional additions.

Field names, types and defaults match lmms-eval's `entrypoints/protocol.py`, so a training loop
written against lmms-eval's EvalClient works unchanged. evalkube only ADDS optional fields
(Kubernetes scheduling knobs on the request; `running_jobs` on /queue; `artifacts` on a job),
never changes or removes one.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from evalkube import validation


class JobStatus(str, Enum):  # noqa: UP042 - str() and format() must give the value, as upstream
    """Status of an evaluation job."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: json_schema_extra key naming a field's EvalJob spec name where it is not simply the camelCase
#: of its REST name (lmms-engine's `lmms_engine_kwargs` is the EvalJob's `spec.merge`).
SPEC_NAME = "x-evalkube-spec-name"


def _checked(check: Any) -> Any:
    """An AfterValidator running an `evalkube.validation` check; pydantic names the field itself."""

    def run(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check("value", value)
        except validation.UnsafeValue as error:
            raise ValueError(error.reason) from None

    return AfterValidator(run)


Token = Annotated[
    str,
    _checked(validation.check_token),
    Field(min_length=1, max_length=253, json_schema_extra={"pattern": validation.SAFE_TOKEN_PATTERN}),
]


#: A model_args value: a scalar whose text can't break out of `k=v,k=v`.
ArgValue = Annotated[Any, _checked(validation.check_arg_value)]


AbsolutePath = Annotated[
    str,
    _checked(validation.check_absolute_path),
    Field(max_length=1024, json_schema_extra={"pattern": validation.ABSOLUTE_PATH_PATTERN}),
]
CheckpointType = Literal["regular", "ema"]


class LmmsEngineKwargs(BaseModel):
    """lmms-engine's request to merge an FSDP2-sharded checkpoint before evaluating it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model_path: AbsolutePath = Field(..., description="The sharded checkpoint (or its parent folder) to merge")
    checkpoint_type: CheckpointType = Field(default="regular", description="'regular' or 'ema' weights")
    output_path: AbsolutePath | None = Field(
        default=None, description="Where the merged model goes; unset: into the checkpoint folder itself"
    )


class CustomTasks(BaseModel):
    """Task definitions brought with the job (lmms-eval task YAML and small data files)."""

    model_config = ConfigDict(extra="forbid")

    config_map: str = Field(
        ...,
        min_length=1,
        max_length=253,
        description="Name of a ConfigMap in the same namespace; it is mounted and passed as --include_path",
    )


class ResourceRequirements(BaseModel):
    """The evaluator container's requests and limits (quantities); GPUs come from num_gpus."""

    model_config = ConfigDict(extra="forbid")

    requests: dict[str, int | str] | None = None
    limits: dict[str, int | str] | None = None


class EvaluateRequest(BaseModel):
    """Request model for the evaluation endpoint (lmms-eval's fields first, evalkube's after).

    The one definition of every EvalJob spec field: the CRD schema is generated from it
    (`evalkube.crdgen`), the spec names are its field names in camelCase (`evalkube.mapping`), and
    the runner parses the spec with it, so the API, kubectl and the pod judge a request alike.
    """

    # Strict: a boolean is not a number nor a number a string, as in the CRD's schema, so the API
    # never accepts what kubectl would be refused (or the other way round).
    model_config = ConfigDict(extra="forbid", strict=True)

    model: Token = Field(..., description="lmms-eval model backend name (e.g. huggingface, vllm, qwen2_5_vl)")
    tasks: list[Token] = Field(..., min_length=1, max_length=256, description="lmms-eval task (or group) names")
    model_args: dict[Token, ArgValue] | None = Field(
        default=None,
        description="Model arguments (lmms-eval --model_args), e.g. {pretrained: /models/ckpt}",
        json_schema_extra={
            "additionalProperties": {"x-kubernetes-preserve-unknown-fields": True},
            "x-kubernetes-validations": list(validation.MODEL_ARGS_CEL_RULES),
        },
    )
    num_fewshot: int | None = Field(default=None, ge=0, description="Number of few-shot examples")
    batch_size: Annotated[int | str | None, _checked(validation.check_batch_size)] = Field(
        default=None,
        description='Batch size: an integer, or a string such as "auto" or "auto:4"',
        json_schema_extra={"minimum": 1, "pattern": validation.SAFE_TOKEN_PATTERN},
    )
    device: Token | None = Field(default=None, description="Device to run on (e.g. cuda:0)")
    limit: int | float | None = Field(
        default=None, gt=0, description="Evaluate at most this many examples per task (a fraction if < 1)"
    )
    gen_kwargs: Annotated[str | None, _checked(validation.check_gen_kwargs)] = Field(
        default=None,
        description='Generation kwargs, "k=v,k=v"',
        json_schema_extra={"pattern": validation.GEN_KWARGS_PATTERN},
    )
    log_samples: bool = Field(default=True, description="Whether to log samples")
    predict_only: bool = Field(default=False, description="Only generate predictions")
    num_gpus: int = Field(default=1, ge=0, le=64, description="GPUs for the evaluator pod; 0 runs CPU-only")
    output_dir: Annotated[str | None, _checked(validation.check_output_dir)] = Field(
        default=None,
        max_length=1024,
        description="Where lmms-eval writes its output: an absolute path on a shared volume, or a "
        "sub-directory of the artifacts volume",
        json_schema_extra={"pattern": validation.OUTPUT_DIR_PATTERN},
    )

    # evalkube additions: all optional, so upstream clients never notice them.
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first among queued jobs")
    timeout_seconds: int | None = Field(
        default=None, ge=1, description="Fail the evaluation if it runs longer than this (activeDeadlineSeconds)"
    )
    image: str | None = Field(default=None, min_length=1, description="Evaluator image override")
    resources: ResourceRequirements | None = Field(
        default=None, description="Evaluator container resources; GPUs come from num_gpus"
    )
    node_selector: dict[str, str] | None = Field(default=None, description="Node selector for the evaluator pod")
    tolerations: list[dict[str, Any]] | None = Field(default=None, description="Tolerations for the evaluator pod")
    custom_tasks: CustomTasks | None = Field(
        default=None, description="Task definitions (lmms-eval task YAML and data files) brought with the job"
    )
    allow_online: bool = Field(
        default=False, description="Allow model/dataset hub downloads (only where the operator allows it too)"
    )
    lmms_engine_kwargs: LmmsEngineKwargs | None = Field(
        default=None,
        description="Merge this FSDP2-sharded checkpoint first, then evaluate the merged model (lmms-engine)",
        json_schema_extra={SPEC_NAME: "merge"},
    )


class EvalJobSpec(EvaluateRequest):
    """An EvalJob's spec: the request, plus what only Kubernetes users write."""

    cancel_requested: bool | None = Field(
        default=None,
        description="Set to true to cancel; the Job and its pods are deleted and the EvalJob ends Cancelled",
    )


class Condition(BaseModel):
    """A Kubernetes condition; a finished EvalJob has one named after its phase (kubectl wait)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None


class JobProgress(BaseModel):
    """How far a running evaluation has come: lmms-eval's newest progress bar, as the runner read it."""

    percent: float = Field(..., ge=0, le=100, description="done / total, in percent")
    done: int = Field(..., ge=0, description="Items done in the current stage")
    total: int = Field(..., ge=0, description="Items in the current stage")
    stage: str = Field(default="", description="The stage or task: 'Model Responding', 'Building contexts for mme'")
    rate: float | None = Field(default=None, description="Items per second")
    eta_seconds: int | None = Field(default=None, description="Seconds left in the current stage, by tqdm's estimate")
    updated_at: str = Field(..., description="When the runner read this state (RFC 3339); it moves only with progress")


class EvalJobStatus(BaseModel):
    """An EvalJob's status: written by the operator alone, read by the API and kubectl.

    Its spec names (camelCase) and the CRD's status schema derive from these fields.
    """

    phase: Literal["Queued", "Running", "Completed", "Failed", "Cancelled"] | None = None
    message: str | None = Field(default=None, description="What the EvalJob is doing or waiting for, in words")
    error: str | None = Field(default=None, description="Why it failed, with the tail of the evaluator's log")
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    job_name: str | None = None
    observed_generation: int | None = None
    progress: JobProgress | None = Field(default=None, description="How far the evaluation has come (while running)")
    metrics: dict[str, Any] | None = Field(
        default=None, description="The lmms-eval results document (results, versions, n-shot, n-samples, config, ...)"
    )
    metrics_dropped: list[str] | None = Field(
        default=None, description="Top-level keys of the results document left out to fit the size limit"
    )
    result: dict[str, Any] | None = Field(
        default=None,
        description="lmms-eval's result: {model_dir: {results: <path>, samples: [<paths>]}}, files on a mounted volume",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class JobInfo(BaseModel):
    """Information about a job, in lmms-eval's shape.

    `result` is lmms-eval's own: `{<model_dir>: {"results": <path>, "samples": [<paths>]}}`, absolute
    paths on a volume the training pods mount too (lmms-engine opens them); `metrics` is evalkube's
    addition, the results document itself, so no one has to open a file to read a number.
    """

    job_id: str
    status: JobStatus
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    request: EvaluateRequest
    result: dict[str, Any] | None = None
    error: str | None = None
    position_in_queue: int | None = None
    # evalkube additions
    message: str | None = None
    progress: JobProgress | None = None
    metrics: dict[str, Any] | None = None
    submitted_by: str | None = Field(default=None, description="Who submitted it through the API (their username)")


class JobSubmitResponse(BaseModel):
    """Response when submitting a job."""

    job_id: str
    status: JobStatus
    position_in_queue: int
    message: str


class QueueStatusResponse(BaseModel):
    """Queue status; `running_jobs` lists every running job (upstream runs one at a time)."""

    queue_size: int
    running_job: str | None = None
    queued_jobs: list[str]
    completed_jobs: int
    failed_jobs: int
    # evalkube additions
    running_jobs: list[str] = Field(default_factory=list)
    cancelled_jobs: int = 0


class HealthResponse(BaseModel):
    """Health check response; `detail` says why when status is "unhealthy" (answered with 503)."""

    status: str
    timestamp: str
    queue_size: int
    # evalkube addition
    detail: str | None = None


class MergeRequest(BaseModel):
    """Request model for merging FSDP2 sharded checkpoints; also the CheckpointMerge's spec."""

    model_config = ConfigDict(extra="forbid", strict=True)

    checkpoint_path: AbsolutePath = Field(..., description="Path to sharded checkpoint directory")
    output_path: AbsolutePath | None = Field(default=None, description="Output path for merged checkpoint")
    checkpoint_type: CheckpointType = Field(default="regular", description="'regular' or 'ema' weights")


class MergeStatus(BaseModel):
    """A CheckpointMerge's status: written by the operator alone."""

    phase: Literal["Queued", "Running", "Completed", "Failed"] | None = None
    message: str | None = Field(default=None, description="What the merge is doing or waiting for, in words")
    error: str | None = Field(default=None, description="Why it failed")
    error_code: int | None = Field(
        default=None, description="The HTTP class of the failure, as lmms-eval answers: 404 missing, 400 invalid"
    )
    merged_path: str | None = Field(default=None, description="The merged Hugging Face model folder")
    format: str | None = Field(default=None, description="The checkpoint format found: fsdp2 or dcp")
    world_size: int | None = None
    job_name: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    observed_generation: int | None = None
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class MergeResponse(BaseModel):
    """Response model for checkpoint merge operations."""

    success: bool = Field(..., description="Whether the merge operation succeeded")
    message: str = Field(..., description="Detailed message about the merge operation")
    merged_path: str | None = Field(default=None, description="Path to the merged checkpoint if successful")
    # evalkube additions
    merge_id: str | None = Field(default=None, description="The CheckpointMerge resource (kubectl get ckm <id>)")
    status: str | None = Field(default=None, description="queued, running, completed or failed")
