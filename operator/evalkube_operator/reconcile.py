"""Level-triggered reconciliation: make an EvalJob's Job and status agree with what it asks for.

Every event (the EvalJob changed, its Job changed, its pod changed) runs the same `reconcile`
for that EvalJob. It reads the current state, decides, and writes only what differs, so a
restarted operator, a duplicated event or a missed one all converge on the same result. The
operator is the only writer of EvalJob status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from evalkube import resource
from evalkube.kube import api_message
from evalkube.mapping import describe_errors, field_path, now_rfc3339, parse_spec
from evalkube.operator import events, metrics
from evalkube.operator.cluster import Cluster, owned_by
from evalkube.operator.jobspec import build_job
from evalkube.operator.locks import KeyedLocks
from evalkube.operator.observe import Observation, lacks_exit_details, observe
from evalkube.operator.progress import watch_progress
from evalkube.operator.settings import OperatorSettings
from evalkube.ordering import Queue, stored_state
from evalkube.policy import violations
from evalkube.protocol import EvalJobSpec
from evalkube.resource import Phase
from evalkube.results import ResultsTooLarge, fit
from evalkube.volumes import path_problems

log = logging.getLogger("evalkube.operator")

#: status.result stays below this many bytes of JSON: the EvalJob must stay a small object for
#: etcd and for every watch cache (the full document is still in the results ConfigMap).
STATUS_RESULT_BUDGET = 256 * 1024


def failure(error: str) -> dict[str, Any]:
    """The status fields every failure writes."""
    return {"phase": Phase.FAILED, "message": "evaluation failed", "error": error}


class Views(Protocol):
    """What the operator's watches last saw (kopf indexes); may lag the operator's own writes."""

    def evaljob(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def job(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def pods(self, namespace: str, name: str) -> list[dict[str, Any]]: ...

    def evaljobs(self, namespace: str) -> list[dict[str, Any]]: ...


@dataclass(slots=True)
class _Memory:
    """What this process keeps of one EvalJob: its own last write, which the watches may not show
    yet, and the newest version of it this process has acted on, read or written, until the watch
    shows that version too. Kept for every EvalJob, so kept small."""

    written: tuple[str | None, bool] | None = None
    #: The newest resourceVersion known here, and the object at it (None once the watch shows it).
    version: str | None = None
    latest: dict[str, Any] | None = None
    #: Versions known to be older than `version`: the ones this process saw before it (None: none).
    older: set[str] | None = None

    def knows(self, evaljob: dict[str, Any]) -> None:
        """`evaljob` (a write's answer or a fresh read) is the newest version known."""
        version = evaljob["metadata"].get("resourceVersion")
        if self.version is not None and self.version != version:
            self.older = (self.older or set()) | {self.version}
        self.version, self.latest = version, evaljob

    def caught_up(self, version: str | None) -> None:
        """The watch shows `version`, the newest known: nothing needs keeping."""
        self.version, self.latest, self.older = version, None, None

    def is_older(self, version: str | None) -> bool:
        return self.older is not None and version in self.older


@dataclass
class Reconciler:
    """Reconciles EvalJobs; one per operator process.

    Failures are not retried by a timer per EvalJob: a failed reconcile marks its EvalJob, and
    `resync` (run every `settings.resync_seconds` by the operator's one resync task) reconciles the
    marked ones again. Only failures are resynced, not every EvalJob: a replica standing by under
    kopf peering handles no events, so it has none, and never acts on its paused, stale watches.
    """

    cluster: Cluster
    settings: OperatorSettings
    _memory: dict[tuple[str, str], _Memory] = field(default_factory=dict)
    #: One reconcile at a time per EvalJob.
    _locks: KeyedLocks = field(default_factory=KeyedLocks)
    _namespace_locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    #: EvalJobs whose last reconcile failed, with the job_deleted flag of that attempt.
    _failed: dict[tuple[str, str], bool] = field(default_factory=dict)

    async def reconcile(self, namespace: str, name: str, views: Views, job_deleted: bool = False) -> bool:
        """Bring one EvalJob up to date; False if it failed (logged; the next resync retries it)."""
        started = time.perf_counter()
        try:
            await self._reconcile_locked(namespace, name, views, job_deleted)
        except Exception:
            metrics.reconciled(started, ok=False)
            log.exception(
                "reconciling EvalJob %s/%s failed; retrying within %ss", namespace, name, self.settings.resync_seconds
            )
            self._failed[(namespace, name)] = self._failed.get((namespace, name), False) or job_deleted
            return False
        self._failed.pop((namespace, name), None)
        metrics.reconciled(started, ok=True)
        return True

    async def resync(self, views: Views) -> int:
        """Reconcile again every EvalJob whose last reconcile failed; returns how many still fail."""
        for (namespace, name), job_deleted in list(self._failed.items()):
            await self.reconcile(namespace, name, views, job_deleted)
        return len(self._failed)

    async def _reconcile_locked(self, namespace: str, name: str, views: Views, job_deleted: bool) -> None:
        async with self._locks.hold((namespace, name)):
            memory = self._memory.setdefault((namespace, name), _Memory())
            evaljob = await self._current(namespace, name, views, memory)
            if evaljob is None:
                self.forget(namespace, name)
                return
            finished = await self._reconcile(evaljob, views, job_deleted)
        if finished:
            await self._after_finish(namespace, views)

    async def _current(self, namespace: str, name: str, views: Views, memory: _Memory) -> dict[str, Any] | None:
        """The EvalJob to act on, with no apiserver call when this process knows it is current.

        The watch lags this process's own writes, and acting on a stale status would create or
        fail things twice; but a GET per event made the apiserver's load per EvalJob several times
        what it must be. resourceVersions are compared for equality only (their order is opaque):
        the watch's copy is used when it shows the newest version known here (or none is known
        yet); this process's own newest copy when the watch shows a version known to be older;
        a fresh GET only for a version never seen here (someone else's write, or after a restart).
        """
        cached = views.evaljob(namespace, name)
        if cached is not None:
            version = cached["metadata"].get("resourceVersion")
            if memory.version is None or version == memory.version:
                memory.caught_up(version)
                return dict(cached)  # shallow copies: `_write` replaces their status, never the original's
            if memory.is_older(version) and memory.latest is not None:
                return dict(memory.latest)
        evaljob = await self.cluster.get_evaljob(namespace, name)
        if evaljob is not None:
            memory.knows(evaljob)
        return evaljob

    def forget(self, namespace: str, name: str) -> None:
        """The EvalJob is gone: drop what this process remembered of it."""
        self._memory.pop((namespace, name), None)
        self._failed.pop((namespace, name), None)

    async def _reconcile(self, evaljob: dict[str, Any], views: Views, job_deleted: bool) -> bool:
        """Returns True when this call moved the EvalJob into a finished phase."""
        meta, spec = evaljob["metadata"], evaljob.get("spec") or {}
        status = evaljob.get("status") or {}
        namespace, name = meta["namespace"], meta["name"]
        if status.get("phase") in Phase.FINISHED:
            return False  # a finished EvalJob never runs again

        if spec.get("cancelRequested"):
            await self.cluster.delete_job(namespace, name)
            return await self._write(
                evaljob,
                {
                    "phase": Phase.CANCELLED,
                    "message": "cancelled on request",
                    "completedAt": now_rfc3339(),
                },
            )

        job = views.job(namespace, name)
        if job is None:
            # The Job is gone if its deletion was seen, or if this process did not create it: kopf
            # fills its indexes before handling, so after a restart a missing Job is really missing.
            written = self._memory.get((namespace, name), _Memory()).written
            seen_here = bool(written and written[1])
            if status.get("jobName") and (job_deleted or not seen_here):
                return await self._fail(evaljob, f"the Job {name} was deleted before the evaluation finished")
            if not status.get("jobName"):
                return await self._admit(evaljob, views)
            return False  # created; its first event is on the way

        pods = views.pods(namespace, name)
        if lacks_exit_details(job, pods):
            pods = await self.cluster.evaljob_pods(namespace, name)
        return await self._mirror(evaljob, observe(job, pods))

    async def _admit(self, evaljob: dict[str, Any], views: Views) -> bool:
        """Create the Job, unless the EvalJob can't run (bad reference) or must wait its turn."""
        meta, spec = evaljob["metadata"], evaljob.get("spec") or {}
        namespace, name = meta["namespace"], meta["name"]
        created = (evaljob.get("status") or {}).get("createdAt") or meta.get("creationTimestamp")

        tasks_config_map = (spec.get("customTasks") or {}).get("configMap")
        try:
            parsed = parse_spec(spec)
        except ValidationError as error:  # a spec kubectl let through that the runner would refuse
            return await self._fail(evaljob, f"invalid spec: {describe_errors(error)}", createdAt=created)
        unreachable = path_problems(parsed.model_dump(), self.settings.mount_paths())
        if unreachable:  # no pod could open it: say so now, not after scheduling a GPU pod
            reasons = "; ".join(f"spec.{field_path(loc, EvalJobSpec)}: {why}" for loc, why in unreachable)
            return await self._fail(evaljob, reasons, createdAt=created)
        task_files = await self.cluster.config_map_data(namespace, tasks_config_map) if tasks_config_map else None
        if tasks_config_map and task_files is None:
            return await self._fail(
                evaljob,
                f"spec.customTasks.configMap: ConfigMap {tasks_config_map!r} not found in namespace {namespace!r}",
                createdAt=created,
            )
        broken = violations(parsed, self.settings.policy, task_files=task_files)
        if broken:  # binds kubectl users too: the pod would run with the operator's rights
            reasons = "; ".join(
                f"policy rule {v.rule}: spec.{field_path(v.field, EvalJobSpec)}: {v.message}" for v in broken
            )
            return await self._fail(evaljob, reasons, createdAt=created)

        job = build_job(evaljob, self.settings)
        limit = self.settings.max_running
        if not limit:  # no queue to keep: admissions run side by side
            refused = await self._create_job(job)
        else:
            # The count of running EvalJobs and the Job that takes a slot are one step: the lock
            # covers the scan and the create only (the Job marks its slot taken before the lock
            # goes), never the status write, so admissions wait for each other as little as they can.
            async with self._namespace_locks[namespace]:
                queue = Queue.of(views.evaljobs(namespace), self._state)
                waiting_ahead, running = queue.waiting_ahead(evaljob), queue.holding_jobs()
                refused = None if running + waiting_ahead >= limit else await self._create_job(job)
            if running + waiting_ahead >= limit:
                return await self._write(
                    evaljob,
                    {
                        "phase": Phase.QUEUED,
                        "createdAt": created,
                        "message": f"waiting for a free slot: {running} of max {limit} EvalJobs running, {waiting_ahead} ahead in the queue",
                    },
                )
        if refused:
            return await self._fail(evaljob, f"the Job could not be created: {refused}", createdAt=created)
        return await self._write(
            evaljob,
            {
                "phase": Phase.QUEUED,
                "createdAt": created,
                "jobName": name,
                # What the Job's first event will say of it: that event then writes nothing.
                "message": observe(job, []).message,
            },
        )

    async def _create_job(self, job: dict[str, Any]) -> str | None:
        """Create an EvalJob's Job (or find it made already); the apiserver's reason if it refuses.

        From here on the EvalJob holds a slot in this process's count, whatever its status says yet.
        """
        meta = job["metadata"]  # the EvalJob's own name and namespace
        try:
            if await self.cluster.create_job(job):
                log.info("created Job %s/%s", meta["namespace"], meta["name"])
        except ApiException as error:
            if error.status not in (400, 403, 422):
                raise  # transient: retried
            return api_message(error)
        memory = self._memory.setdefault((meta["namespace"], meta["name"]), _Memory())
        memory.written = (Phase.QUEUED, True)
        return None

    def _state(self, evaljob: dict[str, Any]) -> tuple[str | None, bool]:
        """(phase, holds a Job): this process's own last write wins over a lagging watch."""
        memory = self._memory.get((evaljob["metadata"]["namespace"], evaljob["metadata"]["name"]))
        return memory.written if memory and memory.written else stored_state(evaljob)

    async def _mirror(self, evaljob: dict[str, Any], seen: Observation) -> bool:
        """Copy what the Job and pod show into status; collect results once the Job succeeded."""
        meta = evaljob["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        # jobName too: a crash between creating the Job and recording it leaves only the Job.
        update: dict[str, Any] = {"phase": seen.phase, "message": seen.message, "jobName": name}
        if not (evaljob.get("status") or {}).get("createdAt"):
            update["createdAt"] = meta.get("creationTimestamp")
        if seen.started_at and not (evaljob.get("status") or {}).get("startedAt"):
            update["startedAt"] = seen.started_at  # the first start: a restarted container keeps it
        if seen.error:
            update["error"] = seen.error
        if seen.phase == Phase.RUNNING:  # lmms-eval's progress; one that stopped making any fails
            limit = None if seen.succeeded else self.settings.hung_after_seconds
            tracked, hung = await watch_progress(self.cluster, evaljob, limit)
            update.update(tracked)
            if hung:
                update.update(failure(hung))
                await self.cluster.delete_job(namespace, name)
        if seen.succeeded:
            update.update(await self._collect_results(namespace, name, meta["uid"]))
        if update["phase"] in Phase.FINISHED:
            update["completedAt"] = seen.finished_at or now_rfc3339()
        if seen.stuck:  # a finished pod keeps its logs for `kubectl logs`; a stuck one only holds a node
            await self.cluster.delete_job(namespace, name)
        return await self._write(evaljob, update)

    async def _collect_results(self, namespace: str, name: str, uid: str) -> dict[str, Any]:
        config_map = resource.result_configmap_name(name)
        found = await self.cluster.config_map(namespace, config_map)
        data = None if found is None else dict(found.get("data") or {})
        if data is None or resource.RESULTS_KEY not in data:
            return failure(
                f"the evaluator finished but wrote no results (ConfigMap {config_map} with key {resource.RESULTS_KEY} is missing)"
            )
        # Only this EvalJob's pod writes a ConfigMap owned by this EvalJob's uid: one created by
        # anyone else first (a tenant forging `<name>-result`) is never taken for its results.
        if not owned_by(found, uid):
            return failure(
                f"ConfigMap {config_map} is not owned by this EvalJob (uid {uid}): it was not written by its "
                "evaluator pod, so its contents are ignored"
            )
        try:
            document = json.loads(data[resource.RESULTS_KEY])
            extra = json.loads(data.get(resource.RESULTS_META_KEY) or "{}")
            fitted, dropped = fit(document, STATUS_RESULT_BUDGET)
        except (ValueError, ResultsTooLarge) as error:
            return failure(f"the results in ConfigMap {config_map} are unusable: {error}")
        update: dict[str, Any] = {"phase": Phase.COMPLETED, "message": "evaluation completed", "metrics": fitted}
        all_dropped = [*extra.get("dropped", []), *dropped]
        if all_dropped:
            update["metricsDropped"] = all_dropped
        if extra.get("result"):
            update["result"] = extra["result"]
        return update

    async def _fail(self, evaljob: dict[str, Any], error: str, **extra: Any) -> bool:
        """The one way an EvalJob fails: phase Failed, the reason in `error`, the time it ended."""
        return await self._write(evaljob, {**failure(error), "completedAt": now_rfc3339(), **extra})

    async def _write(self, evaljob: dict[str, Any], update: dict[str, Any]) -> bool:
        """Merge-patch only what changed; True when this moved the EvalJob into a finished phase.

        observedGeneration rides along with any change: the status then says which spec it reflects.
        """
        current = evaljob.get("status") or {}
        update = {**update, "observedGeneration": evaljob["metadata"].get("generation")}
        changes = {key: value for key, value in update.items() if value is not None and current.get(key) != value}
        if not changes:
            return False
        if changes.get("phase") in Phase.FINISHED:
            # One condition named after the final phase: `kubectl wait --for=condition=Completed`.
            changes["conditions"] = [
                {
                    "type": changes["phase"],
                    "status": "True",
                    "reason": changes["phase"],
                    "message": (changes.get("error") or changes.get("message") or "")[:1024],
                    "lastTransitionTime": now_rfc3339(),
                }
            ]
        meta = evaljob["metadata"]
        patched = await self.cluster.patch_evaljob_status(meta["namespace"], meta["name"], changes)
        if patched is not None:
            await events.phase_changed(self.cluster, evaljob, changes)  # an Event if the phase changed
            evaljob["status"] = patched.get("status") or {}
            memory = self._memory.setdefault((meta["namespace"], meta["name"]), _Memory())
            memory.written = stored_state(evaljob)
            memory.knows(patched)
            error = (changes.get("error") or "").split("\n", 1)[0]
            log.info(
                "EvalJob %s/%s: %s %s%s",
                meta["namespace"],
                meta["name"],
                changes.get("phase", "-"),
                changes.get("message", ""),
                f" ({error})" if error else "",
            )
        return patched is not None and changes.get("phase") in Phase.FINISHED

    async def _after_finish(self, namespace: str, views: Views) -> None:
        """A slot came free and one more EvalJob is finished: admit the next, prune the oldest."""
        siblings = views.evaljobs(namespace)
        if self.settings.max_running:
            for evaljob in Queue.of(siblings, self._state).waiting()[: self.settings.max_running]:
                await self.reconcile(namespace, evaljob["metadata"]["name"], views)
        await self.enforce_retention(namespace, siblings)

    async def enforce_retention(self, namespace: str, siblings: Iterable[dict[str, Any]]) -> None:
        """Keep at most max_completed_jobs finished EvalJobs in the namespace, deleting the oldest."""
        finished = [ej for ej in siblings if self._state(ej)[0] in Phase.FINISHED]
        excess = len(finished) - self.settings.max_completed_jobs
        if excess <= 0:
            return
        finished.sort(
            key=lambda ej: (ej.get("status") or {}).get("completedAt") or ej["metadata"].get("creationTimestamp", "")
        )
        for evaljob in finished[:excess]:
            log.info("retention: deleting finished EvalJob %s/%s", namespace, evaljob["metadata"]["name"])
            await self.cluster.delete_evaljob(namespace, evaljob["metadata"]["name"])
