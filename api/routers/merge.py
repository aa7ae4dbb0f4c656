"""POST /merge: lmms-eval's checkpoint merging, not offered yet (it has its own issue).

The body is still validated as MergeRequest, so a client sending a wrong body learns that first.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from evalkube.protocol import MergeRequest, MergeResponse

router = APIRouter(tags=["merge"])

NOT_IMPLEMENTED = (
    "Checkpoint merging (POST /merge) is not implemented by evalkube yet. Merge the sharded "
    "checkpoint before submitting it, and pass the merged checkpoint's path in model_args."
)


@router.post("/merge", response_model=MergeResponse, responses={501: {"description": "Not implemented yet"}})
async def merge_checkpoint(body: MergeRequest) -> MergeResponse:
    """Always 501 for now."""
    raise HTTPException(status_code=501, detail=NOT_IMPLEMENTED)
