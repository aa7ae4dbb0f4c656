"""The API's reads and writes of EvalJobs: writes go to Kubernetes, reads to the watch cache.

The API writes only specs (create, and spec.cancelRequested to cancel); the operator is the only
writer of status. Reads come from the cache, with two exceptions that give read-your-writes: an
EvalJob this replica just created is put into the cache at once, and a name the cache lacks gets
ONE direct GET (another replica may have created it a moment ago) before it is called unknown.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import CustomObjectsApi

from evalkube import mapping, resource
from evalkube.api.cache import WatchCache
from evalkube.kube import or_none
from evalkube.protocol import EvaluateRequest


class EvalJobs:
    """EvalJobs of one namespace."""

    def __init__(self, custom: CustomObjectsApi, cache: WatchCache, namespace: str, timeout: float) -> None:
        self._custom = custom
        self._cache = cache
        self._namespace = namespace
        self._timeout = timeout

    def all(self) -> list[dict[str, Any]]:
        """Every EvalJob of the namespace, as the cache last saw them."""
        return self._cache.list()

    def get(self, name: str) -> dict[str, Any] | None:
        """The EvalJob `name`, or None when Kubernetes has none."""
        evaljob = self._cache.get(name)
        if evaljob is not None:
            return evaljob
        evaljob = or_none(
            self._custom.get_namespaced_custom_object,
            resource.GROUP, resource.VERSION, self._namespace, resource.PLURAL, name, _request_timeout=self._timeout,
        )  # fmt: skip
        if evaljob is None:
            return None
        self._cache.remember(evaljob)
        return evaljob

    def create(self, request: EvaluateRequest) -> dict[str, Any]:
        """Create the EvalJob for `request`; the apiserver names it (generateName)."""
        evaljob = self._custom.create_namespaced_custom_object(
            resource.GROUP,
            resource.VERSION,
            self._namespace,
            resource.PLURAL,
            mapping.evaljob_manifest(request, self._namespace),
            _request_timeout=self._timeout,
        )
        self._cache.remember(evaljob)
        return evaljob

    def request_cancel(self, name: str) -> bool:
        """Ask the operator to cancel (it deletes the Job, sets phase Cancelled); False: no such EvalJob."""
        patched = or_none(
            self._custom.patch_namespaced_custom_object,
            resource.GROUP, resource.VERSION, self._namespace, resource.PLURAL, name,
            {"spec": {"cancelRequested": True}},
            _content_type="application/merge-patch+json", _request_timeout=self._timeout,
        )  # fmt: skip
        return patched is not None
