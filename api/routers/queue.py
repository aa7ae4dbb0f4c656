"""GET /queue: the queue in run order, and every running job (lmms-eval runs one at a time).

Answered from the namespace's QueueIndex (kept up to date by the watch), as bytes rendered once
per change of the queue (see `renderings`), so a read does not sort the namespace.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from evalkube.api.auth import Permission
from evalkube.api.deps import RenderingsDep, requires
from evalkube.protocol import QueueStatusResponse

router = APIRouter(tags=["queue"])
#: What GET /queue needs (also answered by `fast_reads`, which checks the same).
LIST_QUEUE = Permission("list", "evaljobs")


@router.get("/queue", response_model=QueueStatusResponse, dependencies=[requires(LIST_QUEUE)])
async def queue(renderings: RenderingsDep) -> Response:
    """queued_jobs in the order they will run; running_job is the longest-running one."""
    return Response(renderings.queue(), media_type="application/json")
