"""GET /metrics: Prometheus gauges of EvalJobs by status, from the watch cache."""

from __future__ import annotations

import kubernetes
import pytest

from evalkube import resource

from harness.api_server import evaljob_manifest, set_status, wait_until

pytestmark = pytest.mark.timeout(60)


def test_metrics_count_evaljobs_by_status(http, kube_client, namespace) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    for name in ("a", "b", "c"):
        custom.create_namespaced_custom_object(
            resource.GROUP, resource.VERSION, namespace, resource.PLURAL, evaljob_manifest(name)
        )
    set_status(kube_client, namespace, "b", phase="Running")
    set_status(kube_client, namespace, "c", phase="Failed", error="boom")

    def scrape() -> str | None:
        text = http.get("/metrics").text
        return text if 'evalkube_evaljobs{status="failed"} 1' in text else None

    text = wait_until(scrape, "the cache to see the failed EvalJob")
    assert http.get("/metrics").headers["content-type"].startswith("text/plain")
    lines = set(text.splitlines())
    assert {
        'evalkube_evaljobs{status="queued"} 1',
        'evalkube_evaljobs{status="running"} 1',
        'evalkube_evaljobs{status="completed"} 0',
        'evalkube_evaljobs{status="failed"} 1',
        'evalkube_evaljobs{status="cancelled"} 0',
        "evalkube_evaljob_cache_synced 1",
        "evalkube_evaljob_watch_healthy 1",
    } <= lines
    assert "# TYPE evalkube_evaljobs gauge" in lines
