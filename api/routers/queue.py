"""GET /queue: the queue in run order, and every running job (lmms-eval runs one at a time)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter

from evalkube import mapping
from evalkube.api.deps import EvalJobsDep, allowed
from evalkube.ordering import queued_in_run_order
from evalkube.protocol import JobStatus, QueueStatusResponse

router = APIRouter(tags=["queue"])


def _started(evaljob: dict[str, Any]) -> tuple[str, str]:
    metadata = evaljob["metadata"]
    return ((evaljob.get("status") or {}).get("startedAt") or metadata.get("creationTimestamp") or "", metadata["name"])


@router.get("/queue", response_model=QueueStatusResponse, dependencies=[allowed("list", "evaljobs")])
async def queue(evaljobs: EvalJobsDep) -> QueueStatusResponse:
    """queued_jobs in the order they will run; running_job is the longest-running one."""
    everything = evaljobs.all()
    counts = Counter(mapping.job_status(evaljob) for evaljob in everything)
    queued = [evaljob["metadata"]["name"] for evaljob in queued_in_run_order(everything)]
    running = [
        evaljob["metadata"]["name"]
        for evaljob in sorted(everything, key=_started)
        if mapping.job_status(evaljob) is JobStatus.RUNNING
    ]
    return QueueStatusResponse(
        queue_size=len(queued),
        running_job=running[0] if running else None,
        queued_jobs=queued,
        completed_jobs=counts[JobStatus.COMPLETED],
        failed_jobs=counts[JobStatus.FAILED],
        running_jobs=running,
        cancelled_jobs=counts[JobStatus.CANCELLED],
    )
