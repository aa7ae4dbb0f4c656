"""kopf registrations for CheckpointMerges: their watch, their Job's and pod's, and the indexes read.

Kept apart from the EvalJob handlers: a merge's children carry `evalkube.dev/checkpointmerge`
instead of `evalkube.dev/evaljob`, so neither set of handlers ever sees the other's objects.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from evalkube import resource
from evalkube.operator.merges import MergeReconciler

log = logging.getLogger("evalkube.operator.merges")
MERGE_CHILDREN = {resource.LABEL_MANAGED_BY: resource.MANAGED_BY, resource.LABEL_MERGE: kopf.PRESENT}


def _plain(body: kopf.Body) -> dict[str, Any]:
    return {key: body.get(key) for key in ("apiVersion", "kind", "metadata", "spec", "status")}


@kopf.index("batch", "v1", "jobs", labels=MERGE_CHILDREN)
async def jobs_by_merge(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Any]:
    return {(namespace, labels[resource.LABEL_MERGE]): _plain(body)}


@kopf.index("", "v1", "pods", labels=MERGE_CHILDREN)
async def pods_by_merge(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Any]:
    return {(namespace, labels[resource.LABEL_MERGE]): _plain(body)}


class MergeIndexViews:
    """The kopf indexes, shaped as merges.MergeViews."""

    def __init__(self, jobs: kopf.Index, pods: kopf.Index) -> None:
        self._jobs, self._pods = jobs, pods

    def merge_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next(iter(self._jobs.get((namespace, name), [])), None)

    def merge_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return list(self._pods.get((namespace, name), []))


async def _reconcile(memo: kopf.Memo, namespace: str, name: str, kwargs: dict[str, Any]) -> None:
    reconciler: MergeReconciler = memo.merge_reconciler
    try:
        await reconciler.reconcile(namespace, name, MergeIndexViews(kwargs["jobs_by_merge"], kwargs["pods_by_merge"]))
    except Exception:
        log.exception("reconciling CheckpointMerge %s/%s failed", namespace, name)


@kopf.on.event(resource.GROUP, resource.VERSION, resource.MERGE_PLURAL)
async def merge_changed(type: str | None, namespace: str, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    if type != "DELETED":
        await _reconcile(memo, namespace, name, kwargs)


@kopf.on.event("batch", "v1", "jobs", labels=MERGE_CHILDREN)
async def merge_job_changed(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
    await _reconcile(memo, namespace, labels[resource.LABEL_MERGE], kwargs)


@kopf.on.event("", "v1", "pods", labels=MERGE_CHILDREN)
async def merge_pod_changed(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
    await _reconcile(memo, namespace, labels[resource.LABEL_MERGE], kwargs)
