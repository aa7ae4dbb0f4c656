"""POST /merge (lmms-eval's synchronous contract, run as a CheckpointMerge) and GET /merges/{id}.

The merge runs as a Job; this route creates the CheckpointMerge and waits for its outcome up to
EVALKUBE_API_MERGE_WAIT_SECONDS (30 min by default). Errors keep lmms-eval's classes: a missing
checkpoint or rank file is a 404, a wrong layout or checkpoint_type a 400, and the merge's own
failure (e.g. out of memory) a 500. Past the bound the answer is `success: false` with the
resource's name (`merge_id`), which GET /merges/{id} reads later.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException

from evalkube.api.deps import MergesDep, MountsDep, SettingsDep, allowed
from evalkube.api.merges import merge_response
from evalkube.api.path_checks import check_paths
from evalkube.protocol import MergeRequest, MergeResponse
from evalkube.resource import Phase

router = APIRouter(tags=["merge"])

_ERRORS = {
    400: {"description": "The checkpoint's layout or checkpoint_type is wrong"},
    404: {"description": "The checkpoint, its shard folder or a rank file is missing"},
    500: {"description": "The merge itself failed (e.g. ran out of memory)"},
}


@router.post(
    "/merge", response_model=MergeResponse, responses=_ERRORS, dependencies=[allowed("create", "checkpointmerges")]
)
async def merge_checkpoint(
    body: MergeRequest, merges: MergesDep, mounts: MountsDep, settings: SettingsDep
) -> MergeResponse:
    """Merge an FSDP2-sharded (or DCP) checkpoint into a Hugging Face folder, in a CPU-only Job."""
    check_paths(body.model_dump(), mounts)
    created = await anyio.to_thread.run_sync(merges.create, body)
    name = created["metadata"]["name"]
    merge = await merges.wait(name, settings.merge_wait_seconds) or created
    status = merge.get("status") or {}
    if status.get("phase") == Phase.FAILED:
        code = status.get("errorCode") if status.get("errorCode") in (400, 404) else 500
        raise HTTPException(status_code=code, detail=f"{status.get('error') or 'merge failed'} (merge {name})")
    return merge_response(merge)


@router.get(
    "/merges/{merge_id}",
    response_model=MergeResponse,
    responses={404: {"description": "No such merge"}},
    dependencies=[allowed("get", "checkpointmerges")],
)
def get_merge(merge_id: str, merges: MergesDep) -> MergeResponse:
    """A merge's state: queued, running, completed (with merged_path) or failed (with the reason)."""
    merge = merges.get(merge_id)
    if merge is None:
        raise HTTPException(status_code=404, detail=f"Merge {merge_id} not found")
    return merge_response(merge)
