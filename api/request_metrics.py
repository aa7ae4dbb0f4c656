"""Prometheus request metrics of the API: a count and a latency histogram per route.

A plain ASGI middleware (no BaseHTTPMiddleware, so streamed answers such as a followed log pass
through untouched). The route label is the route's path template (`/jobs/{job_id}`), never the
raw path, so job ids cannot make one series each; a request no route matched counts as
`unmatched`. Latency runs until the answer's last byte was sent (for a followed log, its whole
life). The metrics live in prometheus_client's default registry, served by GET /metrics.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "evalkube_api_requests", "HTTP requests answered, by route and status", ["method", "route", "status"]
)
LATENCY = Histogram(
    "evalkube_api_request_duration_seconds",
    "Time from a request's arrival until its answer was sent, by route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, float("inf")),
)


_ROUTE_KEY = "evalkube.route"


def label_route(scope: Scope, route_path: str) -> None:
    """Count a request answered without FastAPI's routing (see `fast_reads`) under its route."""
    scope[_ROUTE_KEY] = route_path


class RequestMetrics:
    """Counts and times every HTTP request of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler is answered 500 by the server

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get(_ROUTE_KEY) or getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            LATENCY.labels(method=method, route=route).observe(time.perf_counter() - started)
