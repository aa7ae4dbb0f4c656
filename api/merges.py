"""The API's CheckpointMerges: created on POST /merge, read from their own watch cache.

A merge holds a whole model in memory, so it never runs in the API's pod: the operator runs each
CheckpointMerge as a CPU-only Job. lmms-eval's POST /merge is synchronous, so the route waits on
the cache (no polling of the apiserver) until the operator records the outcome, within a bound.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubernetes.client import CustomObjectsApi

from evalkube import mapping, resource
from evalkube.api.cache import WatchCache
from evalkube.kube import or_none
from evalkube.protocol import MergeRequest, MergeResponse

#: How often a waiting POST /merge looks at the cache: a merge takes seconds at the least.
POLL_SECONDS = 0.2
FINISHED = frozenset({resource.Phase.COMPLETED, resource.Phase.FAILED})


class Merges:
    """CheckpointMerges of one namespace."""

    def __init__(self, custom: CustomObjectsApi, cache: WatchCache, namespace: str, timeout: float) -> None:
        self._custom = custom
        self._cache = cache
        self._namespace = namespace
        self._timeout = timeout

    @property
    def cache(self) -> WatchCache:
        return self._cache

    def create(self, request: MergeRequest) -> dict[str, Any]:
        """A new CheckpointMerge for the request; the apiserver names it (`merge-xxxxx`)."""
        manifest = {
            "apiVersion": resource.API_VERSION,
            "kind": resource.MERGE_KIND,
            "metadata": {"generateName": resource.MERGE_GENERATE_NAME, "namespace": self._namespace},
            "spec": mapping.to_spec(request),
        }
        merge = self._custom.create_namespaced_custom_object(
            resource.GROUP, resource.VERSION, self._namespace, resource.MERGE_PLURAL, manifest,
            _request_timeout=self._timeout,
        )  # fmt: skip
        self._cache.remember(merge)
        return merge

    def get(self, name: str) -> dict[str, Any] | None:
        """The CheckpointMerge `name` from the cache, else with one direct read; None when there is none."""
        merge = self._cache.get(name)
        if merge is not None:
            return merge
        merge = or_none(
            self._custom.get_namespaced_custom_object,
            resource.GROUP, resource.VERSION, self._namespace, resource.MERGE_PLURAL, name,
            _request_timeout=self._timeout,
        )  # fmt: skip
        if merge is not None:
            self._cache.remember(merge)
        return merge

    async def wait(self, name: str, seconds: float) -> dict[str, Any] | None:
        """The merge once finished, or as it stands after `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            merge = self._cache.get(name)
            if merge is not None and (merge.get("status") or {}).get("phase") in FINISHED:
                return merge
            if time.monotonic() >= deadline:
                return merge
            await asyncio.sleep(POLL_SECONDS)


def merge_response(merge: dict[str, Any]) -> MergeResponse:
    """lmms-eval's MergeResponse for a CheckpointMerge, finished or not."""
    name = merge["metadata"]["name"]
    status = merge.get("status") or {}
    phase = status.get("phase") or resource.Phase.QUEUED
    if phase == resource.Phase.COMPLETED:
        message = "Checkpoint merged successfully"
    elif phase == resource.Phase.FAILED:
        message = f"Merge failed: {status.get('error') or 'unknown error'}"
    else:
        message = (
            f"Merge {name} is {phase.lower()} ({status.get('message') or 'waiting for the operator'}); "
            f"follow it with GET /merges/{name} or `kubectl get ckm {name}`"
        )
    return MergeResponse(
        success=phase == resource.Phase.COMPLETED,
        message=message,
        merged_path=status.get("mergedPath"),
        merge_id=name,
        status=phase.lower(),
    )
