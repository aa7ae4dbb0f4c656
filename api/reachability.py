"""Whether the Kubernetes API answers right now, for /health.

A watch can look connected long after its apiserver went away (a half-open TCP connection is
silent), so /health asks the apiserver directly with its cheapest call, GET /version, under a
short timeout. Kubelet probes, load balancers and every API replica call /health, so one answer
is reused for a second, and concurrent callers share one check.
"""

from __future__ import annotations

import threading
import time

from kubernetes.client import VersionApi


class Reachability:
    """GET /version with a short timeout, remembered for `ttl` seconds."""

    def __init__(self, version_api: VersionApi, timeout: float, ttl: float = 1.0) -> None:
        self._version_api = version_api
        self._timeout = timeout
        self._ttl = ttl
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._problem: str | None = None

    def problem(self) -> str | None:
        """None when the apiserver answered, else why it did not."""
        with self._lock:
            if time.monotonic() - self._checked_at >= self._ttl:
                self._problem = self._check()
                self._checked_at = time.monotonic()
            return self._problem

    def _check(self) -> str | None:
        try:
            self._version_api.get_code(_request_timeout=self._timeout)
        except Exception as exc:  # refused, timed out, TLS, 5xx, 401/403: all mean "not usable"
            return f"{type(exc).__name__}: {exc}".strip()
        return None
