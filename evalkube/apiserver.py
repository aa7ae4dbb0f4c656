"""Calls to the Kubernetes apiserver made without leaving the event loop.

The `kubernetes` client blocks, so every call it makes holds a worker thread for the round trip;
under a burst of EvalJobs the threads, the hand-offs to and from the loop and the GIL they contend
for cost several times the work itself (a profile of the operator put half its CPU there). This is
one asyncio HTTP client (aiohttp, which kopf also uses) configured from the very same `kubernetes`
Configuration: the server, its CA, client certificates, and the bearer token, read through the
client's own hook on each request (so a rotated ServiceAccount token is picked up as the client
would). Objects go and come as the apiserver's JSON (plain dicts, like the watches deliver them);
an error answer raises the client's ApiException, so callers handle both alike, and a lost or late
answer raises aiohttp.ClientError or TimeoutError.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp
from kubernetes.client import Configuration
from kubernetes.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"


class AsyncApiserver:
    """Requests over pooled keep-alive connections; open in the event loop that uses it."""

    def __init__(
        self, configuration: Configuration, pool_size: int, timeout: float = 30.0, agent: str = "evalkube"
    ) -> None:
        self._configuration = configuration
        self._pool_size = pool_size
        self._timeout = timeout
        self._agent = agent
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        config = self._configuration
        if not config.host.startswith("https"):
            return False
        context = ssl.create_default_context(cafile=config.ssl_ca_cert)
        if not config.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file)
        return context

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:  # made lazily, inside the running loop, as aiohttp requires
            connector = aiohttp.TCPConnector(limit=self._pool_size, ssl=self._ssl())
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Content-Type": content_type, "Accept": "application/json", "User-Agent": self._agent}
        for setting in self._configuration.auth_settings().values():  # refreshes an expiring token
            if setting["in"] == "header" and setting["value"]:
                headers[setting["key"]] = setting["value"]
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One call; the answer's JSON, or ApiException for an error answer."""
        async with self._session_now().request(
            method,
            self._configuration.host + path,
            data=None if body is None else json.dumps(body),
            params=params,
            headers=self._headers(content_type),
            timeout=aiohttp.ClientTimeout(total=timeout or self._timeout),
        ) as response:
            text = await response.text()
            if not 200 <= response.status < 300:
                raise ApiException(status=response.status, reason=response.reason, body=text)
            return json.loads(text) if text else {}

    async def create_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """POST the object; its stored form."""
        path = f"/apis/{group}/{version}/namespaces/{namespace}/{plural}"
        return await self.request("POST", path, body, timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def or_none(call: Any) -> Any:
    """The awaited call's answer, or None when the apiserver answers 404: a missing object is an
    answer (`evalkube.kube.or_none` for the `kubernetes` client's calls)."""
    try:
        return await call
    except ApiException as error:
        if error.status == 404:
            return None
        raise
