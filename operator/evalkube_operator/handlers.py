"""kopf registrations: three watches feed one reconcile, plus the indexes it reads.

Handlers are thin on purpose: each maps an event to "reconcile that EvalJob", and all decisions
live in `reconcile.py`. Only watch events are used (no kopf on.create/on.update state machine),
so kopf keeps no per-object progress annotations and a restart simply reconciles everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from typing import Any

import kopf

from evalkube import resource
from evalkube.operator import metrics
from evalkube.operator.progress import RunningEvalJobs, poll_running
from evalkube.operator.reconcile import Reconciler
from evalkube.operator.settings import OperatorSettings

CHILD_SELECTOR = {resource.LABEL_MANAGED_BY: resource.MANAGED_BY}


#: Strings this long or shorter are kept once for every entry (names, phases, reasons, timestamps).
_SHARED_STRING_CHARS = 64


def _shared(value: Any) -> Any:
    """`value` rebuilt with one copy of each key and short string held by every entry: parsed JSON
    gives each object its own "metadata", "status", "Queued", ..., most of a small entry's size."""
    if isinstance(value, dict):
        return {sys.intern(key): _shared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shared(item) for item in value]
    if isinstance(value, str) and len(value) <= _SHARED_STRING_CHARS:
        return sys.intern(value)
    return value


def _evaljob_entry(body: kopf.Body) -> dict[str, Any]:
    """The EvalJob as the reconciler and the queue read it; managedFields, the largest part of most
    objects, is never read, so never kept."""
    metadata = {key: value for key, value in body.get("metadata", {}).items() if key != "managedFields"}
    kept = {key: body.get(key) for key in ("apiVersion", "kind", "spec", "status")}
    return _shared({**kept, "metadata": metadata})


def _job_entry(body: kopf.Body) -> dict[str, Any]:
    """What `observe` reads of a Job (not its pod template, the largest part of it)."""
    metadata, spec = body.get("metadata") or {}, body.get("spec") or {}
    return _shared(
        {
            "metadata": {"name": metadata.get("name"), "creationTimestamp": metadata.get("creationTimestamp")},
            "spec": {key: spec[key] for key in ("suspend", "activeDeadlineSeconds") if key in spec},
            "status": body.get("status") or {},
        }
    )


def _pod_entry(body: kopf.Body) -> dict[str, Any]:
    """What `observe` reads of a pod: which one is newest, its node, image, conditions, container."""
    metadata, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    return _shared(
        {
            "metadata": {
                key: metadata[key] for key in ("name", "creationTimestamp", "deletionTimestamp") if key in metadata
            },
            "spec": {
                "nodeName": spec.get("nodeName"),
                "containers": [{"name": c.get("name"), "image": c.get("image")} for c in spec.get("containers") or []],
            },
            "status": {key: status[key] for key in ("phase", "conditions", "containerStatuses") if key in status},
        }
    )


# Each index keeps what is read and no more: at 10,000 EvalJobs with their Jobs and pods, whole
# objects (a Job's pod template, a pod's spec and status) were most of the operator's memory, and
# each index costs kopf's own bookkeeping per object too, so the EvalJobs have one (a namespace's
# are found by scanning it). The indexers are coroutines only so that kopf calls them on its loop:
# a plain function it runs in a worker thread, a hand-off each way for every event.


@kopf.index(resource.GROUP, resource.VERSION, resource.PLURAL)
async def evaljob_by_name(
    namespace: str, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    return {(namespace, name): _evaljob_entry(body)}


@kopf.index("batch", "v1", "jobs", labels=CHILD_SELECTOR)
async def jobs_by_evaljob(
    namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]] | None:
    owner = labels.get(resource.LABEL_EVALJOB)
    return {(namespace, owner): _job_entry(body)} if owner else None


@kopf.index("", "v1", "pods", labels=CHILD_SELECTOR)
async def pods_by_evaljob(
    namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]] | None:
    owner = labels.get(resource.LABEL_EVALJOB)
    return {(namespace, owner): _pod_entry(body)} if owner else None


class IndexViews:
    """The kopf indexes, shaped as reconcile.Views."""

    def __init__(self, evaljob: kopf.Index, jobs: kopf.Index, pods: kopf.Index) -> None:
        self._evaljob, self._jobs, self._pods = evaljob, jobs, pods

    def evaljob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next(iter(self._evaljob.get((namespace, name), [])), None)

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next(iter(self._jobs.get((namespace, name), [])), None)

    def pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return list(self._pods.get((namespace, name), []))

    def evaljobs(self, namespace: str) -> list[dict[str, Any]]:
        return [entry for (ns, _), store in self._evaljob.items() if ns == namespace for entry in store]


@dataclass
class Shared:
    """What the event handlers share with the background tasks. kopf gives each object's handlers a
    shallow copy of the operator's memo, so an attribute they set there never reaches the tasks;
    the contents of one object held by every copy do."""

    views: IndexViews | None = None
    running: RunningEvalJobs = field(default_factory=RunningEvalJobs)


@kopf.on.startup()
async def start_resync(memo: kopf.Memo, **_: Any) -> None:
    """The one resync task, held in the memo (so it is never garbage-collected) until cleanup."""
    memo.shared = Shared()

    async def loop() -> None:
        while True:
            reconciler: Reconciler | None = memo.get("reconciler")  # set by the configure startup handler
            await asyncio.sleep(reconciler.settings.resync_seconds if reconciler else 1.0)
            if reconciler is not None and memo.shared.views is not None:
                await reconciler.resync(memo.shared.views)

    memo.resync_task = asyncio.create_task(loop(), name="evalkube-resync")


@kopf.on.startup()
def serve_metrics(logger: kopf.Logger, **_: Any) -> None:
    """The operator's own /metrics (EVALKUBE_METRICS_PORT). A port already taken (a second replica
    on one host) costs the metrics, never the operator."""
    port = OperatorSettings().metrics_port
    try:
        metrics.serve(port)
    except OSError as error:
        logger.warning("not serving /metrics on port %d: %s", port, error)


@kopf.on.startup()
async def start_progress_poll(memo: kopf.Memo, **_: Any) -> None:
    """The one task that mirrors running EvalJobs' progress (and finds hung ones), see progress.py."""
    memo.progress_task = asyncio.create_task(poll_running(memo), name="evalkube-progress")


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    for key in ("resync_task", "progress_task"):
        task = memo.get(key)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _views(memo: kopf.Memo, kwargs: dict[str, Any]) -> IndexViews:
    views = IndexViews(kwargs["evaljob_by_name"], kwargs["jobs_by_evaljob"], kwargs["pods_by_evaljob"])
    memo.shared.views = views  # the indexes are live mappings: the background tasks read them later
    return views


@kopf.on.event(resource.GROUP, resource.VERSION, resource.PLURAL)
async def evaljob_changed(type: str | None, namespace: str, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    reconciler: Reconciler = memo.reconciler
    if type == "DELETED":
        reconciler.forget(namespace, name)
        memo.shared.running.forget(namespace, name)
        return
    memo.shared.running.note(namespace, name, kwargs.get("body"))
    await reconciler.reconcile(namespace, name, _views(memo, kwargs))


@kopf.on.event("batch", "v1", "jobs", labels=CHILD_SELECTOR)
async def job_changed(type: str | None, namespace: str, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
    if owner := labels.get(resource.LABEL_EVALJOB):
        await memo.reconciler.reconcile(namespace, owner, _views(memo, kwargs), job_deleted=type == "DELETED")


@kopf.on.event("", "v1", "pods", labels=CHILD_SELECTOR)
async def pod_changed(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
    if owner := labels.get(resource.LABEL_EVALJOB):
        await memo.reconciler.reconcile(namespace, owner, _views(memo, kwargs))
