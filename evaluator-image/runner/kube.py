"""Writing the runner's ConfigMaps (results, catalog) through the Kubernetes API.

The results ConfigMap is written once, at the end of what may have been hours of GPU time, so a
transient API error (apiserver restart, throttling, a dropped connection) is retried a few times
before the run is called failed. An existing ConfigMap of the same name is replaced only when it
belongs to the same owner (a retried pod of the same EvalJob overwrites the earlier attempt's
results): one that someone else created first, e.g. a tenant forging `<name>-result` before the
EvalJob ran, is never adopted (NotOurs), so its contents can never pass for this run's results.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from evalkube import kube, resource

#: Seconds slept before each retry; ~15 s in all, well inside a pod's life.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


def core_api() -> kubernetes.client.CoreV1Api:
    """In a pod its service account, elsewhere KUBECONFIG (`evalkube.kube`)."""
    return kubernetes.client.CoreV1Api(kube.api_client())


def _with_retries(call: Any) -> Any:
    for delay in (*RETRY_DELAYS, None):
        try:
            return call()
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            transient = not isinstance(error, ApiException) or error.status in _TRANSIENT_STATUS
            if delay is None or not transient:
                raise
            time.sleep(delay)


class NotOurs(Exception):
    """A ConfigMap of the name exists and is not owned by the owner this write is for."""


def put_configmap(
    api: kubernetes.client.CoreV1Api,
    namespace: str,
    name: str,
    data: Mapping[str, str],
    labels: Mapping[str, str],
    owner_references: list[dict[str, Any]] | None = None,
) -> None:
    """Create the ConfigMap, or replace it whole if it exists; NotOurs when `owner_references` are
    given and the existing one's first owner is not theirs.

    An owned ConfigMap is replaced by one JSON patch whose first operation tests the owner's uid,
    so the apiserver itself refuses (422) to touch another's, and the pod needs no right to read
    ConfigMaps (its Role grants create and patch only).
    """
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner_references:
        metadata["ownerReferences"] = owner_references
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(data)}

    def create_or_replace() -> None:
        try:
            api.create_namespaced_config_map(namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
            if not owner_references:
                api.replace_namespaced_config_map(name, namespace, body)
                return
            uid = owner_references[0]["uid"]
            patch = [
                {"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": uid},
                {"op": "add", "path": "/metadata/labels", "value": dict(labels)},
                {"op": "add", "path": "/data", "value": dict(data)},
            ]
            try:
                api.patch_namespaced_config_map(name, namespace, patch)
            except ApiException as patch_error:
                if patch_error.status != 422:
                    raise
                raise NotOurs(
                    f"ConfigMap {namespace}/{name} exists and is not owned by uid {uid}; "
                    "refusing to adopt it (was it created by someone else?)"
                ) from None

    _with_retries(create_or_replace)


def put_results(
    api: kubernetes.client.CoreV1Api, namespace: str, name: str, evaljob: str, uid: str, data: Mapping[str, str]
) -> None:
    """The results ConfigMap of EvalJob `evaljob`: its labels, and owned by it (garbage-collected with it)."""
    put_configmap(
        api,
        namespace,
        name,
        data,
        resource.child_labels(evaljob),
        [resource.owner_reference(evaljob, uid, block_owner_deletion=False)],
    )
