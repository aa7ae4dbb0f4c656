"""The API's one write on the hot path, POST of an EvalJob, made without leaving the event loop.

The `kubernetes` client blocks, so every call it makes holds a worker thread for the round trip;
under a burst of submissions the threads, and the GIL they contend for, cost several times the
work itself. This is one asyncio HTTP client (aiohttp, which kopf also uses) configured from the
very same `kubernetes` Configuration: the server, its CA, client certificates, and the bearer
token, read through the client's own hook on each request (so a rotated ServiceAccount token is
picked up as the client would). Errors come back as the client's ApiException, so callers handle
both alike. Everything else the API does keeps the `kubernetes` client.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp
from kubernetes.client import Configuration
from kubernetes.client.exceptions import ApiException


class AsyncApiserver:
    """Custom-object creates over pooled keep-alive connections; open in the event loop that uses it."""

    def __init__(self, configuration: Configuration, pool_size: int) -> None:
        self._configuration = configuration
        self._pool_size = pool_size
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
            self._session = aiohttp.ClientSession(connector=connector, json_serialize=json.dumps)
        return self._session

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "evalkube-api"}
        for setting in self._configuration.auth_settings().values():  # refreshes an expiring token
            if setting["in"] == "header" and setting["value"]:
                headers[setting["key"]] = setting["value"]
        return headers

    async def create_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """POST the object; its stored form, or ApiException for an error answer. A lost or late
        answer raises aiohttp.ClientError or TimeoutError."""
        url = f"{self._configuration.host}/apis/{group}/{version}/namespaces/{namespace}/{plural}"
        async with self._session_now().post(
            url, json=body, headers=self._headers(), timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            text = await response.text()
            if not 200 <= response.status < 300:
                raise ApiException(status=response.status, reason=response.reason, body=text)
            return json.loads(text)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
