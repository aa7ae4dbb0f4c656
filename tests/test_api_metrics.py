"""GET /metrics: EvalJobs by status from the watch cache, and request counts and latency per route,
read back with prometheus_client's own parser (what Prometheus accepts, not what a regex likes)."""

from __future__ import annotations

import httpx
import kubernetes
import pytest
from prometheus_client.parser import text_string_to_metric_families

from evalkube import resource

from harness.api_server import evaljob_manifest, set_status, wait_until

pytestmark = pytest.mark.timeout(60)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} of an exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(parsed: dict, name: str, **labels: str) -> float | None:
    return parsed.get((name, frozenset(labels.items())))


def test_metrics_count_evaljobs_by_status(http: httpx.Client, kube_client: kubernetes.client.ApiClient,
                                          namespace: str) -> None:  # fmt: skip
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    for name in ("a", "b", "c"):
        custom.create_namespaced_custom_object(
            resource.GROUP, resource.VERSION, namespace, resource.PLURAL, evaljob_manifest(name)
        )
    set_status(kube_client, namespace, "b", phase="Running")
    set_status(kube_client, namespace, "c", phase="Failed", error="boom")

    def scrape() -> dict | None:
        parsed = samples(http.get("/metrics").text)
        return parsed if value(parsed, "evalkube_evaljobs", status="failed") else None

    parsed = wait_until(scrape, "the cache to see the failed EvalJob")
    assert http.get("/metrics").headers["content-type"].startswith("text/plain")
    assert {status: value(parsed, "evalkube_evaljobs", status=status) for status in
            ("queued", "running", "completed", "failed", "cancelled")} == {
        "queued": 1, "running": 1, "completed": 0, "failed": 1, "cancelled": 0}  # fmt: skip
    assert value(parsed, "evalkube_evaljob_cache_synced") == 1
    assert value(parsed, "evalkube_evaljob_watch_healthy") == 1


def test_requests_are_counted_and_timed_per_route_template(http: httpx.Client) -> None:
    before = samples(http.get("/metrics").text)
    for job in ("eval-aaaaa", "eval-bbbbb", "eval-ccccc"):
        assert http.get(f"/jobs/{job}").status_code == 404
    assert http.get("/no/such/route").status_code == 404
    after = samples(http.get("/metrics").text)

    def grew(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    # One series for every job id (the route's template), never one per id.
    assert grew("evalkube_api_requests_total", method="GET", route="/jobs/{job_id}", status="404") == 3
    assert not any("eval-aaaaa" in dict(labels).get("route", "") for _, labels in after)
    assert grew("evalkube_api_requests_total", method="GET", route="unmatched", status="404") == 1
    assert grew("evalkube_api_request_duration_seconds_count", method="GET", route="/jobs/{job_id}") == 3
    assert grew("evalkube_api_request_duration_seconds_sum", method="GET", route="/jobs/{job_id}") > 0
    bucket = value(
        after, "evalkube_api_request_duration_seconds_bucket", method="GET", route="/jobs/{job_id}", le="+Inf"
    )
    assert bucket == value(after, "evalkube_api_request_duration_seconds_count", method="GET", route="/jobs/{job_id}")
