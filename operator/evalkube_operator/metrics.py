"""The operator's own Prometheus metrics, served on /metrics (prometheus_client) by `serve`.

What the API's /metrics cannot see: how the reconciler itself fares (reconciles, errors, how long
one takes), how long EvalJobs wait and run, and why they fail. The histograms are labelled by
model backend (a bounded set: the image's backends), the failures by a reason class derived from
the error text (bounded too: never the raw message, which would make one series per job).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram, start_http_server

from evalkube.resource import Phase

log = logging.getLogger("evalkube.operator")

#: Waits and runs last from seconds (a tiny CPU job) to days (a large model on a busy cluster).
_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400, float("inf"))

RECONCILES = Counter("evalkube_operator_reconciles", "Reconciles of an EvalJob, by outcome", ["outcome"])
RECONCILE_ERRORS = Counter("evalkube_operator_reconcile_errors", "Reconciles that raised (retried by the resync)")
RECONCILE_DURATION = Histogram(
    "evalkube_operator_reconcile_duration_seconds",
    "Time one reconcile of an EvalJob takes, Kubernetes API calls included",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf")),
)
QUEUE_WAIT = Histogram(
    "evalkube_evaljob_queue_wait_seconds",
    "From the EvalJob's creation until its evaluator container started",
    ["model"],
    buckets=_DURATION_BUCKETS,
)
RUN_DURATION = Histogram(
    "evalkube_evaljob_run_duration_seconds",
    "From the evaluator container's start until the EvalJob finished, by final phase",
    ["model", "phase"],
    buckets=_DURATION_BUCKETS,
)
FAILURES = Counter("evalkube_evaljob_failures", "EvalJobs that failed, by reason", ["reason"])

#: (reason label, words the operator's or runner's error starts with or contains), first match wins.
_REASONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hung", ("hung:",)),
    ("timeout", ("timed out",)),
    ("oom", ("OOMKilled", "ran out of memory")),
    ("image", ("pull the evaluator image", "image name is invalid", "imagePullPolicy is Never")),
    ("invalid_spec", ("invalid spec", "spec.customTasks")),
    ("no_results", ("produced no results", "wrote no results", "lack the requested task")),
    ("job_deleted", ("was deleted before",)),
    ("killed", ("killed by signal", "evaluation stopped")),
    ("job_not_created", ("could not be created",)),
)


def failure_reason(error: str) -> str:
    """The class of a failure, for a bounded label: 'oom', 'timeout', 'hung', ..., else 'error'."""
    for reason, words in _REASONS:
        if any(word in error for word in words):
            return reason
    return "error"


def serve(port: int) -> None:
    """Serve /metrics on `port` (all interfaces) from a daemon thread; 0 serves nothing."""
    if port:
        start_http_server(port)
        log.info("serving Prometheus metrics on :%d/metrics", port)


def reconciled(started: float, ok: bool) -> None:
    """One reconcile ended, begun at time.perf_counter() `started`."""
    RECONCILE_DURATION.observe(time.perf_counter() - started)
    RECONCILES.labels(outcome="ok" if ok else "error").inc()
    if not ok:
        RECONCILE_ERRORS.inc()


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
        finish = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (finish - begin).total_seconds())


def transition(evaljob: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    """An EvalJob moved to `changes["phase"]` (its status before the move is in `evaljob`)."""
    phase = changes.get("phase")
    status = {**(evaljob.get("status") or {}), **changes}
    model = str((evaljob.get("spec") or {}).get("model") or "unknown")
    created = status.get("createdAt") or (evaljob.get("metadata") or {}).get("creationTimestamp")
    if phase == Phase.RUNNING and (wait := _seconds(created, status.get("startedAt"))) is not None:
        QUEUE_WAIT.labels(model=model).observe(wait)
    if phase in Phase.FINISHED:
        if (run := _seconds(status.get("startedAt"), status.get("completedAt"))) is not None:
            RUN_DURATION.labels(model=model, phase=phase).observe(run)
        if phase == Phase.FAILED:
            FAILURES.labels(reason=failure_reason(str(status.get("error") or ""))).inc()
