"""FastAPI dependencies: the pieces of ApiState a route needs, checked for use.

Routes declare what they use (`evaljobs: EvalJobsDep`), so a route's signature says which
Kubernetes state it touches, and the "cache not loaded yet" answer lives in one place. They are
`async def` because they never block: FastAPI would run a plain `def` in its thread pool.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request

from evalkube.api.auth import Identity, Permission, bearer_token
from evalkube.api.catalog import CatalogSource
from evalkube.api.evaljobs import EvalJobs
from evalkube.api.merges import Merges
from evalkube.api.name_checks import NameChecks
from evalkube.api.settings import ApiSettings
from evalkube.api.state import ApiState
from evalkube.resource import GROUP


async def api_state(request: Request) -> ApiState:
    return request.app.state.api


StateDep = Annotated[ApiState, Depends(api_state)]


async def evaljobs(state: StateDep) -> EvalJobs:
    """The EvalJobs, once the cache holds a first LIST (before that, answers would be guesses)."""
    if not state.jobs_cache.synced:
        raise HTTPException(
            status_code=503,
            detail=f"EvalJobs have not been loaded from Kubernetes yet ({state.jobs_cache.error or 'loading'})",
        )
    return state.evaljobs


EvalJobsDep = Annotated[EvalJobs, Depends(evaljobs)]


async def catalog(state: StateDep) -> CatalogSource:
    return state.catalog


CatalogDep = Annotated[CatalogSource, Depends(catalog)]


async def name_checks(state: StateDep) -> NameChecks:
    return state.name_checks


NameChecksDep = Annotated[NameChecks, Depends(name_checks)]


async def mounts(state: StateDep) -> list[str]:
    """The paths evaluator pods have user data under: where a request's absolute paths may point."""
    return state.mounts


MountsDep = Annotated[list[str], Depends(mounts)]


async def merges(state: StateDep) -> Merges:
    """The CheckpointMerges, once their cache holds a first LIST."""
    if not state.merges.cache.synced:
        raise HTTPException(
            status_code=503,
            detail=f"CheckpointMerges have not been loaded from Kubernetes yet ({state.merges.cache.error or 'loading'})",
        )
    return state.merges


MergesDep = Annotated[Merges, Depends(merges)]


async def settings(state: StateDep) -> ApiSettings:
    return state.settings


SettingsDep = Annotated[ApiSettings, Depends(settings)]


def allowed(verb: str, resource: str, subresource: str = "", group: str = GROUP) -> Any:
    """A dependency: the caller, authenticated, rate-limited, and allowed `verb resource` in the
    namespace; 401, 429 or 403 (naming the missing permission) otherwise."""
    permission = Permission(verb, resource, subresource, group)

    async def check(request: Request, state: StateDep) -> Identity:
        token = bearer_token(request)
        identity = await anyio.to_thread.run_sync(state.auth.authenticate, token)
        state.rate_limit.take(
            identity.username if state.auth.enabled else (request.client.host if request.client else "")
        )
        await anyio.to_thread.run_sync(state.auth.authorize, identity, permission, state.settings.namespace)
        request.state.identity = identity
        return identity

    return Depends(check)
