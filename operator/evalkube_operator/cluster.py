"""The operator's few Kubernetes API calls, awaitable.

kopf drives the watches; these are the writes and point reads around them. The `kubernetes`
client is synchronous, so each call runs in a worker thread instead of blocking kopf's loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from evalkube import resource
from evalkube.kube import discarding, or_none


class Cluster:
    """Typed helpers over one ApiClient."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.batch = kubernetes.client.BatchV1Api(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)

    async def get_evaljob(self, namespace: str, name: str, plural: str = resource.PLURAL) -> dict[str, Any] | None:
        """An EvalJob (or, with `plural`, another evalkube resource); None when it is gone."""
        return await _or_none(
            self.custom.get_namespaced_custom_object, resource.GROUP, resource.VERSION, namespace, plural, name
        )

    async def patch_evaljob_status(
        self, namespace: str, name: str, status: dict[str, Any], plural: str = resource.PLURAL
    ) -> dict[str, Any] | None:
        """Merge-patch status; None when the EvalJob (or other resource) is gone (deleted meanwhile)."""
        return await _or_none(
            self.custom.patch_namespaced_custom_object_status,
            resource.GROUP, resource.VERSION, namespace, plural, name, {"status": status},
        )  # fmt: skip

    async def pods_labelled(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods matching a label selector, read now (plain API dicts, like the watches deliver them)."""
        response = await asyncio.to_thread(
            self.core.list_namespaced_pod, namespace, label_selector=selector, _preload_content=False
        )
        return list(json.loads(response.data)["items"])

    async def delete_evaljob(self, namespace: str, name: str) -> None:
        await _or_none(
            self.custom.delete_namespaced_custom_object,
            resource.GROUP,
            resource.VERSION,
            namespace,
            resource.PLURAL,
            name,
            propagation_policy="Background",
        )

    async def create_job(self, job: dict[str, Any]) -> bool:
        """Create the Job; False when it already exists (a restarted operator creating it again)."""
        try:
            await asyncio.to_thread(discarding, self.batch.create_namespaced_job, job["metadata"]["namespace"], job)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete the Job and, in the background, its pods (SIGTERM reaches the runner)."""
        await _or_none(self.batch.delete_namespaced_job, name, namespace, propagation_policy="Background")

    async def evaljob_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The EvalJob's pods, read now (as plain API dicts, like the watches deliver them)."""
        return await self.pods_labelled(namespace, f"{resource.LABEL_EVALJOB}={name}")

    async def config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data, or None when it does not exist."""
        found = await _or_none(self.core.read_namespaced_config_map, name, namespace)
        return None if found is None else dict(found.data or {})


async def _or_none(call: Any, *args: Any, **kwargs: Any) -> Any:
    """`evalkube.kube.or_none` in a worker thread: a deleted object is a normal outcome here."""
    return await asyncio.to_thread(or_none, call, *args, **kwargs)
