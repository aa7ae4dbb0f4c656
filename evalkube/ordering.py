"""The run order of queued EvalJobs: priority first (higher first), then age, then name.

One function shared by the operator (which admits queued EvalJobs in this order) and the API
(which reports queued_jobs and position_in_queue in it), so the queue a user sees is the queue
that runs. Age is the API's microsecond `submitted-at` annotation where present (creationTimestamp
has one-second resolution, and FIFO must hold within a second), else creationTimestamp (kubectl);
the name breaks remaining ties, so every reader agrees on one total order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from evalkube.mapping import job_status
from evalkube.protocol import JobStatus
from evalkube.resource import ANNOTATION_SUBMITTED_AT


def run_order_key(evaljob: dict[str, Any]) -> tuple[int, str, str]:
    """Sort key: smaller runs first."""
    metadata = evaljob["metadata"]
    priority = (evaljob.get("spec") or {}).get("priority") or 0
    submitted = (
        (metadata.get("annotations") or {}).get(ANNOTATION_SUBMITTED_AT) or metadata.get("creationTimestamp") or ""
    )
    return (-priority, submitted, metadata["name"])


def queued_in_run_order(evaljobs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The queued EvalJobs, the next one to run first."""
    return sorted((job for job in evaljobs if job_status(job) is JobStatus.QUEUED), key=run_order_key)


def position_in_queue(evaljob: dict[str, Any], evaljobs: Iterable[dict[str, Any]]) -> int:
    """How many queued EvalJobs run before this one (0 = next), as lmms-eval numbers it."""
    key = run_order_key(evaljob)
    return sum(1 for job in evaljobs if job_status(job) is JobStatus.QUEUED and run_order_key(job) < key)
