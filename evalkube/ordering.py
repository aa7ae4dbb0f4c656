"""The queue of EvalJobs: who waits, in which order, and who holds a Job. One definition.

The operator admits waiting EvalJobs from this queue and the API reports it (queued_jobs,
position_in_queue), so the queue a user sees is the queue that runs. Order: priority first
(higher first), then age, then name. Age is the API's microsecond `submitted-at` annotation
where present (creationTimestamp has one-second resolution, and FIFO must hold within a second),
else creationTimestamp (kubectl); the name breaks remaining ties, so every reader agrees.

An EvalJob is in one of three places: finished, holding a Job (its Job was created; it may still
wait for the scheduler, Kueue or the image), or waiting for admission. REST "queued" is everything
not yet running: the waiting ones and those whose Job's pod has not started.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedList

from evalkube.mapping import job_status
from evalkube.protocol import JobStatus
from evalkube.resource import ANNOTATION_SUBMITTED_AT, Phase

#: (phase, holds a Job) of an EvalJob; the operator substitutes its own latest writes.
StateOf = Callable[[dict[str, Any]], tuple[str | None, bool]]


def stored_state(evaljob: dict[str, Any]) -> tuple[str | None, bool]:
    """(phase, holds a Job) as the EvalJob's status says."""
    status = evaljob.get("status") or {}
    return status.get("phase"), bool(status.get("jobName"))


def run_order_key(evaljob: dict[str, Any]) -> tuple[int, str, str]:
    """Sort key: smaller runs first."""
    metadata = evaljob["metadata"]
    priority = (evaljob.get("spec") or {}).get("priority") or 0
    submitted = (metadata.get("annotations") or {}).get(ANNOTATION_SUBMITTED_AT) or metadata.get(
        "creationTimestamp"
    ) or ""  # fmt: skip
    return (-priority, submitted, metadata["name"])


@dataclass(frozen=True)
class Queue:
    """The EvalJobs of one namespace, seen through `state`."""

    evaljobs: tuple[dict[str, Any], ...]
    state: StateOf = stored_state

    @classmethod
    def of(cls, evaljobs: Iterable[dict[str, Any]], state: StateOf = stored_state) -> Queue:
        return cls(tuple(evaljobs), state)

    def waiting(self) -> list[dict[str, Any]]:
        """EvalJobs waiting for admission (no Job, not finished, not being cancelled), next first."""
        found = []
        for evaljob in self.evaljobs:
            phase, has_job = self.state(evaljob)
            if not has_job and phase not in Phase.FINISHED and not (evaljob.get("spec") or {}).get("cancelRequested"):
                found.append(evaljob)
        return sorted(found, key=run_order_key)

    def holding_jobs(self) -> int:
        """EvalJobs holding a Job: the running slots in use."""
        return sum(1 for evaljob in self.evaljobs if self._holds(evaljob))

    def _holds(self, evaljob: dict[str, Any]) -> bool:
        phase, has_job = self.state(evaljob)
        return has_job and phase not in Phase.FINISHED

    def waiting_ahead(self, evaljob: dict[str, Any]) -> int:
        """How many waiting EvalJobs would be admitted before this one."""
        key, name = run_order_key(evaljob), evaljob["metadata"]["name"]
        return sum(1 for other in self.waiting() if other["metadata"]["name"] != name and run_order_key(other) < key)

    def queued(self) -> list[dict[str, Any]]:
        """REST's queued jobs (not yet running), in run order."""
        return sorted((job for job in self.evaljobs if job_status(job) is JobStatus.QUEUED), key=run_order_key)

    def position(self, evaljob: dict[str, Any]) -> int:
        """How many queued jobs run before this one (0 = next), as lmms-eval numbers it."""
        key = run_order_key(evaljob)
        return sum(1 for job in self.evaljobs if job_status(job) is JobStatus.QUEUED and run_order_key(job) < key)


def started_key(evaljob: dict[str, Any]) -> tuple[str, str]:
    """Sort key of running EvalJobs: the longest-running first (start time, else age, then name)."""
    metadata = evaljob["metadata"]
    return ((evaljob.get("status") or {}).get("startedAt") or metadata.get("creationTimestamp") or "", metadata["name"])


class QueueIndex:
    """REST's view of one namespace's queue, kept up to date event by event instead of sorted per read.

    A watch cache calls `put` and `delete` for every change it applies (under its own lock, so
    readers must hold that lock too), and `replace` after a LIST. Each read is then O(log N) (a
    position) or O(result) (the queued names), where sorting the namespace per request was
    O(N log N). It must agree with `Queue` at all times: tests compare the two after random
    sequences of events. `version` moves on every change that alters an answer, so a rendering of
    the queue can be kept until it does.
    """

    def __init__(self) -> None:
        self.version = 0
        self._clear()

    def _clear(self) -> None:
        self._queued = SortedList()  # run_order_key of every REST-queued EvalJob
        self._running = SortedList()  # started_key of every running one
        self._entries: dict[str, tuple[JobStatus, tuple[Any, ...]]] = {}
        self._counts: dict[JobStatus, int] = dict.fromkeys(JobStatus, 0)

    @staticmethod
    def _entry(evaljob: dict[str, Any]) -> tuple[JobStatus, tuple[Any, ...]]:
        status = job_status(evaljob)
        if status is JobStatus.QUEUED:
            return status, run_order_key(evaljob)
        if status is JobStatus.RUNNING:
            return status, started_key(evaljob)
        return status, ()

    def _sorted(self, status: JobStatus) -> Any:
        return self._queued if status is JobStatus.QUEUED else self._running if status is JobStatus.RUNNING else None

    def put(self, evaljob: dict[str, Any]) -> None:
        """An EvalJob was added or changed."""
        name, entry = evaljob["metadata"]["name"], self._entry(evaljob)
        old = self._entries.get(name)
        if old == entry:
            return
        if old is not None:
            self._drop(old)
        self._entries[name] = entry
        self._counts[entry[0]] += 1
        if (keys := self._sorted(entry[0])) is not None:
            keys.add(entry[1])
        self.version += 1

    def delete(self, name: str) -> None:
        """An EvalJob is gone."""
        old = self._entries.pop(name, None)
        if old is not None:
            self._drop(old)
            self.version += 1

    def replace(self, evaljobs: Iterable[dict[str, Any]]) -> None:
        """Start again from a full listing."""
        self._clear()
        for evaljob in evaljobs:
            self.put(evaljob)
        self.version += 1

    def _drop(self, entry: tuple[JobStatus, tuple[Any, ...]]) -> None:
        self._counts[entry[0]] -= 1
        if (keys := self._sorted(entry[0])) is not None:
            keys.remove(entry[1])

    def position(self, evaljob: dict[str, Any]) -> int:
        """How many queued jobs run before this one (0 = next): `Queue.position`, in O(log N)."""
        return self._queued.bisect_left(run_order_key(evaljob))

    def queued(self) -> list[str]:
        """The queued EvalJobs' names, the next to run first."""
        return [key[-1] for key in self._queued]

    def running(self) -> list[str]:
        """The running EvalJobs' names, the longest-running first."""
        return [key[-1] for key in self._running]

    def count(self, status: JobStatus) -> int:
        return self._counts[status]
