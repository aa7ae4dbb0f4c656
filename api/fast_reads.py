"""The two hot reads, GET /jobs/{job_id} and GET /queue, answered before FastAPI's routing.

A training loop polls its job and dashboards poll the queue many times a second across a cluster,
and for a cached answer FastAPI's routing and dependency solving cost several times the work
itself. This ASGI middleware answers such a request only when every step is a memory read with
the same functions the routes use: the caller known to the auth cache (or auth off), its rate
limit, the namespace it names served and synced, its permission already decided yes, and the job
in the watch cache. Anything else (a review to make, a 401/403/404/429/503, a cache miss) goes on
to the FastAPI route untouched, which produces the one answer the API gives for it; the bytes a
fast answer sends are the route's own (`renderings`). Tests compare both paths answer for answer.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from evalkube.api.auth import Identity, Permission, token_from_header
from evalkube.api.deps import chosen_namespace, rate_limit_key
from evalkube.api.request_metrics import label_route
from evalkube.api.routers.jobs import GET_JOB
from evalkube.api.routers.queue import LIST_QUEUE
from evalkube.api.state import ApiState, Tenant

_JOBS_PREFIX = "/jobs/"
_NAMESPACE_MAX = 63  # the route's own bound on ?namespace= (see deps.tenant)


class FastReads:
    """`app.add_middleware(FastReads)`, innermost, so the guards and the metrics see every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            answer = self._answer(scope)
            if answer is not None:
                route_path, body = answer
                label_route(scope, route_path)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-length", str(len(body)).encode()),
                            (b"content-type", b"application/json"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope) -> tuple[str, bytes] | None:
        """(route path, body) when every step is known from memory, else None (the route answers)."""
        path: str = scope["path"]
        if path == "/queue":
            job_id, permission, route_path = None, LIST_QUEUE, "/queue"
        elif path.startswith(_JOBS_PREFIX) and "/" not in path[len(_JOBS_PREFIX) :] and len(path) > len(_JOBS_PREFIX):
            job_id, permission, route_path = path[len(_JOBS_PREFIX) :], GET_JOB, "/jobs/{job_id}"
        else:
            return None
        app = scope.get("app")
        state: ApiState | None = getattr(getattr(app, "state", None), "api", None)
        if state is None:
            return None
        try:
            allowed = self._allowed(scope, state, permission)
            if allowed is None:
                return None
            tenant, identity = allowed
            evaljob = None if job_id is None else tenant.evaljobs.cached(job_id)
            if job_id is not None and evaljob is None:
                return None
            client = scope.get("client")
            # Last, once the answer is certain: a request handed to the route is counted there only.
            state.rate_limit.take(rate_limit_key(state, identity, client[0] if client else ""))
        except HTTPException:
            return None  # the route says no, in its own words
        return route_path, tenant.renderings.queue() if evaljob is None else tenant.renderings.job(evaljob)

    @staticmethod
    def _allowed(scope: Scope, state: ApiState, permission: Permission) -> tuple[Tenant, Identity] | None:
        """The request's namespace and caller when it may read there, all known from memory."""
        headers = Headers(scope=scope)
        identity = state.auth.known(token_from_header(headers.get("authorization")))
        if identity is None:
            return None
        namespace = QueryParams(scope.get("query_string", b"")).get("namespace")
        if namespace is not None and len(namespace) > _NAMESPACE_MAX:
            return None
        tenant = state.tenants.get(chosen_namespace(state, identity, namespace))
        if tenant is None or not tenant.jobs_cache.synced:
            return None
        if not state.auth.decided(identity, permission, tenant.namespace):
            return None
        return tenant, identity
