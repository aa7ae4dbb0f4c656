"""The incremental queue (QueueIndex) always agrees with a full sort (Queue), whatever happens.

The API answers positions and GET /queue from a QueueIndex that the watch updates event by event;
`Queue` is the one definition of the order, computed from scratch. After every event of any
sequence (EvalJobs created, moved between phases, reprioritised, cancelled, deleted, a relist)
both must give the same queued order, the same position for every EvalJob, the same running
order and the same counts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from evalkube.mapping import job_status
from evalkube.ordering import Queue, QueueIndex, started_key
from evalkube.protocol import JobStatus
from evalkube.resource import ANNOTATION_SUBMITTED_AT

NAMES = [f"eval-{i}" for i in range(8)]
PHASES = [None, "Queued", "Running", "Completed", "Failed", "Cancelled"]
TIMES = [f"2026-01-01T00:00:0{i}Z" for i in range(4)]


def evaljob(name: str, phase: str | None, priority: int, submitted: str | None, created: str, started: str | None):
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if started:
        status["startedAt"] = started
    metadata: dict[str, Any] = {"name": name, "namespace": "ns", "creationTimestamp": created}
    if submitted:
        metadata["annotations"] = {ANNOTATION_SUBMITTED_AT: submitted}
    return {"metadata": metadata, "spec": {"priority": priority} if priority else {}, "status": status}


evaljobs = st.builds(
    evaljob,
    st.sampled_from(NAMES),
    st.sampled_from(PHASES),
    st.integers(-2, 2),
    st.one_of(st.none(), st.sampled_from(TIMES)),
    st.sampled_from(TIMES),
    st.one_of(st.none(), st.sampled_from(TIMES)),
)
events = st.one_of(
    st.tuples(st.just("put"), evaljobs),
    st.tuples(st.just("delete"), st.sampled_from(NAMES)),
    st.tuples(st.just("relist"), st.lists(evaljobs, max_size=6)),
)


def assert_agrees(index: QueueIndex, stored: dict[str, dict[str, Any]]) -> None:
    queue = Queue.of(stored.values())
    assert index.queued() == [job["metadata"]["name"] for job in queue.queued()]
    for job in stored.values():
        assert index.position(job) == queue.position(job), job["metadata"]["name"]
    running = sorted((j for j in stored.values() if job_status(j) is JobStatus.RUNNING), key=started_key)
    assert index.running() == [job["metadata"]["name"] for job in running]
    counts = Counter(job_status(job) for job in stored.values())
    assert {status: index.count(status) for status in JobStatus} == {status: counts[status] for status in JobStatus}


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=40))
def test_the_index_equals_a_full_sort_after_any_sequence_of_events(sequence) -> None:
    index, stored = QueueIndex(), {}
    for kind, payload in sequence:
        if kind == "put":
            stored[payload["metadata"]["name"]] = payload
            index.put(payload)
        elif kind == "delete":
            stored.pop(payload, None)
            index.delete(payload)
        else:
            stored = {job["metadata"]["name"]: job for job in payload}
            index.replace(stored.values())
        assert_agrees(index, stored)


def test_the_version_moves_exactly_when_an_answer_may_change() -> None:
    index = QueueIndex()
    first = evaljob("a", None, 0, None, TIMES[0], None)
    index.put(first)
    seen = index.version
    index.put(evaljob("a", "Queued", 0, None, TIMES[0], None))  # still queued at the same place
    assert index.version == seen
    index.put(evaljob("a", "Running", 0, None, TIMES[0], TIMES[1]))
    assert index.version > seen
    seen = index.version
    index.delete("nobody")
    assert index.version == seen
    index.delete("a")
    assert index.version > seen
