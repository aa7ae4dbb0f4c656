"""Python clients for the evalkube API, with lmms-eval's EvalClient and AsyncEvalClient methods.

A training loop written against `lmms_eval.entrypoints.EvalClient` switches by changing its import.
Beyond lmms-eval's clients:

- `evaluate()` takes evalkube's optional request fields as keyword-only arguments after lmms-eval's.
- An error answer raises `EvalServerError`, an `httpx.HTTPStatusError` (so lmms-eval-style
  `except httpx.HTTPStatusError` still works) whose message carries the server's `detail`: which
  field was wrong and why, not only "422 Unprocessable Entity".
- `evaluate()` sends a fresh `Idempotency-Key` and retries that same request (same key) on a
  dropped connection, 429 or 5xx, up to len(RETRY_DELAYS) times: a lost answer never makes two
  EvalJobs, since the API maps the key to one EvalJob name (see api/evaljobs.py).
- `wait_for_job()` also ends on a cancelled job (`JobCancelledError`; lmms-eval's polls forever),
  and a failed one raises `JobFailedError`, a RuntimeError saying "Job failed: <error>" as before.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx

#: Seconds slept before each retry of POST /evaluate (same Idempotency-Key); ~7.5 s in all.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

__all__ = ["AsyncEvalClient", "EvalClient", "EvalServerError", "JobCancelledError", "JobFailedError"]


class EvalServerError(httpx.HTTPStatusError):
    """The server answered with an error status; `detail` is its explanation as sent."""

    def __init__(self, response: httpx.Response) -> None:
        try:
            detail: Any = response.json()["detail"]
        except (ValueError, KeyError, TypeError):
            detail = response.text
        request = response.request
        super().__init__(
            f"{response.status_code} {response.reason_phrase} for {request.method} {request.url}: {_describe(detail)}",
            request=request,
            response=response,
        )
        self.detail = detail


class JobFailedError(RuntimeError):
    """wait_for_job(): the job failed; `job` is its JobInfo, `job["error"]` says why."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"Job failed: {job.get('error') or 'Unknown error'}")
        self.job = job


class JobCancelledError(RuntimeError):
    """wait_for_job(): the job was cancelled before it finished; `job` is its JobInfo."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"Job {job.get('job_id')} was cancelled")
        self.job = job


def _describe(detail: Any) -> str:
    """FastAPI's 422 detail (a list of {loc, msg}) as 'field: reason; ...'; anything else as text."""
    if isinstance(detail, list) and all(isinstance(item, dict) and "msg" in item for item in detail):
        parts = []
        for item in detail:
            where = ""
            for part in item.get("loc", ()):
                if isinstance(part, int):
                    where += f"[{part}]"
                elif part not in ("body", "[key]"):
                    where = f"{where}.{part}" if where else str(part)
            message = str(item["msg"])
            parts.append(f"{where}: {message}" if where and where not in message else message)
        return "; ".join(parts)
    return str(detail)


def _json(response: httpx.Response) -> Any:
    if response.is_error:
        raise EvalServerError(response)
    return response.json()


#: Where Kubernetes puts a pod's ServiceAccount token: a client in a training pod uses it by itself.
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _namespace(namespace: str | None) -> dict[str, str] | None:
    return {"namespace": namespace} if namespace else None


class _BearerToken(httpx.Auth):
    """`Authorization: Bearer` with a fixed token, or the pod's ServiceAccount token read afresh for
    each request (the kubelet rotates that file; a training loop's client lives for days)."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        token = self.token
        if token is None and SERVICE_ACCOUNT_TOKEN.is_file():
            token = SERVICE_ACCOUNT_TOKEN.read_text().strip()
        if not token and (request.url.username or request.url.password):
            # Credentials in the URL (`http://token:T@evalkube:8000`), as lmms-eval's client sends them.
            yield from httpx.BasicAuth(request.url.username, request.url.password).auth_flow(request)
            return
        if token and "authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


def _evaluate_body(fields: dict[str, Any], custom_tasks: str | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The POST /evaluate body: the given fields, the client's defaults for the ones not given."""
    fields = {**fields, "custom_tasks": custom_tasks}
    fields.update({name: value for name, value in defaults.items() if fields.get(name) is None})
    body = {name: value for name, value in fields.items() if value is not None}
    if isinstance(body.get("custom_tasks"), str):
        body["custom_tasks"] = {"config_map": body["custom_tasks"]}
    return body


def _idempotent(body: dict[str, Any]) -> dict[str, Any]:
    """Request arguments of one evaluate call: its body and the key all its retries share."""
    return {"json": body, "headers": {"Idempotency-Key": uuid.uuid4().hex}}


def _retry(outcome: httpx.Response | httpx.TransportError) -> bool:
    return isinstance(outcome, httpx.TransportError) or outcome.status_code in _RETRY_STATUS


def _finished(job: dict[str, Any], verbose: bool) -> bool:
    """True once the job completed; raises if it failed or was cancelled."""
    status = job.get("status")
    if verbose:
        if status == "queued":
            print(f"Job {job.get('job_id')} queued (position: {job.get('position_in_queue', '?')})")
        elif status in ("running", "completed"):
            print(f"Job {job.get('job_id')} {status}")
    if status == "failed":
        raise JobFailedError(job)
    if status == "cancelled":
        raise JobCancelledError(job)
    return status == "completed"


class EvalClient:
    """Client of the evalkube API (and of lmms-eval's own server: the methods are the same)."""

    def __init__(
        self,
        base_url: str = "http://localhost:8000",
        timeout: float | None = None,
        *,
        token: str | None = None,
        namespace: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        """`timeout`: seconds per HTTP request; None waits for ever (lmms-eval's default).

        `token`: the bearer token the API authenticates (a ServiceAccount token, `kubectl create
        token`); unset, inside a pod, the pod's own ServiceAccount token.
        `namespace`: the namespace (tenant) of every request (`?namespace=`); unset, the API uses
        the caller's ServiceAccount namespace, else its own. A job_id is unique within its namespace.
        `defaults`: request fields every `evaluate` sends unless it gives them itself (e.g.
        `{"priority": 5, "custom_tasks": "my-tasks"}`), for callers that only know lmms-eval's
        arguments, such as lmms-engine's EvalServerBackend.
        """
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(timeout=timeout, auth=_BearerToken(token), params=_namespace(namespace))
        self.defaults = dict(defaults or {})

    def __enter__(self) -> EvalClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def _request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
        return _json(self.client.request(method, f"{self.base_url}{endpoint}", **kwargs))

    def _request_retrying(self, method: str, endpoint: str, **kwargs: Any) -> Any:
        """_request, retried as it is on transport errors, 429 and 5xx (for idempotent requests only)."""
        for delay in (*RETRY_DELAYS, None):
            try:
                outcome: httpx.Response | httpx.TransportError = self.client.request(
                    method, f"{self.base_url}{endpoint}", **kwargs
                )
            except httpx.TransportError as error:
                outcome = error
            if delay is None or not _retry(outcome):
                break
            time.sleep(delay)
        if isinstance(outcome, httpx.TransportError):
            raise outcome
        return _json(outcome)

    def health(self) -> dict[str, Any]:
        """GET /health; an unhealthy server raises EvalServerError (503) saying why."""
        return self._request("GET", "/health")

    def is_healthy(self) -> bool:
        """True if the server answers and says it is healthy."""
        try:
            return self.health().get("status") == "healthy"
        except Exception:
            return False

    def list_tasks(self) -> list[str]:
        """Every task the evaluator image can run."""
        return self._request("GET", "/tasks").get("tasks", [])

    def list_models(self) -> list[str]:
        """Every model backend the evaluator image can run."""
        return self._request("GET", "/models").get("models", [])

    def evaluate(
        self,
        model: str,
        tasks: list[str],
        model_args: dict[str, Any] | None = None,
        num_fewshot: int | None = None,
        batch_size: int | str | None = None,
        device: str | None = None,
        limit: int | float | None = None,
        gen_kwargs: str | None = None,
        log_samples: bool = True,
        predict_only: bool = False,
        num_gpus: int = 1,
        output_dir: str | None = None,
        *,
        priority: int | None = None,
        timeout_seconds: int | None = None,
        image: str | None = None,
        resources: dict[str, dict[str, int | str]] | None = None,
        node_selector: dict[str, str] | None = None,
        tolerations: list[dict[str, Any]] | None = None,
        custom_tasks: str | None = None,
        allow_online: bool | None = None,
        lmms_engine_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Submit an evaluation; returns job_id, status, position_in_queue and message at once.

        The keyword-only arguments are evalkube's: `priority` (higher runs first),
        `timeout_seconds`, `image`, `resources`, `node_selector`, `tolerations` for the evaluator
        pod, `custom_tasks` (name of a ConfigMap holding task YAML), `allow_online`, and
        `lmms_engine_kwargs` (`{"model_path", "checkpoint_type", "output_path"}`: merge that
        FSDP2-sharded checkpoint first, as lmms-engine's EvalServerBackend asks).
        """
        fields = dict(
            model=model, tasks=tasks, model_args=model_args, num_fewshot=num_fewshot, batch_size=batch_size,
            device=device, limit=limit, gen_kwargs=gen_kwargs, log_samples=log_samples, predict_only=predict_only,
            num_gpus=num_gpus, output_dir=output_dir, priority=priority, timeout_seconds=timeout_seconds,
            image=image, resources=resources, node_selector=node_selector, tolerations=tolerations,
            allow_online=allow_online, lmms_engine_kwargs=lmms_engine_kwargs,
        )  # fmt: skip
        return self._request_retrying(
            "POST", "/evaluate", **_idempotent(_evaluate_body(fields, custom_tasks, self.defaults))
        )

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The job's JobInfo: status, times, and once completed `result` (lmms-eval's paths) and `metrics`."""
        return self._request("GET", f"/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; a finished one raises EvalServerError (400)."""
        return self._request("DELETE", f"/jobs/{job_id}")

    def wait_for_job(
        self, job_id: str, poll_interval: float = 5.0, timeout: float | None = None, verbose: bool = True
    ) -> dict[str, Any]:
        """Poll until the job completes and return its JobInfo.

        Raises JobFailedError, JobCancelledError, or TimeoutError after `timeout` seconds.
        """
        start = time.monotonic()
        while True:
            job = self.get_job(job_id)
            if _finished(job, verbose):
                return job
            if timeout and time.monotonic() - start > timeout:
                raise TimeoutError(f"Timeout waiting for job {job_id}")
            time.sleep(poll_interval)

    def get_queue_status(self) -> dict[str, Any]:
        """queue_size, queued_jobs (in run order), running_job(s), and finished counts."""
        return self._request("GET", "/queue")

    def merge_checkpoint(
        self,
        checkpoint_path: str,
        output_path: str | None = None,
        checkpoint_type: Literal["regular", "ema"] = "regular",
    ) -> dict[str, Any]:
        """POST /merge: merge a sharded checkpoint in a CPU-only Job and wait for it (within the
        server's bound; past it `success` is False and `merge_id` names the merge to follow with
        get_merge). A missing checkpoint raises EvalServerError 404, a wrong layout 400."""
        body = {"checkpoint_path": checkpoint_path, "output_path": output_path, "checkpoint_type": checkpoint_type}
        return self._request("POST", "/merge", json=body)

    def get_merge(self, merge_id: str) -> dict[str, Any]:
        """A merge's state (GET /merges/{id}): status, and merged_path once completed."""
        return self._request("GET", f"/merges/{merge_id}")

    def get_logs(self, job_id: str, tail_lines: int | None = None, since_seconds: int | None = None) -> str:
        """The evaluator pod's log (GET /jobs/{id}/logs); once the pod is gone, the log tail the job kept.

        A queued job (no log yet) raises EvalServerError 409; an unknown job, or one whose pod left no
        tail, 404.
        """
        params = {"tail_lines": tail_lines, "since_seconds": since_seconds}
        response = self.client.get(
            f"{self.base_url}/jobs/{job_id}/logs", params={k: v for k, v in params.items() if v is not None}
        )
        if response.is_error:
            raise EvalServerError(response)
        return response.text

    def stream_logs(
        self, job_id: str, tail_lines: int | None = None, since_seconds: int | None = None
    ) -> Iterator[str]:
        """The log as it grows (follow=true): text as it arrives, until the container ends.

        No read timeout: lmms-eval may print nothing for a long while. Closing the iterator early
        (break, or leaving a `with contextlib.closing(...)`) closes the connection.
        """
        params = {"tail_lines": tail_lines, "since_seconds": since_seconds, "follow": "true"}
        timeout = httpx.Timeout(self.client.timeout.connect, read=None)
        url = f"{self.base_url}/jobs/{job_id}/logs"
        with self.client.stream(
            "GET", url, params={k: v for k, v in params.items() if v is not None}, timeout=timeout
        ) as response:
            if response.is_error:
                response.read()
                raise EvalServerError(response)
            yield from response.iter_text()


class AsyncEvalClient:
    """The asyncio twin of EvalClient: the same methods, awaited."""

    def __init__(
        self,
        base_url: str = "http://localhost:8000",
        timeout: float | None = None,
        *,
        token: str | None = None,
        namespace: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        """See EvalClient."""
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(timeout=timeout, auth=_BearerToken(token), params=_namespace(namespace))
        self.defaults = dict(defaults or {})

    async def __aenter__(self) -> AsyncEvalClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections (httpx's name)."""
        await self.client.aclose()

    async def close(self) -> None:
        """Close the HTTP connections (lmms-eval's name)."""
        await self.aclose()

    async def _request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
        return _json(await self.client.request(method, f"{self.base_url}{endpoint}", **kwargs))

    async def _request_retrying(self, method: str, endpoint: str, **kwargs: Any) -> Any:
        """See EvalClient._request_retrying."""
        for delay in (*RETRY_DELAYS, None):
            try:
                outcome: httpx.Response | httpx.TransportError = await self.client.request(
                    method, f"{self.base_url}{endpoint}", **kwargs
                )
            except httpx.TransportError as error:
                outcome = error
            if delay is None or not _retry(outcome):
                break
            await asyncio.sleep(delay)
        if isinstance(outcome, httpx.TransportError):
            raise outcome
        return _json(outcome)

    async def health(self) -> dict[str, Any]:
        """See EvalClient.health."""
        return await self._request("GET", "/health")

    async def is_healthy(self) -> bool:
        """See EvalClient.is_healthy."""
        try:
            return (await self.health()).get("status") == "healthy"
        except Exception:
            return False

    async def list_tasks(self) -> list[str]:
        """See EvalClient.list_tasks."""
        return (await self._request("GET", "/tasks")).get("tasks", [])

    async def list_models(self) -> list[str]:
        """See EvalClient.list_models."""
        return (await self._request("GET", "/models")).get("models", [])

    async def evaluate(
        self,
        model: str,
        tasks: list[str],
        model_args: dict[str, Any] | None = None,
        num_fewshot: int | None = None,
        batch_size: int | str | None = None,
        device: str | None = None,
        limit: int | float | None = None,
        gen_kwargs: str | None = None,
        log_samples: bool = True,
        predict_only: bool = False,
        num_gpus: int = 1,
        output_dir: str | None = None,
        *,
        priority: int | None = None,
        timeout_seconds: int | None = None,
        image: str | None = None,
        resources: dict[str, dict[str, int | str]] | None = None,
        node_selector: dict[str, str] | None = None,
        tolerations: list[dict[str, Any]] | None = None,
        custom_tasks: str | None = None,
        allow_online: bool | None = None,
        lmms_engine_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """See EvalClient.evaluate."""
        fields = dict(
            model=model, tasks=tasks, model_args=model_args, num_fewshot=num_fewshot, batch_size=batch_size,
            device=device, limit=limit, gen_kwargs=gen_kwargs, log_samples=log_samples, predict_only=predict_only,
            num_gpus=num_gpus, output_dir=output_dir, priority=priority, timeout_seconds=timeout_seconds,
            image=image, resources=resources, node_selector=node_selector, tolerations=tolerations,
            allow_online=allow_online, lmms_engine_kwargs=lmms_engine_kwargs,
        )  # fmt: skip
        return await self._request_retrying(
            "POST", "/evaluate", **_idempotent(_evaluate_body(fields, custom_tasks, self.defaults))
        )

    async def get_job(self, job_id: str) -> dict[str, Any]:
        """See EvalClient.get_job."""
        return await self._request("GET", f"/jobs/{job_id}")

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        """See EvalClient.cancel_job."""
        return await self._request("DELETE", f"/jobs/{job_id}")

    async def wait_for_job(
        self, job_id: str, poll_interval: float = 5.0, timeout: float | None = None, verbose: bool = True
    ) -> dict[str, Any]:
        """See EvalClient.wait_for_job."""
        start = time.monotonic()
        while True:
            job = await self.get_job(job_id)
            if _finished(job, verbose):
                return job
            if timeout and time.monotonic() - start > timeout:
                raise TimeoutError(f"Timeout waiting for job {job_id}")
            await asyncio.sleep(poll_interval)

    async def get_queue_status(self) -> dict[str, Any]:
        """See EvalClient.get_queue_status."""
        return await self._request("GET", "/queue")

    async def merge_checkpoint(
        self,
        checkpoint_path: str,
        output_path: str | None = None,
        checkpoint_type: Literal["regular", "ema"] = "regular",
    ) -> dict[str, Any]:
        """See EvalClient.merge_checkpoint."""
        body = {"checkpoint_path": checkpoint_path, "output_path": output_path, "checkpoint_type": checkpoint_type}
        return await self._request("POST", "/merge", json=body)

    async def get_merge(self, merge_id: str) -> dict[str, Any]:
        """See EvalClient.get_merge."""
        return await self._request("GET", f"/merges/{merge_id}")

    async def get_logs(self, job_id: str, tail_lines: int | None = None, since_seconds: int | None = None) -> str:
        """See EvalClient.get_logs."""
        params = {"tail_lines": tail_lines, "since_seconds": since_seconds}
        response = await self.client.get(
            f"{self.base_url}/jobs/{job_id}/logs", params={k: v for k, v in params.items() if v is not None}
        )
        if response.is_error:
            raise EvalServerError(response)
        return response.text

    async def stream_logs(
        self, job_id: str, tail_lines: int | None = None, since_seconds: int | None = None
    ) -> AsyncIterator[str]:
        """See EvalClient.stream_logs (`async for`; `aclose()` it to leave early)."""
        params = {"tail_lines": tail_lines, "since_seconds": since_seconds, "follow": "true"}
        timeout = httpx.Timeout(self.client.timeout.connect, read=None)
        url = f"{self.base_url}/jobs/{job_id}/logs"
        async with self.client.stream(
            "GET", url, params={k: v for k, v in params.items() if v is not None}, timeout=timeout
        ) as response:
            if response.is_error:
                await response.aread()
                raise EvalServerError(response)
            async for text in response.aiter_text():
                yield text
