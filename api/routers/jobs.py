"""POST /evaluate, GET /jobs/{job_id}, DELETE /jobs/{job_id}: one EvalJob per evaluation.

job_id is the EvalJob's name, so `kubectl get ej <job_id>` shows the same job. Routes that call
the (blocking) `kubernetes` client are plain `def`: FastAPI runs them in its thread pool. POST
/evaluate stays on the event loop: its create is asynchronous (`apiserver`), and only a request
with a custom-tasks ConfigMap to read goes to a thread for its checks. GET /jobs/{job_id} reads the watch cache on the event loop and answers kept bytes (see
`renderings`); only a name the cache lacks costs a thread and a GET.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Response

from evalkube import mapping, resource
from evalkube.api.auth import NOBODY, Identity, Permission
from evalkube.api.deps import EvalJobsDep, RenderingsDep, StateDep, TenantDep, allowed, requires
from evalkube.api.deps import evaljobs as synced_evaljobs
from evalkube.api.evaljobs import EvalJobs
from evalkube.api.path_checks import check_paths
from evalkube.protocol import EvaluateRequest, JobInfo, JobStatus, JobSubmitResponse

router = APIRouter(tags=["jobs"])

_NOT_FOUND = {404: {"description": "No such job"}}
#: What GET /jobs/{job_id} needs (also answered by `fast_reads`, which checks the same).
GET_JOB = Permission("get", "evaljobs")
_FINISHED = frozenset(mapping.PHASE_TO_STATUS[phase] for phase in resource.Phase.FINISHED)


def _found(evaljobs: EvalJobs, job_id: str) -> dict[str, Any]:
    evaljob = evaljobs.get(job_id)
    if evaljob is None:
        raise HTTPException(status_code=404, detail=f"Job {job_id} not found")
    return evaljob


@router.post("/evaluate", response_model=JobSubmitResponse)
async def submit(
    caller: Annotated[Identity, allowed("create", "evaljobs")],
    body: EvaluateRequest,
    state: StateDep,
    target: TenantDep,
) -> JobSubmitResponse:
    """Create the EvalJob; the operator runs it when its turn (priority, then age) and resources come.

    One dependency for the namespace's pieces rather than one each: solving dependencies was the
    largest part of a submission's CPU.
    """
    evaljobs, renderings = await synced_evaljobs(target), target.renderings
    name_checks, policy, mounts = target.name_checks, target.policy, state.mounts
    check_paths(body.model_dump(), mounts)

    def checks() -> None:
        policy.check(body)  # 403 naming the rule; the operator applies the same rules to kubectl users
        name_checks.check(body)

    if body.custom_tasks is None:
        checks()  # all from memory
    else:
        await anyio.to_thread.run_sync(checks)  # they read the request's ConfigMap
    evaljob = await evaljobs.create(body, submitted_by=caller.username if caller is not NOBODY else None)
    position = renderings.position(evaljob)
    return JobSubmitResponse(
        job_id=evaljob["metadata"]["name"],
        status=JobStatus.QUEUED,
        position_in_queue=position,
        message=f"Job queued successfully. Position in queue: {position}",
    )


@router.get("/jobs/{job_id}", response_model=JobInfo, responses=_NOT_FOUND, dependencies=[requires(GET_JOB)])
async def get_job(job_id: str, evaljobs: EvalJobsDep, renderings: RenderingsDep) -> Response:
    """Status, times, and once completed lmms-eval's `result` (paths) and the `metrics` themselves."""
    evaljob = evaljobs.cached(job_id) or await anyio.to_thread.run_sync(_found, evaljobs, job_id)
    return Response(renderings.job(evaljob), media_type="application/json")


@router.delete(
    "/jobs/{job_id}",
    responses={**_NOT_FOUND, 400: {"description": "The job already finished"}},
    dependencies=[allowed("patch", "evaljobs")],
)
def cancel_job(job_id: str, evaljobs: EvalJobsDep) -> dict[str, str]:
    """Cancel a queued or running job (lmms-eval can cancel only queued ones).

    The API only records the request (spec.cancelRequested); the operator deletes the Job and
    its pods and marks the EvalJob cancelled. Asking again while that is pending is harmless.
    """
    evaljob = _found(evaljobs, job_id)
    status = mapping.job_status(evaljob)
    if status in _FINISHED:
        raise HTTPException(status_code=400, detail=f"Job {job_id} already {status.value}; nothing to cancel")
    if (evaljob.get("spec") or {}).get("cancelRequested"):
        return {"message": f"Job {job_id} is already being cancelled"}
    if not evaljobs.request_cancel(job_id):
        raise HTTPException(status_code=404, detail=f"Job {job_id} not found")
    return {"message": f"Job {job_id} is being cancelled ({status.value} until now)"}
