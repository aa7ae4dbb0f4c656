"""The wire protocol: lmms-eval's evaluation-server models, plus evalkube's optional additions.

Field names, types and defaults match lmms-eval's `entrypoints/protocol.py`, so a training loop
written against lmms-eval's EvalClient works unchanged. evalkube only ADDS optional fields
(Kubernetes scheduling knobs on the request; `running_jobs` on /queue; `artifacts` on a job),
never changes or removes one.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from evalkube import validation


class JobStatus(str, Enum):  # noqa: UP042 - str() and format() must give the value, as upstream
    """Status of an evaluation job."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CustomTasks(BaseModel):
    """Task definitions brought with the job (lmms-eval task YAML and small data files)."""

    model_config = ConfigDict(extra="forbid")

    config_map: str = Field(
        ..., min_length=1, max_length=253, description="ConfigMap (same namespace) holding task YAML and data files"
    )


class EvaluateRequest(BaseModel):
    """Request model for the evaluation endpoint (lmms-eval's fields first, evalkube's after)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="Model backend name (e.g. huggingface, vllm, qwen2_5_vl)")
    tasks: list[str] = Field(..., min_length=1, description="List of task names to evaluate")
    model_args: dict[str, Any] | None = Field(default=None, description="Model arguments")
    num_fewshot: int | None = Field(default=None, ge=0, description="Number of few-shot examples")
    batch_size: int | str | None = Field(default=None, description="Batch size (an integer, or e.g. 'auto')")
    device: str | None = Field(default=None, description="Device to run on")
    limit: int | float | None = Field(default=None, gt=0, description="Limit number of examples")
    gen_kwargs: str | None = Field(default=None, description="Generation kwargs, 'k=v,k=v'")
    log_samples: bool = Field(default=True, description="Whether to log samples")
    predict_only: bool = Field(default=False, description="Only generate predictions")
    num_gpus: int = Field(default=1, ge=0, le=64, description="Number of GPUs to use (0 = CPU only)")
    output_dir: str | None = Field(
        default=None, description="Sub-directory of the artifacts volume for per-sample logs"
    )

    # evalkube additions: all optional, so upstream clients never notice them.
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first among queued jobs")
    timeout_seconds: int | None = Field(default=None, ge=1, description="Fail the job if it runs longer than this")
    image: str | None = Field(default=None, min_length=1, description="Evaluator image override")
    resources: dict[str, dict[str, int | str]] | None = Field(
        default=None, description="Container resources (requests/limits)"
    )
    node_selector: dict[str, str] | None = Field(default=None, description="Node selector for the evaluator pod")
    tolerations: list[dict[str, Any]] | None = Field(default=None, description="Tolerations for the evaluator pod")
    custom_tasks: CustomTasks | None = Field(default=None, description="Custom task definitions from a ConfigMap")
    allow_online: bool = Field(default=False, description="Allow hub downloads (only if the operator allows it too)")

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return validation.check_token("model", value)

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: list[str]) -> list[str]:
        return [validation.check_token(f"tasks[{i}]", task) for i, task in enumerate(value)]

    @field_validator("model_args")
    @classmethod
    def _model_args(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else validation.check_model_args("model_args", value)

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be >= 1")
        if isinstance(value, str):
            validation.check_token("batch_size", value)
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        return None if value is None else validation.check_token("device", value)

    @field_validator("gen_kwargs")
    @classmethod
    def _gen_kwargs(cls, value: str | None) -> str | None:
        return None if value is None else validation.check_gen_kwargs("gen_kwargs", value)

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError("must be a relative path inside the artifacts volume, without '..'")
        return value


class JobInfo(BaseModel):
    """Information about a job (lmms-eval's shape; `result` holds the metrics document itself)."""

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
    artifacts: dict[str, Any] | None = None


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
    """Request model for merging FSDP2 sharded checkpoints."""

    checkpoint_path: str = Field(..., description="Path to sharded checkpoint directory")
    output_path: str | None = Field(default=None, description="Output path for merged checkpoint")
    checkpoint_type: Literal["regular", "ema"] = Field(default="regular", description="'regular' or 'ema' weights")


class MergeResponse(BaseModel):
    """Response model for checkpoint merge operations."""

    success: bool = Field(..., description="Whether the merge operation succeeded")
    message: str = Field(..., description="Detailed message about the merge operation")
    merged_path: str | None = Field(default=None, description="Path to the merged checkpoint if successful")
