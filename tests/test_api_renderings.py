"""A kept JobInfo or queue rendering never outlives the version it was made from.

GET /jobs/{id} and GET /queue answer bytes kept between requests (evalkube.api.renderings). Whatever
sequence of writes and reads happens, every answer must equal what a fresh rendering of the object
and a full sort of the namespace would give; and through the real API, a status write shows in the
very next read once the watch has delivered it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from evalkube import mapping
from evalkube.api.renderings import Renderings
from evalkube.ordering import Queue, QueueIndex, started_key
from evalkube.protocol import JobStatus, QueueStatusResponse

from harness.api_server import set_status, wait_until

NAMES = [f"eval-{i}" for i in range(6)]
PHASES = [None, "Queued", "Running", "Completed", "Failed", "Cancelled"]


class Cache:
    """The part of a WatchCache that Renderings uses, with its objects in a dict."""

    def __init__(self) -> None:
        self.index, self.objects = QueueIndex(), {}

    @contextlib.contextmanager
    def indexed(self) -> Iterator[QueueIndex]:
        yield self.index

    def write(self, obj: dict[str, Any]) -> None:
        self.objects[obj["metadata"]["name"]] = obj
        self.index.put(obj)

    def delete(self, name: str) -> None:
        self.objects.pop(name, None)
        self.index.delete(name)


def fresh_job(obj: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, Any]:
    queued = mapping.job_status(obj) is JobStatus.QUEUED
    return json.loads(mapping.job_info(obj, Queue.of(objects).position(obj) if queued else None).model_dump_json())


def fresh_queue(objects: list[dict[str, Any]]) -> dict[str, Any]:
    running = [
        o["metadata"]["name"] for o in sorted(objects, key=started_key) if mapping.job_status(o) is JobStatus.RUNNING
    ]
    count = lambda status: sum(1 for o in objects if mapping.job_status(o) is status)  # noqa: E731
    return QueueStatusResponse(
        queue_size=count(JobStatus.QUEUED),
        running_job=running[0] if running else None,
        queued_jobs=[o["metadata"]["name"] for o in Queue.of(objects).queued()],
        completed_jobs=count(JobStatus.COMPLETED),
        failed_jobs=count(JobStatus.FAILED),
        running_jobs=running,
        cancelled_jobs=count(JobStatus.CANCELLED),
    ).model_dump(mode="json")


writes = st.one_of(
    st.tuples(
        st.just("write"), st.sampled_from(NAMES), st.sampled_from(PHASES), st.integers(-1, 1), st.text(max_size=3)
    ),
    st.tuples(st.just("delete"), st.sampled_from(NAMES), st.none(), st.none(), st.none()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(writes, max_size=30), st.randoms(use_true_random=False))
def test_every_answer_equals_a_fresh_rendering_after_any_sequence_of_writes(sequence, rnd) -> None:
    cache, versions = Cache(), itertools.count(1)
    renderings = Renderings(cache)
    for kind, name, phase, priority, message in sequence:
        if kind == "delete":
            cache.delete(name)
        else:
            status = {"phase": phase, "message": message} if phase else {"message": message}
            if phase == "Running":
                status["startedAt"] = f"2026-01-01T00:00:0{rnd.randint(0, 3)}Z"
            cache.write(
                {
                    "metadata": {
                        "name": name,
                        "resourceVersion": str(next(versions)),
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                    },
                    "spec": {"model": "m", "tasks": ["t"], "priority": priority},
                    "status": status,
                }
            )
        objects = list(cache.objects.values())
        for obj in rnd.sample(objects, len(objects)):  # reads in any order, some kept from before
            assert json.loads(renderings.job(obj)) == fresh_job(obj, objects)
        assert json.loads(renderings.queue()) == fresh_queue(objects)


def test_a_status_write_shows_in_the_next_read_after_the_watch_delivers_it(http, kube_client, namespace) -> None:
    job_id = http.post("/evaluate", json={"model": "m", "tasks": ["t"]}).json()["job_id"]
    assert http.get(f"/jobs/{job_id}").json()["status"] == "queued"  # kept now
    assert http.get("/queue").json()["queued_jobs"] == [job_id]

    for phase, status in (("Running", "running"), ("Completed", "completed")):
        written = set_status(kube_client, namespace, job_id, phase=phase, message=f"now {phase}")
        version = written["metadata"]["resourceVersion"]
        wait_until(lambda: http.get(f"/jobs/{job_id}").json()["status"] == status, f"the API to see {phase}")
        assert http.get(f"/jobs/{job_id}").json()["message"] == f"now {phase}", version
    assert http.get("/queue").json()["completed_jobs"] == 1
