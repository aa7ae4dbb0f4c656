"""Kubernetes API failures as HTTP answers a REST client can act on.

Routes let `kubernetes` exceptions propagate (except the 404s they answer themselves); these
handlers turn them into one clear status each, always with the apiserver's own message: its
schema rejection stays a 422, a refusal (401/403: RBAC, a terminating namespace) is a 502 since
the client did nothing wrong, and an unreachable or overloaded apiserver is a temporary 503.
"""

from __future__ import annotations

import logging

import aiohttp
import urllib3
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kubernetes.client.exceptions import ApiException

from evalkube import mapping
from evalkube.kube import api_message

log = logging.getLogger(__name__)


def _api_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiException)
    message = api_message(exc)
    status = exc.status or 0
    if status == 422:
        code, detail = 422, f"Kubernetes rejected the EvalJob: {message}"
    elif status == 409:
        code, detail = 409, f"Conflict in the Kubernetes API: {message}"
    elif status in (401, 403):
        code, detail = 502, f"The Kubernetes API refused the request ({status} {exc.reason}): {message}"
    elif status == 0 or status == 429 or status >= 500:
        code, detail = 503, f"The Kubernetes API is unavailable ({status} {exc.reason}): {message}"
    else:
        code, detail = 502, f"Unexpected answer from the Kubernetes API ({status} {exc.reason}): {message}"
    log.warning("%s %s -> %d: %s", request.method, request.url.path, code, detail)
    return JSONResponse(status_code=code, content={"detail": detail})


def _unreachable(request: Request, exc: Exception) -> JSONResponse:
    detail = f"The Kubernetes API is unreachable: {exc}"
    log.warning("%s %s -> 503: %s", request.method, request.url.path, detail)
    return JSONResponse(status_code=503, content={"detail": detail})


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, each of our rules' messages led by the field it is about (`tasks[1]: must
    not ...`), so the reason reads whole wherever it is shown (our client, logs, a curl user)."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        path = mapping.field_path(tuple(part for part in error.get("loc", ()) if part != "body"))
        message = str(error.get("msg", ""))
        if error.get("type") == "value_error" and path and not message.startswith(f"{path}:"):
            message = f"Value error, {path}: {mapping.reason(error)}"
        errors.append({**error, "msg": message})
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(ApiException, _api_exception)
    app.add_exception_handler(urllib3.exceptions.HTTPError, _unreachable)
    app.add_exception_handler(aiohttp.ClientError, _unreachable)  # the async create (evalkube/apiserver.py)
    app.add_exception_handler(TimeoutError, _unreachable)
