"""The FastAPI application: lmms-eval's REST contract, backed by EvalJobs.

`create_app` builds the app without touching Kubernetes; its lifespan connects, starts the watch
caches and waits (bounded) for the first LIST, so a replica that has just started answers from
a complete cache rather than an empty one. It still starts when the apiserver is down: /health
then says so with a 503 and the probes keep it out of service until the cache catches up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from evalkube import __version__
from evalkube.api import auth, errors
from evalkube.api.fast_reads import FastReads
from evalkube.api.request_guards import RequestGuards
from evalkube.api.request_metrics import RequestMetrics
from evalkube.api.routers import catalog, health, jobs, logs, merge, metrics, queue
from evalkube.api.settings import ApiSettings
from evalkube.api.state import ApiState


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The app for `settings` (default: read from the environment, see ApiSettings)."""
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        auth.warn_if_open(settings.auth == "kubernetes", settings.host)
        state = await anyio.to_thread.run_sync(ApiState.open, settings)
        app.state.api = state
        try:
            await anyio.to_thread.run_sync(state.wait_synced, settings.startup_sync_seconds)
            yield
        finally:
            await state.apiserver.close()
            await anyio.to_thread.run_sync(state.close)

    app = FastAPI(
        title="evalkube API",
        description="lmms-eval evaluations as Kubernetes EvalJobs, behind lmms-eval's evaluation-server REST API.",
        version=__version__,
        lifespan=lifespan,
    )
    errors.install(app)
    if settings.fast_reads:
        app.add_middleware(FastReads)  # innermost: guarded and counted like every request
    app.add_middleware(RequestGuards, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics)  # outermost: it counts the guards' refusals too
    for module in (health, jobs, logs, queue, catalog, merge, metrics):
        app.include_router(module.router)
    return app
