"""The API's reads and writes of EvalJobs: writes go to Kubernetes, reads to the watch cache.

The API writes only specs (create, and spec.cancelRequested to cancel); the operator is the only
writer of status. Reads come from the cache, with two exceptions that give read-your-writes: an
EvalJob this replica just created is put into the cache at once, and a name the cache lacks gets
ONE direct GET (another replica may have created it a moment ago) before it is called unknown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from base64 import b32encode
from typing import Any

import aiohttp
from fastapi import HTTPException
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from evalkube import mapping, resource
from evalkube.api.cache import WatchCache
from evalkube.api.request_guards import IDEMPOTENCY_HEADER, current_idempotency_key
from evalkube.apiserver import AsyncApiserver
from evalkube.kube import or_none
from evalkube.protocol import EvaluateRequest

#: The key an EvalJob was created under, and a digest of the request it was created for.
ANNOTATION_IDEMPOTENCY_KEY = "evalkube.dev/idempotency-key"
ANNOTATION_REQUEST_DIGEST = "evalkube.dev/request-digest"
#: Seconds slept before each retry of a create whose answer did not come; ~2 s in all.
_CREATE_RETRY_DELAYS = (0.1, 0.3, 0.6, 1.0)
_TRANSIENT = frozenset({429, 500, 502, 503, 504})
_NAME_DRAWS = 3


class IdempotencyKeyReused(HTTPException):
    """The client's Idempotency-Key names an EvalJob made for another request (422), or its name is
    held by an EvalJob made without it (409); FastAPI answers it as is."""

    def __init__(self, status_code: int, reason: str) -> None:
        loc = ["header", IDEMPOTENCY_HEADER]
        super().__init__(
            status_code, detail=[{"loc": loc, "msg": f"{IDEMPOTENCY_HEADER}: {reason}", "type": "value_error"}]
        )


def name_for_key(namespace: str, key: str) -> str:
    """The EvalJob name a key maps to: `eval-` and 12 base32 characters (60 bits) of its hash."""
    digest = hashlib.blake2b(f"{namespace}/{key}".encode(), digest_size=8).digest()
    return resource.GENERATE_NAME + b32encode(digest).decode().lower()[:12]


def request_digest(request: EvaluateRequest) -> str:
    """A digest of what was asked (the EvalJob spec), to tell a replay from a reused key."""
    spec = json.dumps(mapping.request_to_spec(request), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(spec.encode()).hexdigest()


class EvalJobs:
    """EvalJobs of one namespace."""

    def __init__(
        self, custom: CustomObjectsApi, apiserver: AsyncApiserver, cache: WatchCache, namespace: str, timeout: float
    ) -> None:
        self._custom = custom
        self._apiserver = apiserver
        self._cache = cache
        self._namespace = namespace
        self._timeout = timeout

    def all(self) -> list[dict[str, Any]]:
        """Every EvalJob of the namespace, as the cache last saw them."""
        return self._cache.list()

    def cached(self, name: str) -> dict[str, Any] | None:
        """The EvalJob `name` if the cache holds it: no I/O, so safe on the event loop."""
        return self._cache.get(name)

    def get(self, name: str) -> dict[str, Any] | None:
        """The EvalJob `name`, or None when Kubernetes has none (blocks on a cache miss)."""
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

    async def create(
        self, request: EvaluateRequest, idempotency_key: str | None = None, submitted_by: str | None = None
    ) -> dict[str, Any]:
        """Create the EvalJob for `request` exactly once, even when responses are lost.

        The API names the EvalJob itself, from a key: the client's Idempotency-Key (`idempotency_key`,
        else the request's header, see `request_guards`), or one it draws. A create whose answer
        was lost (dropped connection, timeout, 5xx, 429) is retried with the same name; an
        AlreadyExists answer is then read back and, when the EvalJob carries this key, it is the
        one created before, returned as if just made. The same client key with another request
        body is refused (IdempotencyKeyReused); a drawn key that collides is drawn again.
        """
        client_key = idempotency_key if idempotency_key is not None else current_idempotency_key()
        digest = request_digest(request)
        for _ in range(_NAME_DRAWS):
            key = client_key if client_key is not None else secrets.token_urlsafe(18)
            manifest = mapping.evaljob_manifest(request, self._namespace, submitted_by)
            metadata = manifest["metadata"]
            del metadata["generateName"]
            metadata["name"] = name_for_key(self._namespace, key)
            metadata["annotations"].update({ANNOTATION_IDEMPOTENCY_KEY: key, ANNOTATION_REQUEST_DIGEST: digest})
            evaljob = await self._create_retrying(manifest)
            if evaljob is None:  # AlreadyExists: ours from a lost answer, or someone else's
                existing = self.cached(metadata["name"]) or await asyncio.to_thread(self.get, metadata["name"])
                annotations = ((existing or {}).get("metadata") or {}).get("annotations") or {}
                if annotations.get(ANNOTATION_IDEMPOTENCY_KEY) != key:
                    if client_key is not None:
                        raise IdempotencyKeyReused(
                            409,
                            f"EvalJob {metadata['name']}, the name this key maps to, exists and was not created with it",
                        )
                    continue  # a drawn name that someone else took: draw again
                if annotations.get(ANNOTATION_REQUEST_DIGEST) != digest:
                    raise IdempotencyKeyReused(
                        422, f"already used for a different request (EvalJob {metadata['name']}); use a fresh key"
                    )
                assert existing is not None
                evaljob = existing
            self._cache.remember(evaljob)
            return evaljob
        raise RuntimeError(f"no free EvalJob name after {_NAME_DRAWS} draws")  # 60-bit names: never

    async def _create_retrying(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """POST the EvalJob, retrying transient failures; None when it already exists (AlreadyExists)."""
        for delay in (*_CREATE_RETRY_DELAYS, None):
            try:
                return await self._apiserver.create_custom_object(
                    resource.GROUP, resource.VERSION, self._namespace, resource.PLURAL, manifest, self._timeout
                )
            except ApiException as error:
                if error.status == 409:
                    return None
                if delay is None or not (error.status in _TRANSIENT or not error.status):
                    raise
            except (aiohttp.ClientError, TimeoutError):  # lost answer, timeout, connection refused
                if delay is None:
                    raise
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def request_cancel(self, name: str) -> bool:
        """Ask the operator to cancel (it deletes the Job, sets phase Cancelled); False: no such EvalJob."""
        patched = or_none(
            self._custom.patch_namespaced_custom_object,
            resource.GROUP, resource.VERSION, self._namespace, resource.PLURAL, name,
            {"spec": {"cancelRequested": True}},
            _content_type="application/merge-patch+json", _request_timeout=self._timeout,
        )  # fmt: skip
        return patched is not None
