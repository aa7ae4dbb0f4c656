"""CheckpointMerges: each runs `evalkube-runner merge` as a CPU-only Job; its outcome goes to status.

The same level-triggered shape as the EvalJob reconciler, smaller: read the merge afresh, refuse a
spec no pod could act on (before any Job), create the Job once (same name, owned by the merge),
mirror the Job and its pod into status. The runner's exit code carries the class of error that
lmms-eval answers with (3: a missing checkpoint or rank file, 404; 4: a wrong layout or type, 400),
and its termination message the JSON summary of a success, so no log is parsed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from evalkube import resource
from evalkube.kube import api_message
from evalkube.mapping import describe_errors, field_path, from_spec, now_rfc3339
from evalkube.operator import events
from evalkube.operator.cluster import Cluster
from evalkube.operator.jobspec import build_merge_job
from evalkube.operator.observe import observe
from evalkube.operator.settings import OperatorSettings
from evalkube.protocol import MergeRequest
from evalkube.resource import Phase
from evalkube.runner.merge import EXIT_INVALID, EXIT_NOT_FOUND
from evalkube.volumes import path_problems

log = logging.getLogger("evalkube.operator.merges")

#: The runner's exit code -> the HTTP class of the failure, as lmms-eval's /merge answers.
ERROR_CODES = {EXIT_NOT_FOUND: 404, EXIT_INVALID: 400}


class MergeViews(Protocol):
    """What the watches last saw of a merge's children."""

    def merge_job(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def merge_pods(self, namespace: str, name: str) -> list[dict[str, Any]]: ...


@dataclass
class MergeReconciler:
    """Reconciles CheckpointMerges; one per operator process."""

    cluster: Cluster
    settings: OperatorSettings
    _locks: defaultdict[tuple[str, str], asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    async def reconcile(self, namespace: str, name: str, views: MergeViews) -> None:
        async with self._locks[(namespace, name)]:
            merge = await self.cluster.get_evaljob(namespace, name, plural=resource.MERGE_PLURAL)
            if merge is None:
                self._locks.pop((namespace, name), None)
                return
            status = merge.get("status") or {}
            if status.get("phase") in Phase.FINISHED:
                return
            job = views.merge_job(namespace, name)
            if job is None:
                if not status.get("jobName"):
                    await self._admit(merge)
                return
            await self._mirror(merge, job, views.merge_pods(namespace, name))

    async def _admit(self, merge: dict[str, Any]) -> None:
        created = merge["metadata"].get("creationTimestamp")
        try:
            request = MergeRequest.model_validate(from_spec(MergeRequest, merge.get("spec") or {}))
        except ValidationError as error:
            await self._fail(merge, f"invalid spec: {describe_errors(error, MergeRequest)}", 400, createdAt=created)
            return
        unreachable = path_problems(request.model_dump(), self.settings.mount_paths())
        if unreachable:
            reasons = "; ".join(f"spec.{field_path(loc, MergeRequest)}: {why}" for loc, why in unreachable)
            await self._fail(merge, reasons, 400, createdAt=created)
            return
        meta = merge["metadata"]
        try:
            await self.cluster.create_job(build_merge_job(merge, self.settings))
        except ApiException as error:
            if error.status not in (400, 403, 422):
                raise
            await self._fail(merge, f"the Job could not be created: {api_message(error)}", 500, createdAt=created)
            return
        log.info("created merge Job %s/%s", meta["namespace"], meta["name"])
        await self._write(
            merge,
            {
                "phase": Phase.QUEUED,
                "jobName": meta["name"],
                "createdAt": created,
                "message": "Job created; waiting for the merge pod",
            },
        )

    async def _mirror(self, merge: dict[str, Any], job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        seen = observe(job, pods)
        terminated = _terminated(pods)
        if seen.phase == Phase.FAILED or (terminated and terminated.get("exitCode")):
            if terminated is None:  # the Job failed before the pod's exit is in view: read it now
                pods = await self.cluster.pods_labelled(merge["metadata"]["namespace"], _selector(merge))
                terminated = _terminated(pods)
            code = (terminated or {}).get("exitCode")
            message = ((terminated or {}).get("message") or "").strip() or seen.error or "the merge failed"
            await self._fail(merge, message, ERROR_CODES.get(code, 500), startedAt=seen.started_at)
            return
        if seen.succeeded:
            if terminated is None:  # the Job completed before its pod's exit is in view: read it now
                terminated = _terminated(
                    await self.cluster.pods_labelled(merge["metadata"]["namespace"], _selector(merge))
                )
            if terminated is None:
                return  # the pod's own update is on its way and reconciles again
            try:
                summary = json.loads(((terminated or {}).get("message") or "").strip().splitlines()[-1])
            except (ValueError, IndexError):
                await self._fail(merge, "the merge finished without reporting where it wrote the model", 500)
                return
            await self._write(
                merge,
                {
                    "phase": Phase.COMPLETED,
                    "message": "checkpoint merged",
                    "mergedPath": summary.get("merged_path"),
                    "format": summary.get("format"),
                    "worldSize": summary.get("world_size"),
                    "startedAt": seen.started_at,
                    "completedAt": seen.finished_at or now_rfc3339(),
                },
            )
            return
        await self._write(
            merge,
            {"phase": seen.phase, "message": seen.message.replace("evaluat", "merg"), "startedAt": seen.started_at},
        )

    async def _fail(self, merge: dict[str, Any], error: str, code: int, **extra: Any) -> None:
        await self._write(
            merge,
            {
                "phase": Phase.FAILED,
                "message": "merge failed",
                "error": error,
                "errorCode": code,
                "completedAt": now_rfc3339(),
                **extra,
            },
        )

    async def _write(self, merge: dict[str, Any], update: dict[str, Any]) -> None:
        current = merge.get("status") or {}
        update = {**update, "observedGeneration": merge["metadata"].get("generation")}
        changes = {key: value for key, value in update.items() if value is not None and current.get(key) != value}
        if not changes:
            return
        if changes.get("phase") in Phase.FINISHED:
            changes["conditions"] = [
                {
                    "type": changes["phase"],
                    "status": "True",
                    "reason": changes["phase"],
                    "message": (changes.get("error") or changes.get("message") or "")[:1024],
                    "lastTransitionTime": now_rfc3339(),
                }
            ]
        meta = merge["metadata"]
        before = dict(merge)  # the Event compares the phase with the status before the patch
        patched = await self.cluster.patch_evaljob_status(
            meta["namespace"], meta["name"], changes, plural=resource.MERGE_PLURAL
        )
        if patched is not None:
            await events.phase_changed(self.cluster, before, changes)  # `kubectl describe ckm` tells the story
            merge["status"] = patched.get("status") or {}
            log.info(
                "CheckpointMerge %s/%s: %s %s",
                meta["namespace"],
                meta["name"],
                changes.get("phase", "-"),
                changes.get("error") or changes.get("message", ""),
            )


def _selector(merge: dict[str, Any]) -> str:
    return f"{resource.LABEL_MERGE}={merge['metadata']['name']}"


def _terminated(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated")
            if terminated:
                return terminated
    return None
