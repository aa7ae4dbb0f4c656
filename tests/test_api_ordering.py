"""The run order of queued EvalJobs (evalkube.ordering), shared by the API's /queue and the operator."""

from __future__ import annotations

from typing import Any

from evalkube.ordering import Queue
from evalkube.resource import ANNOTATION_SUBMITTED_AT


def evaljob(name: str, created: str, priority: int | None = None, phase: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": "m", "tasks": ["t"]}
    if priority is not None:
        spec["priority"] = priority
    job: dict[str, Any] = {"metadata": {"name": name, "creationTimestamp": created}, "spec": spec}
    if phase is not None:
        job["status"] = {"phase": phase}
    return job


def names(jobs: list[dict[str, Any]]) -> list[str]:
    return [job["metadata"]["name"] for job in jobs]


def test_priority_first_then_age_then_name() -> None:
    jobs = [
        evaljob("old-low", "2026-01-01T00:00:00Z", priority=-5),
        evaljob("new-high", "2026-01-01T00:00:09Z", priority=10),
        evaljob("mid-default-b", "2026-01-01T00:00:05Z"),
        evaljob("mid-default-a", "2026-01-01T00:00:05Z", priority=0),
        evaljob("old-default", "2026-01-01T00:00:01Z"),
    ]
    assert names(Queue.of(jobs).queued()) == ["new-high", "old-default", "mid-default-a", "mid-default-b", "old-low"]


def test_within_one_second_the_apis_submission_time_keeps_fifo() -> None:
    first, second = evaljob("z-first", "2026-01-01T00:00:05Z"), evaljob("a-second", "2026-01-01T00:00:05Z")
    first["metadata"]["annotations"] = {ANNOTATION_SUBMITTED_AT: "2026-01-01T00:00:05.100000Z"}
    second["metadata"]["annotations"] = {ANNOTATION_SUBMITTED_AT: "2026-01-01T00:00:05.200000Z"}

    assert names(Queue.of([second, first]).queued()) == ["z-first", "a-second"]


def test_only_queued_jobs_are_in_the_queue_and_count_for_positions() -> None:
    jobs = [
        evaljob("running", "2026-01-01T00:00:00Z", priority=100, phase="Running"),
        evaljob("done", "2026-01-01T00:00:00Z", priority=100, phase="Completed"),
        evaljob("unseen", "2026-01-01T00:00:01Z"),  # no status yet: the operator hasn't seen it
        evaljob("queued", "2026-01-01T00:00:02Z", phase="Queued"),
    ]
    assert names(Queue.of(jobs).queued()) == ["unseen", "queued"]
    assert [Queue.of(jobs).position(job) for job in jobs[2:]] == [0, 1]
