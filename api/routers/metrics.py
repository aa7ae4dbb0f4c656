"""GET /metrics: Prometheus text exposition of what the API knows, for the chart's ServiceMonitor.

Computed from the watch cache on each scrape (no counters to keep in step), so any replica
answers the same and a restart loses nothing.
"""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from evalkube import mapping
from evalkube.api.deps import StateDep
from evalkube.protocol import JobStatus

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(state: StateDep) -> PlainTextResponse:
    cache = state.jobs_cache
    counts = Counter(mapping.job_status(evaljob) for evaljob in cache.list())
    lines = [
        "# HELP evalkube_evaljobs EvalJobs in the API's namespace, by REST status.",
        "# TYPE evalkube_evaljobs gauge",
        *(f'evalkube_evaljobs{{status="{status.value}"}} {counts[status]}' for status in JobStatus),
        "# HELP evalkube_evaljob_cache_synced 1 once the EvalJob watch cache holds a first LIST.",
        "# TYPE evalkube_evaljob_cache_synced gauge",
        f"evalkube_evaljob_cache_synced {int(cache.synced)}",
        "# HELP evalkube_evaljob_watch_healthy 1 while the EvalJob watch is connected.",
        "# TYPE evalkube_evaljob_watch_healthy gauge",
        f"evalkube_evaljob_watch_healthy {int(cache.healthy)}",
    ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
