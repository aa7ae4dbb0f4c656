"""GET /health: healthy only while the Kubernetes API answers and the EvalJob cache is current."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from evalkube import mapping
from evalkube.api.deps import StateDep
from evalkube.protocol import HealthResponse, JobStatus

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Unhealthy; `detail` says why"}},
)
def health(state: StateDep) -> HealthResponse | JSONResponse:
    """200 "healthy", or 503 "unhealthy" with the reasons: probes take the replica out of service."""
    problems = []
    unreachable = state.reachability.problem()
    if unreachable:
        problems.append(f"the Kubernetes API is unreachable ({unreachable})")
    cache = state.jobs_cache
    if not cache.synced:
        problems.append(f"EvalJobs have not been loaded yet ({cache.error or 'loading'})")
    elif not cache.healthy:
        problems.append(f"the EvalJob watch is reconnecting ({cache.error})")
    answer = HealthResponse(
        status="unhealthy" if problems else "healthy",
        timestamp=datetime.now(UTC).isoformat(),
        # a count for probes every few seconds: no need to sort the queue
        queue_size=sum(mapping.job_status(evaljob) is JobStatus.QUEUED for evaljob in cache.list()),
        detail="; ".join(problems) or None,
    )
    if problems:
        return JSONResponse(status_code=503, content=answer.model_dump())
    return answer
