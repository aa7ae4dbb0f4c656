"""Mirroring the runner's progress into EvalJob status, and failing EvalJobs that stopped making any.

The runner publishes lmms-eval's newest progress bar into the `<evaljob>-progress` ConfigMap
(`evalkube.progress`); the operator, the only writer of status, copies it into `status.progress`
within its reconcile of a running EvalJob. A running EvalJob's pod and Job do not change while it
runs, so nothing would trigger that reconcile: `poll_running` reconciles the running EvalJobs this
process has handled events for, every `progress_poll_seconds`, with one GET of the EvalJob and one
of its progress ConfigMap each (never a LIST). Only EvalJobs seen through this process's own event
handlers are polled: under kopf peering a standby replica handles no events, so it polls nothing.

Hung detection (`hung_after_seconds`) rides on the same reconcile: no progress for that long,
counted from the last update (or from the start, before the first), fails the EvalJob and deletes
its Job, which frees the GPU a stuck lmms-eval would hold until its timeout.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from evalkube import progress as shared
from evalkube.operator.cluster import Cluster, owned_by
from evalkube.resource import Phase

log = logging.getLogger("evalkube.operator")


async def watch_progress(
    cluster: Cluster, evaljob: dict[str, Any], hung_after: int | None, now: datetime | None = None
) -> tuple[dict[str, Any], str | None]:
    """({"progress": ...} when the ConfigMap holds some, else {}), and why it hangs (None: it does not).

    A ConfigMap not owned by this EvalJob's uid is ignored, as for results: only its own pod writes
    one so owned.
    """
    meta, status = evaljob["metadata"], evaljob.get("status") or {}
    name = shared.progress_configmap_name(meta["name"])
    found = await cluster.config_map(meta["namespace"], name)
    progress = None
    if found is not None and owned_by(found, meta["uid"]):
        progress = shared.from_configmap(found.get("data"))
    update = {"progress": progress} if progress else {}
    if not hung_after:
        return update, None
    latest = progress or status.get("progress")
    seconds = shared.hung_for(status, latest, now or datetime.now(UTC))
    if seconds is None or seconds < hung_after:
        return update, None
    return update, shared.hung_message(seconds, hung_after, latest)


class RunningEvalJobs:
    """The EvalJobs this process last saw Running through its event handlers."""

    def __init__(self) -> None:
        self._keys: set[tuple[str, str]] = set()

    def note(self, namespace: str, name: str, body: kopf.Body | dict[str, Any] | None) -> None:
        phase = ((body or {}).get("status") or {}).get("phase")
        if phase == Phase.RUNNING:
            self._keys.add((namespace, name))
        else:
            self._keys.discard((namespace, name))

    def forget(self, namespace: str, name: str) -> None:
        self._keys.discard((namespace, name))

    def __iter__(self) -> Any:
        return iter(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)


async def poll_running(memo: kopf.Memo) -> None:
    """Reconcile every running EvalJob once per `progress_poll_seconds`, until cancelled."""
    while True:
        reconciler = memo.get("reconciler")  # set by the configure startup handler
        await asyncio.sleep(reconciler.settings.progress_poll_seconds if reconciler else 1.0)
        shared = memo.get("shared")  # handlers.Shared, set by the start_resync startup handler
        if reconciler is None or shared is None or shared.views is None:
            continue
        views = shared.views
        for namespace, name in list(shared.running):
            await reconciler.reconcile(namespace, name, views)
