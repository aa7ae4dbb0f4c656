"""The reconciler's decisions, fast: a `Reconciler` over fake watch views and a recording cluster.

The cluster here is a small in-memory stand-in for `evalkube.operator.cluster.Cluster` (the
reconciler's only door to Kubernetes) that records every call; the subprocess tests in
test_operator_*.py prove the same behaviours through real kopf and the emulator.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from evalkube.operator.reconcile import Reconciler
from evalkube.operator.settings import OperatorSettings
from evalkube.resource import Phase

NS = "research"


def evaljob(name: str, priority: int = 0, submitted: str = "2026-01-01T00:00:00.000000Z", **spec: Any) -> dict:
    return {
        "apiVersion": "evalkube.dev/v1alpha1",
        "kind": "EvalJob",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "1",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {"evalkube.dev/submitted-at": submitted},
        },
        "spec": {"model": "huggingface", "tasks": ["mme"], "numGpus": 0, "priority": priority, **spec},
    }


@dataclass
class RecordingCluster:
    """EvalJobs, Jobs and ConfigMaps in memory; `calls` lists what the reconciler did."""

    evaljobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    #: Calls that raise once, e.g. {"create_job": ApiException(status=500)}.
    fail_once: dict[str, Exception] = field(default_factory=dict)
    #: Seconds a status write takes (the watches show it only after), and the most made at once.
    patch_seconds: float = 0.0
    patches_in_flight: int = 0
    most_patches_in_flight: int = 0

    def _maybe_fail(self, call: str) -> None:
        if call in self.fail_once:
            raise self.fail_once.pop(call)

    async def get_evaljob(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_evaljob", name))
        found = self.evaljobs.get(name)
        return copy.deepcopy(found) if found else None

    async def patch_evaljob_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        self.calls.append(("patch_status", name))
        self._maybe_fail("patch_status")
        if self.patch_seconds:
            self.patches_in_flight += 1
            self.most_patches_in_flight = max(self.most_patches_in_flight, self.patches_in_flight)
            await asyncio.sleep(self.patch_seconds)
            self.patches_in_flight -= 1
        if name not in self.evaljobs:
            return None
        self.evaljobs[name].setdefault("status", {}).update(copy.deepcopy(status))
        self.bump(name)
        return copy.deepcopy(self.evaljobs[name])

    def bump(self, name: str) -> None:
        """A write: the object's resourceVersion moves on, as the apiserver's does."""
        metadata = self.evaljobs[name]["metadata"]
        metadata["resourceVersion"] = str(int(metadata.get("resourceVersion", "0")) + 1)

    async def delete_evaljob(self, namespace: str, name: str) -> None:
        self.calls.append(("delete_evaljob", name))
        self.evaljobs.pop(name, None)

    async def create_job(self, job: dict[str, Any]) -> bool:
        name = job["metadata"]["name"]
        self.calls.append(("create_job", name))
        self._maybe_fail("create_job")
        if name in self.jobs:
            return False
        self.jobs[name] = job
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        self.calls.append(("delete_job", name))
        self.jobs.pop(name, None)

    async def evaljob_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return []

    async def config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.config_maps.get(name)

    def created(self) -> list[str]:
        return [name for call, name in self.calls if call == "create_job"]


class FakeViews:
    """What the watches saw: here, exactly what the cluster holds."""

    def __init__(self, cluster: RecordingCluster) -> None:
        self.cluster = cluster

    def evaljob(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.cluster.evaljobs.get(name)
        return copy.deepcopy(found) if found else None

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.cluster.jobs.get(name)

    def pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return []

    def evaljobs(self, namespace: str) -> list[dict[str, Any]]:
        return list(self.cluster.evaljobs.values())


@pytest.fixture
def cluster() -> RecordingCluster:
    return RecordingCluster()


def reconciler(cluster: RecordingCluster, **settings: Any) -> Reconciler:
    return Reconciler(cluster, OperatorSettings(evaluator_image="evaluator:test", **settings))  # type: ignore[arg-type]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def add(cluster: RecordingCluster, *evaljobs: dict[str, Any]) -> None:
    for item in evaljobs:
        cluster.evaljobs[item["metadata"]["name"]] = item


def status(cluster: RecordingCluster, name: str) -> dict[str, Any]:
    return cluster.evaljobs[name].get("status") or {}


def test_admission_creates_the_job_and_records_it(cluster: RecordingCluster) -> None:
    add(cluster, evaljob("a"))
    run(reconciler(cluster).reconcile(NS, "a", FakeViews(cluster)))
    assert cluster.created() == ["a"]
    assert status(cluster, "a")["jobName"] == "a" and status(cluster, "a")["phase"] == Phase.QUEUED
    assert status(cluster, "a")["observedGeneration"] == 1


def test_the_jobs_first_event_finds_the_status_already_saying_what_it_shows(cluster: RecordingCluster) -> None:
    """Admission writes what a Job without a pod means, so the Job's first event writes nothing."""
    add(cluster, evaljob("a"))
    operator, views = reconciler(cluster), FakeViews(cluster)
    run(operator.reconcile(NS, "a", views))
    run(operator.reconcile(NS, "a", views))  # the Job's first event: no pod yet
    assert [call for call in cluster.calls if call[0] == "patch_status"] == [("patch_status", "a")]
    assert status(cluster, "a")["message"] == "waiting for the Job controller to create the evaluator pod"


def test_a_spec_the_runner_would_refuse_fails_at_admission_without_a_job(cluster: RecordingCluster) -> None:
    add(cluster, evaljob("bad", outputDir="a/../../etc"))
    run(reconciler(cluster).reconcile(NS, "bad", FakeViews(cluster)))
    assert cluster.created() == []
    assert status(cluster, "bad")["phase"] == Phase.FAILED
    assert status(cluster, "bad")["error"].startswith("invalid spec: outputDir: must be a relative path without '..'")


def test_a_path_no_pod_mounts_fails_at_admission_naming_the_field(cluster: RecordingCluster) -> None:
    add(cluster, evaljob("far", outputDir="/elsewhere/out", modelArgs={"pretrained": "/shared/ckpt"}))
    add(cluster, evaljob("near", outputDir="/shared/run1/eval", modelArgs={"pretrained": "/shared/ckpt"}))
    operator = reconciler(cluster, shared_volumes='[{"claimName": "ckpt", "mountPath": "/shared"}]')
    run(operator.reconcile(NS, "far", FakeViews(cluster)))
    run(operator.reconcile(NS, "near", FakeViews(cluster)))
    assert cluster.created() == ["near"]
    assert status(cluster, "far")["error"] == (
        "spec.outputDir: '/elsewhere/out' lies under no volume the evaluator pods mount; mounted: /shared"
    )


def test_with_max_running_the_highest_priority_then_oldest_is_admitted(cluster: RecordingCluster) -> None:
    add(
        cluster,
        evaljob("old", submitted="2026-01-01T00:00:01.000000Z"),
        evaljob("new", submitted="2026-01-01T00:00:02.000000Z"),
        evaljob("urgent", priority=5, submitted="2026-01-01T00:00:03.000000Z"),
    )
    operator = reconciler(cluster, max_running=1)
    views = FakeViews(cluster)
    for name in ("old", "new", "urgent"):
        run(operator.reconcile(NS, name, views))
    assert cluster.created() == ["urgent"]  # old and new waited for it, though they came first
    assert status(cluster, "old")["message"] == (
        "waiting for a free slot: 0 of max 1 EvalJobs running, 1 ahead in the queue"
    )
    assert "2 ahead in the queue" in status(cluster, "new")["message"]
    run(operator.reconcile(NS, "old", views))
    assert status(cluster, "old")["message"] == (
        "waiting for a free slot: 1 of max 1 EvalJobs running, 0 ahead in the queue"
    )


def test_without_a_limit_admissions_do_not_wait_for_each_other(cluster: RecordingCluster) -> None:
    names = [f"ej-{index}" for index in range(5)]
    add(cluster, *(evaljob(name) for name in names))
    cluster.patch_seconds = 0.02
    operator, views = reconciler(cluster), FakeViews(cluster)

    async def together() -> None:
        await asyncio.gather(*(operator.reconcile(NS, name, views) for name in names))

    run(together())
    assert sorted(cluster.created()) == names
    assert cluster.most_patches_in_flight == 5


def test_admissions_side_by_side_take_no_more_slots_than_max_running(cluster: RecordingCluster) -> None:
    """An admitted EvalJob's status write may land after the next admission counts the slots (the
    namespace lock is not held for it): the count knows its slot is taken all the same."""
    add(cluster, evaljob("first", submitted="2026-01-01T00:00:01.000000Z"))
    cluster.patch_seconds = 0.02
    operator, views = reconciler(cluster, max_running=1), FakeViews(cluster)

    async def scenario() -> None:
        first = asyncio.create_task(operator.reconcile(NS, "first", views))
        await asyncio.sleep(0)  # its Job is created, its status write under way
        # Comes now and goes first: nobody waits ahead of it, so only the slot taken can stop it.
        add(cluster, evaljob("urgent", priority=5, submitted="2026-01-01T00:00:02.000000Z"))
        await operator.reconcile(NS, "urgent", views)
        await first

    run(scenario())
    assert cluster.created() == ["first"]
    assert status(cluster, "urgent")["message"] == (
        "waiting for a free slot: 1 of max 1 EvalJobs running, 0 ahead in the queue"
    )


def test_a_finished_job_frees_its_slot_for_the_next_in_order(cluster: RecordingCluster) -> None:
    add(cluster, evaljob("first", submitted="2026-01-01T00:00:01.000000Z"))
    add(cluster, evaljob("second", submitted="2026-01-01T00:00:02.000000Z"))
    operator = reconciler(cluster, max_running=1)
    views = FakeViews(cluster)
    run(operator.reconcile(NS, "first", views))
    run(operator.reconcile(NS, "second", views))
    assert cluster.created() == ["first"]

    cluster.evaljobs["first"]["spec"]["cancelRequested"] = True
    run(operator.reconcile(NS, "first", views))

    assert status(cluster, "first")["phase"] == Phase.CANCELLED
    assert cluster.created() == ["first", "second"]


def test_retention_deletes_the_oldest_finished(cluster: RecordingCluster) -> None:
    for index in range(3):
        job = evaljob(f"done-{index}")
        job["status"] = {"phase": Phase.COMPLETED, "completedAt": f"2026-01-01T00:00:0{index}Z", "jobName": "x"}
        add(cluster, job)
    add(cluster, evaljob("last", cancelRequested=True))
    run(reconciler(cluster, max_completed_jobs=2).reconcile(NS, "last", FakeViews(cluster)))
    assert [name for call, name in cluster.calls if call == "delete_evaljob"] == ["done-0", "done-1"]


def test_a_failed_reconcile_is_retried_by_the_resync_and_creates_one_job(cluster: RecordingCluster) -> None:
    add(cluster, evaljob("a"))
    cluster.fail_once["create_job"] = ApiException(status=500, reason="Internal Server Error")
    operator = reconciler(cluster)
    views = FakeViews(cluster)

    assert run(operator.reconcile(NS, "a", views)) is False
    assert "jobName" not in status(cluster, "a")

    assert run(operator.resync(views)) == 0  # retried; nothing still failing
    assert list(cluster.jobs) == ["a"] and status(cluster, "a")["jobName"] == "a"
    assert run(operator.resync(views)) == 0
    assert cluster.created() == ["a", "a"]  # one failed attempt, one success: exactly one Job


def test_a_rejected_job_fails_the_evaljob_with_the_apiservers_message(cluster: RecordingCluster) -> None:
    add(cluster, evaljob("a"))
    cluster.fail_once["create_job"] = ApiException(status=403, reason="Forbidden")
    run(reconciler(cluster).reconcile(NS, "a", FakeViews(cluster)))
    assert status(cluster, "a")["phase"] == Phase.FAILED
    assert status(cluster, "a")["error"] == "the Job could not be created: 403 Forbidden"


def test_after_a_restart_a_job_missing_from_the_watch_fails_the_evaljob(cluster: RecordingCluster) -> None:
    job = evaljob("a")
    job["status"] = {"phase": Phase.RUNNING, "jobName": "a"}
    add(cluster, job)
    run(reconciler(cluster).reconcile(NS, "a", FakeViews(cluster)))  # a new process: it created nothing
    assert status(cluster, "a")["phase"] == Phase.FAILED
    assert "was deleted before the evaluation finished" in status(cluster, "a")["error"]


def test_a_job_this_process_just_created_is_not_mistaken_for_a_deleted_one(cluster: RecordingCluster) -> None:
    add(cluster, evaljob("a"))
    operator = reconciler(cluster)
    run(operator.reconcile(NS, "a", FakeViews(cluster)))

    class LaggingViews(FakeViews):
        def job(self, namespace: str, name: str) -> None:
            return None  # the Job's ADDED event is still on its way

    run(operator.reconcile(NS, "a", LaggingViews(cluster)))
    assert status(cluster, "a")["phase"] == Phase.QUEUED


def test_the_watch_copy_is_used_while_it_shows_the_latest_write_and_a_stale_one_never_acted_on(
    cluster: RecordingCluster,
) -> None:
    add(cluster, evaljob("a"))
    operator = reconciler(cluster)
    run(operator.reconcile(NS, "a", FakeViews(cluster)))  # admitted from the watch's copy: no GET
    assert [call for call, _ in cluster.calls] == ["create_job", "patch_status"]
    before_write = copy.deepcopy(cluster.evaljobs["a"])
    before_write["status"] = {}
    before_write["metadata"]["resourceVersion"] = "1"

    class LaggingViews(FakeViews):
        def evaljob(self, namespace: str, name: str) -> dict[str, Any]:
            return copy.deepcopy(before_write)  # the watch has not delivered the status write yet

    cluster.calls.clear()
    run(operator.reconcile(NS, "a", LaggingViews(cluster)))
    assert ("create_job", "a") not in cluster.calls  # its own newer copy: nothing created twice,
    assert ("get_evaljob", "a") not in cluster.calls  # and no read needed
    cluster.calls.clear()
    run(operator.reconcile(NS, "a", FakeViews(cluster)))  # the watch caught up
    assert ("get_evaljob", "a") not in cluster.calls


def test_a_version_never_seen_here_is_read_fresh(cluster: RecordingCluster) -> None:
    add(cluster, evaljob("a"))
    operator = reconciler(cluster)
    run(operator.reconcile(NS, "a", FakeViews(cluster)))
    unknown = copy.deepcopy(cluster.evaljobs["a"])
    unknown["metadata"]["resourceVersion"] = "elsewhere"

    class OtherViews(FakeViews):
        def evaljob(self, namespace: str, name: str) -> dict[str, Any]:
            return copy.deepcopy(unknown)

    cluster.calls.clear()
    run(operator.reconcile(NS, "a", OtherViews(cluster)))
    assert cluster.calls[0] == ("get_evaljob", "a")


def test_a_write_by_someone_else_is_read_once_then_trusted(cluster: RecordingCluster) -> None:
    add(cluster, evaljob("a"))
    operator = reconciler(cluster)
    run(operator.reconcile(NS, "a", FakeViews(cluster)))
    cluster.evaljobs["a"]["spec"]["cancelRequested"] = True  # the API's cancel
    cluster.bump("a")
    cluster.calls.clear()
    run(operator.reconcile(NS, "a", FakeViews(cluster)))
    assert [call for call, _ in cluster.calls] == ["get_evaljob", "delete_job", "patch_status"]
    assert status(cluster, "a")["phase"] == Phase.CANCELLED


def test_a_finished_evaljob_is_never_touched_again(cluster: RecordingCluster) -> None:
    job = evaljob("a")
    job["status"] = {"phase": Phase.COMPLETED, "jobName": "a"}
    add(cluster, job)
    run(reconciler(cluster).reconcile(NS, "a", FakeViews(cluster)))
    assert cluster.calls == []


def test_observed_generation_follows_the_spec(cluster: RecordingCluster) -> None:
    add(cluster, evaljob("a"))
    operator = reconciler(cluster)
    run(operator.reconcile(NS, "a", FakeViews(cluster)))
    cluster.evaljobs["a"]["metadata"]["generation"] = 2
    cluster.evaljobs["a"]["spec"]["cancelRequested"] = True
    run(operator.reconcile(NS, "a", FakeViews(cluster)))
    assert status(cluster, "a")["observedGeneration"] == 2
