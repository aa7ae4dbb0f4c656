"""GET /jobs/{job_id}/logs: the evaluator pod's log, read through the Kubernetes API (pods/log).

The API keeps no logs of its own: the kubelet has them while the pod exists, and the apiserver
proxies them (`kubectl logs` reads the same). The pod is found by its label
`evalkube.dev/evaljob=<job_id>` (the Job controller names pods `<job>-<suffix>`), newest first.

- `tail_lines`, `since_seconds`: passed to the apiserver as tailLines/sinceSeconds.
- `follow=true`: chunked text, copied from the apiserver's own follow stream as it arrives, until
  the container ends (the apiserver closes the stream) or the client leaves (the upstream
  connection is then shut down at once, so no thread or socket is left reading for no one).
- No pod yet (queued, or its container not started): 409, saying what the job waits for.
- No pod any more (finished, the Job deleted): the tail of the log outlives the pod in the
  EvalJob's `status.error` (the runner's termination message holds the last KiB of lmms-eval's
  output), served as the log with the header `X-Evalkube-Log-Source: status.error`; with no such
  tail, 404 saying the pod is gone.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import urllib3
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse, StreamingResponse
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from evalkube import mapping, resource
from evalkube.api.deps import EvalJobsDep, StateDep, allowed
from evalkube.kube import api_message
from evalkube.protocol import JobStatus

router = APIRouter(tags=["jobs"])

#: Timeout of the pod lookup and of a plain (not followed) log read.
_TIMEOUT_SECONDS = 10.0
#: (connect, read) of a followed log: it may stay silent for as long as lmms-eval does (one long
#: generation), so the read timeout is a day; the client leaving ends it sooner.
_FOLLOW_TIMEOUT = (5.0, 86400.0)
_READ_BYTES = 64 * 1024
#: Header naming where a log came from: the pod (the kubelet), or the EvalJob's status.error.
SOURCE_HEADER = "X-Evalkube-Log-Source"


def _newest_pod(core: CoreV1Api, namespace: str, job_id: str) -> dict[str, Any] | None:
    response = core.list_namespaced_pod(
        namespace,
        label_selector=f"{resource.LABEL_EVALJOB}={job_id}",
        _preload_content=False,
        _request_timeout=_TIMEOUT_SECONDS,
    )
    try:
        pods = json.loads(response.data).get("items") or []
    finally:
        response.release_conn()
    live = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")] or pods
    return max(live, key=lambda pod: pod["metadata"].get("creationTimestamp") or "", default=None)


def _no_pod(evaljob: dict[str, Any], job_id: str) -> PlainTextResponse:
    """The answer when the job has no pod: 409 before it starts, its log tail or 404 after it ended."""
    status = evaljob.get("status") or {}
    state = mapping.job_status(evaljob)
    if state in (JobStatus.QUEUED, JobStatus.RUNNING) and not status.get("completedAt"):
        waiting = status.get("message") or "waiting for the evaluator pod"
        raise HTTPException(status_code=409, detail=f"Job {job_id} has no log yet ({state.value}: {waiting})")
    if status.get("error"):
        text = status["error"] if status["error"].endswith("\n") else status["error"] + "\n"
        return PlainTextResponse(text, headers={SOURCE_HEADER: "status.error"})
    raise HTTPException(
        status_code=404,
        detail=f"Job {job_id} is {state.value} and its evaluator pod is gone; its log went with it",
    )


def _shutdown(response: urllib3.BaseHTTPResponse) -> None:
    """End a read blocked on `response` at once (shutting the socket down ends its recv())."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


async def _relay(response: urllib3.BaseHTTPResponse) -> AsyncIterator[bytes]:
    """The upstream body as it arrives. Each read waits in a worker thread; when the client leaves,
    Starlette cancels this generator and the `finally` cuts the upstream connection."""
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(response.read1, _READ_BYTES, abandon_on_cancel=True)
            if not chunk:
                return
            yield chunk
    except (urllib3.exceptions.HTTPError, OSError):
        return  # the apiserver cut the stream: what came so far is the log
    finally:
        _shutdown(response)
        with contextlib.suppress(Exception):
            response.release_conn()


@router.get(
    "/jobs/{job_id}/logs",
    response_class=PlainTextResponse,
    response_model=None,
    responses={
        200: {"content": {"text/plain": {}}, "description": "The log (streamed as it grows with follow=true)"},
        404: {"description": "No such job, or its pod is gone and left no log tail"},
        409: {"description": "The job has no log yet: queued, or its container has not started"},
    },
    # Reading a job's log through the API is `kubectl logs` of its pod: both rights, in its namespace.
    dependencies=[allowed("get", "evaljobs"), allowed("get", "pods", "log", group="")],
)
def job_logs(
    job_id: str,
    evaljobs: EvalJobsDep,
    state: StateDep,
    tail_lines: Annotated[int | None, Query(ge=0, description="Only the last this many lines")] = None,
    since_seconds: Annotated[int | None, Query(ge=1, description="Only lines from the last this many seconds")] = None,
    follow: Annotated[bool, Query(description="Stream the log as it grows, until the container ends")] = False,
) -> PlainTextResponse | StreamingResponse:
    """The evaluator pod's log (lmms-eval's output and the runner's own lines)."""
    evaljob = evaljobs.get(job_id)
    if evaljob is None:
        raise HTTPException(status_code=404, detail=f"Job {job_id} not found")
    namespace = evaljob["metadata"]["namespace"]
    core = CoreV1Api(state.client)
    pod = _newest_pod(core, namespace, job_id)
    if pod is None:
        return _no_pod(evaljob, job_id)
    options: dict[str, Any] = {"container": (pod["spec"]["containers"] or [{}])[0].get("name")}
    if tail_lines is not None:
        options["tail_lines"] = tail_lines
    if since_seconds is not None:
        options["since_seconds"] = since_seconds
    try:
        response = core.read_namespaced_pod_log(
            pod["metadata"]["name"],
            namespace,
            follow=follow,
            _preload_content=False,
            _request_timeout=_FOLLOW_TIMEOUT if follow else _TIMEOUT_SECONDS,
            **options,
        )
    except ApiException as error:
        if error.status == 404:  # deleted between the lookup and the read
            return _no_pod(evaljob, job_id)
        if error.status == 400:  # the kubelet's "container ... is waiting to start: ..."
            raise HTTPException(status_code=409, detail=f"Job {job_id} has no log yet: {api_message(error)}") from None
        raise
    headers = {SOURCE_HEADER: "pod/" + pod["metadata"]["name"]}
    if response.status == 204:  # no node yet: the apiserver has no kubelet to ask
        response.release_conn()
        waiting = (evaljob.get("status") or {}).get("message") or "the pod is not scheduled yet"
        raise HTTPException(status_code=409, detail=f"Job {job_id} has no log yet ({waiting})")
    if not follow:
        try:
            return PlainTextResponse(response.data.decode(errors="replace"), headers=headers)
        finally:
            response.release_conn()
    return StreamingResponse(_relay(response), media_type="text/plain; charset=utf-8", headers=headers)
