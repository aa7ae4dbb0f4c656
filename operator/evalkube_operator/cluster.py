"""The operator's few Kubernetes API calls, awaitable.

kopf drives the watches; these are the writes and point reads around them, made on kopf's own
event loop through `evalkube.apiserver` (no worker thread per call). Objects are plain API dicts,
like the watches deliver them.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import Configuration
from kubernetes.client.exceptions import ApiException

from evalkube import resource
from evalkube.apiserver import MERGE_PATCH, AsyncApiserver, or_none

_BACKGROUND = {"propagationPolicy": "Background"}


def _custom(namespace: str, plural: str, name: str = "") -> str:
    path = f"/apis/{resource.GROUP}/{resource.VERSION}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class Cluster:
    """Typed helpers over one connection pool to the apiserver."""

    def __init__(self, configuration: Configuration, pool_size: int) -> None:
        self.apiserver = AsyncApiserver(configuration, pool_size, agent="evalkube-operator")

    async def get_evaljob(self, namespace: str, name: str, plural: str = resource.PLURAL) -> dict[str, Any] | None:
        """An EvalJob (or, with `plural`, another evalkube resource); None when it is gone."""
        return await or_none(self.apiserver.request("GET", _custom(namespace, plural, name)))

    async def patch_evaljob_status(
        self, namespace: str, name: str, status: dict[str, Any], plural: str = resource.PLURAL
    ) -> dict[str, Any] | None:
        """Merge-patch status; None when the EvalJob (or other resource) is gone (deleted meanwhile)."""
        path = _custom(namespace, plural, name) + "/status"
        return await or_none(self.apiserver.request("PATCH", path, {"status": status}, content_type=MERGE_PATCH))

    async def pods_labelled(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods matching a label selector, read now."""
        found = await self.apiserver.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        return list(found.get("items") or [])

    async def delete_evaljob(self, namespace: str, name: str) -> None:
        await or_none(self.apiserver.request("DELETE", _custom(namespace, resource.PLURAL, name), _BACKGROUND))

    async def create_job(self, job: dict[str, Any]) -> bool:
        """Create the Job; False when it already exists (a restarted operator creating it again)."""
        try:
            await self.apiserver.request("POST", f"/apis/batch/v1/namespaces/{job['metadata']['namespace']}/jobs", job)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete the Job and, in the background, its pods (SIGTERM reaches the runner)."""
        await or_none(
            self.apiserver.request("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", _BACKGROUND)
        )

    async def evaljob_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The EvalJob's pods, read now."""
        return await self.pods_labelled(namespace, f"{resource.LABEL_EVALJOB}={name}")

    async def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap, or None when it does not exist."""
        return await or_none(self.apiserver.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}"))

    async def config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data, or None when it does not exist."""
        found = await self.config_map(namespace, name)
        return None if found is None else dict(found.get("data") or {})

    async def create_event(self, event: dict[str, Any]) -> None:
        await self.apiserver.request("POST", f"/api/v1/namespaces/{event['metadata']['namespace']}/events", event)

    async def close(self) -> None:
        await self.apiserver.close()


def owned_by(config_map: dict[str, Any], uid: str) -> bool:
    """Whether the object names `uid` among its owners (only that EvalJob's own pod writes such)."""
    return uid in {ref.get("uid") for ref in config_map["metadata"].get("ownerReferences") or []}
