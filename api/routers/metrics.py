"""GET /metrics: the API's Prometheus metrics, for the chart's ServiceMonitor (prometheus_client).

Two parts, one exposition: the process's own registry (request counts and latency per route from
`evalkube.api.request_metrics`, and prometheus_client's process and Python collectors), and the
EvalJobs by status, computed from this app's watch cache on each scrape by a collector of its own
(no counters to keep in step, so any replica answers the same and a restart loses nothing).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from evalkube import mapping
from evalkube.api.cache import WatchCache
from evalkube.api.deps import TenantDep, allowed
from evalkube.protocol import JobStatus

router = APIRouter(tags=["metrics"])


class EvalJobCollector(Collector):
    """EvalJobs by REST status, and the health of the watch that counts them."""

    def __init__(self, cache: WatchCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = Counter(mapping.job_status(evaljob) for evaljob in self._cache.list())
        jobs = GaugeMetricFamily(
            "evalkube_evaljobs", "EvalJobs in the API's namespace, by REST status", labels=["status"]
        )
        for status in JobStatus:
            jobs.add_metric([status.value], counts[status])
        yield jobs
        yield GaugeMetricFamily(
            "evalkube_evaljob_cache_synced",
            "1 once the EvalJob watch cache holds a first LIST",
            value=int(self._cache.synced),
        )
        yield GaugeMetricFamily(
            "evalkube_evaljob_watch_healthy", "1 while the EvalJob watch is connected", value=int(self._cache.healthy)
        )


@router.get("/metrics", response_class=Response, dependencies=[allowed("list", "evaljobs")])
def metrics(target: TenantDep) -> Response:
    """The API's own metrics, and EvalJobs by status in the request's namespace (only what the caller may list)."""
    registry = CollectorRegistry()
    registry.register(EvalJobCollector(target.jobs_cache))
    return Response(generate_latest(REGISTRY) + generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
