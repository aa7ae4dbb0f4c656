"""GET /tasks and GET /models: lmms-eval's shapes, answered from the catalog ConfigMap in memory."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from evalkube.api.catalog import Catalog, CatalogUnavailable
from evalkube.api.deps import CatalogDep, allowed

router = APIRouter(tags=["catalog"])

_UNAVAILABLE = {503: {"description": "No catalog: `detail` says why and how one is produced"}}


def _current(catalog: CatalogDep) -> Catalog:
    try:
        return catalog.get()
    except CatalogUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None


@router.get("/tasks", responses=_UNAVAILABLE, dependencies=[allowed("list", "evaljobs")])
async def list_tasks(catalog: CatalogDep) -> dict[str, list[str]]:
    """Every task (and group) name the evaluator image can run."""
    return {"tasks": _current(catalog).tasks}


@router.get("/models", responses=_UNAVAILABLE, dependencies=[allowed("list", "evaljobs")])
async def list_models(catalog: CatalogDep) -> dict[str, list[str]]:
    """Every model backend name the evaluator image can run."""
    return {"models": _current(catalog).models}
