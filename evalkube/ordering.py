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


def queued_in_run_order(evaljobs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The queued EvalJobs, the next one to run first."""
    return Queue.of(evaljobs).queued()


def position_in_queue(evaljob: dict[str, Any], evaljobs: Iterable[dict[str, Any]]) -> int:
    """How many queued EvalJobs run before this one (0 = next)."""
    return Queue.of(evaljobs).position(evaljob)
