"""JobInfo and the queue as JSON bytes, rendered once per version instead of once per request.

A training loop polls GET /jobs/{id} and dashboards poll GET /queue far more often than anything
changes, and building and validating a JobInfo (or the queue of thousands of names) costs more than
answering. So the bytes of each EvalJob's JobInfo are kept keyed by its resourceVersion (which the
apiserver changes on every write) and, while it is queued, its position; the queue's bytes are kept
keyed by its `QueueIndex.version`. A key that moves makes a new rendering: a kept one can never be
served for another version of the object. Used from the event loop only (no lock).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from cachetools import LRUCache

from evalkube import mapping
from evalkube.ordering import QueueIndex
from evalkube.protocol import JobStatus, QueueStatusResponse

#: Bytes of renderings kept (least recently read dropped first): a finished JobInfo carries its
#: metrics, up to 256 KiB, so the bound is on bytes, not on EvalJobs.
_KEPT_BYTES = 64 * 1024 * 1024


class Indexed(Protocol):
    """Where the QueueIndex lives: a WatchCache, whose lock keeps the index still while it is read."""

    def indexed(self) -> AbstractContextManager[QueueIndex]: ...


class Renderings:
    """What GET /jobs/{id} and GET /queue answer for one namespace, as bytes."""

    def __init__(self, cache: Indexed, kept_bytes: int = _KEPT_BYTES) -> None:
        self._cache = cache
        # name -> ((resourceVersion, position), bytes)
        self._jobs: LRUCache = LRUCache(maxsize=kept_bytes, getsizeof=lambda kept: len(kept[1]))
        self._queue: tuple[int, bytes] | None = None

    def position(self, evaljob: dict[str, Any]) -> int:
        """The queue position of a queued EvalJob (0 = next), in O(log N)."""
        with self._cache.indexed() as index:
            return index.position(evaljob)

    def job(self, evaljob: dict[str, Any]) -> bytes:
        """The JobInfo of `evaljob`, as the bytes of its JSON."""
        metadata = evaljob["metadata"]
        queued = mapping.job_status(evaljob) is JobStatus.QUEUED
        key = (metadata.get("resourceVersion"), self.position(evaljob) if queued else None)
        kept = self._jobs.get(metadata["name"])
        if kept is not None and kept[0] == key:
            return kept[1]
        body = mapping.job_info(evaljob, key[1]).model_dump_json().encode()
        self._jobs[metadata["name"]] = (key, body)
        return body

    def queue(self) -> bytes:
        """The QueueStatusResponse: queued jobs in run order, running ones longest-running first."""
        with self._cache.indexed() as index:
            if self._queue is not None and self._queue[0] == index.version:
                return self._queue[1]
            version, queued, running = index.version, index.queued(), index.running()
            counts = {status: index.count(status) for status in JobStatus}
        body = (
            QueueStatusResponse(
                queue_size=len(queued),
                running_job=running[0] if running else None,
                queued_jobs=queued,
                completed_jobs=counts[JobStatus.COMPLETED],
                failed_jobs=counts[JobStatus.FAILED],
                running_jobs=running,
                cancelled_jobs=counts[JobStatus.CANCELLED],
            )
            .model_dump_json()
            .encode()
        )
        self._queue = (version, body)
        return body
