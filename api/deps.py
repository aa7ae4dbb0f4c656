"""FastAPI dependencies: the pieces of ApiState a route needs, checked for use.

Routes declare what they use (`evaljobs: EvalJobsDep`), so a route's signature says which
Kubernetes state it touches, and the "cache not loaded yet" answer lives in one place. They are
`async def` and answer from memory on the event loop (FastAPI would run a plain `def` in its thread
pool, a hop that costs more than the work); only a review or a new tenant goes to a thread.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Query, Request

from evalkube.api.auth import Identity, Permission, bearer_token
from evalkube.api.cache import WatchCache
from evalkube.api.catalog import CatalogSource
from evalkube.api.evaljobs import EvalJobs
from evalkube.api.merges import Merges
from evalkube.api.renderings import Renderings
from evalkube.api.settings import ApiSettings
from evalkube.api.state import ApiState, Tenant
from evalkube.resource import GROUP


async def api_state(request: Request) -> ApiState:
    return request.app.state.api


StateDep = Annotated[ApiState, Depends(api_state)]


async def caller(request: Request, state: StateDep) -> Identity:
    """The authenticated, rate-limited caller (401 or 429 otherwise); once per request."""
    token = bearer_token(request)
    identity = state.auth.known(token) or await anyio.to_thread.run_sync(state.auth.authenticate, token)
    state.rate_limit.take(rate_limit_key(state, identity, request.client.host if request.client else ""))
    request.state.identity = identity
    return identity


def rate_limit_key(state: ApiState, identity: Identity, client_host: str) -> str:
    """Whose bucket a request spends: the user's, or with authentication off the client address's."""
    return identity.username if state.auth.enabled else client_host


def chosen_namespace(state: ApiState, identity: Identity, namespace: str | None) -> str:
    """The namespace a request is about: the one it names, else the caller's ServiceAccount's
    when this API serves it, else the API's own."""
    own = identity.service_account_namespace
    return namespace or (own if state.serves(own) else None) or state.settings.namespace


CallerDep = Annotated[Identity, Depends(caller)]


async def tenant(
    state: StateDep,
    who: CallerDep,
    namespace: Annotated[
        str | None,
        Query(
            description="The namespace of the request's EvalJobs: default the caller's ServiceAccount's "
            "namespace when this API serves it, else the API's own",
            max_length=63,
        ),
    ] = None,
) -> Tenant:
    """The namespace a request is about. A job_id is unique within its namespace only, so a caller
    using another namespace than its own names it on every request (our clients: `namespace=`)."""
    chosen = chosen_namespace(state, who, namespace)
    found = state.tenants.get(chosen) or await anyio.to_thread.run_sync(state.tenant, chosen)
    if found is None:
        served = "every namespace of the cluster" if state.settings.serves_all() else ", ".join(state.tenants)
        raise HTTPException(
            status_code=404, detail=f"namespace {chosen!r} is not served by this API (served: {served})"
        )
    return found


TenantDep = Annotated[Tenant, Depends(tenant)]


def _require_synced(cache: WatchCache, what: str) -> None:
    """503 until the cache holds a first LIST: before that, answers would be guesses."""
    if not cache.synced:
        raise HTTPException(
            status_code=503, detail=f"{what} have not been loaded from Kubernetes yet ({cache.error or 'loading'})"
        )


async def evaljobs(target: TenantDep) -> EvalJobs:
    """The EvalJobs of the request's namespace, once loaded."""
    _require_synced(target.jobs_cache, "EvalJobs")
    return target.evaljobs


EvalJobsDep = Annotated[EvalJobs, Depends(evaljobs)]


async def renderings(target: TenantDep) -> Renderings:
    """JobInfo and queue renderings of the request's namespace, once its EvalJobs are loaded."""
    _require_synced(target.jobs_cache, "EvalJobs")
    return target.renderings


RenderingsDep = Annotated[Renderings, Depends(renderings)]


async def catalog(state: StateDep) -> CatalogSource:
    return state.catalog


CatalogDep = Annotated[CatalogSource, Depends(catalog)]


async def mounts(state: StateDep) -> list[str]:
    """The paths evaluator pods have user data under: where a request's absolute paths may point."""
    return state.mounts


MountsDep = Annotated[list[str], Depends(mounts)]


async def merges(target: TenantDep) -> Merges:
    """The CheckpointMerges of the request's namespace, once loaded."""
    _require_synced(target.merges_cache, "CheckpointMerges")
    return target.merges


MergesDep = Annotated[Merges, Depends(merges)]


async def settings(state: StateDep) -> ApiSettings:
    return state.settings


SettingsDep = Annotated[ApiSettings, Depends(settings)]


def allowed(verb: str, resource: str, subresource: str = "", group: str = GROUP) -> Any:
    """A dependency: the caller, authenticated, rate-limited, and allowed `verb resource` in the
    request's namespace; 401, 429 or 403 (naming the missing permission) otherwise."""
    return requires(Permission(verb, resource, subresource, group))


def requires(permission: Permission) -> Any:
    """`allowed`, for a Permission defined once and read elsewhere too (see `fast_reads`)."""

    async def check(state: StateDep, who: CallerDep, target: TenantDep) -> Identity:
        if not state.auth.decided(who, permission, target.namespace):  # a review: off the event loop
            await anyio.to_thread.run_sync(state.auth.authorize, who, permission, target.namespace)
        return who

    return Depends(check)
