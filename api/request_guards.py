"""ASGI middleware that refuses hostile requests before FastAPI parses them, and carries the
Idempotency-Key header to `EvalJobs.create`.

Why a middleware and not route code: a body must be refused while it is being received, before
uvicorn and FastAPI hold all of it in memory, and Python's JSON parser turns a deeply nested
document into a RecursionError (an opaque 400 from FastAPI) or spends its time on it. So:

- a body over `max_body_bytes` (EVALKUBE_API_MAX_BODY_BYTES, default 1 MiB: an EvalJob must fit
  in one etcd object anyway) gets 413, by its Content-Length or while it streams in;
- a JSON body that is not UTF-8, holds a lone surrogate escape, or nests deeper than
  MAX_JSON_DEPTH gets 422;
- an `Idempotency-Key` header that is empty, longer than 255 characters or not printable ASCII
  gets 422; a valid one is put in a context variable that `EvalJobs.create` reads (the routes run
  in anyio's thread pool, which copies the context), so the key needs no plumbing through routes.

Every refusal is FastAPI's shape: `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`,
naming the field (`body`, `header.Idempotency-Key`) and the reason.
"""

from __future__ import annotations

import contextvars
import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Deeper JSON than this is refused; EvaluateRequest's deepest field (resources.limits) needs 3.
MAX_JSON_DEPTH = 32
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # visible ASCII, as the IETF draft's examples use
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_HIGH, _LOW = rb"\\u[dD][89abAB][0-9a-fA-F]{2}", rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_LONE_SURROGATE = re.compile(_HIGH + rb"(?!" + _LOW + rb")|(?<!" + _HIGH + rb")" + _LOW)

_idempotency_key: contextvars.ContextVar[str | None] = contextvars.ContextVar("idempotency_key", default=None)


def current_idempotency_key() -> str | None:
    """The Idempotency-Key of the request being served (None: the client sent none)."""
    return _idempotency_key.get()


def json_depth(body: bytes) -> int:
    """How deeply `body`'s arrays and objects nest (brackets inside strings do not count)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def json_text_problem(body: bytes) -> str | None:
    """Why a JSON body cannot be taken as text, or None: not UTF-8, a lone UTF-16 surrogate escape
    (Python accepts "\\ud800" but can never encode it again, so every later read of the EvalJob
    would fail), or nesting deeper than MAX_JSON_DEPTH."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"not UTF-8: byte {error.start} is {body[error.start : error.start + 1]!r}"
    lone = _LONE_SURROGATE.search(body)
    if lone:
        return f"{lone.group().decode()} is a lone UTF-16 surrogate, not a character (send the character itself)"
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        return f"JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted"
    return None


class _TooLarge(Exception):
    pass


def _refusal(status: int, loc: list[str], msg: str, kind: str) -> tuple[int, bytes]:
    return status, json.dumps({"detail": [{"loc": loc, "msg": msg, "type": kind}]}).encode()


class RequestGuards:
    """Pure ASGI middleware: `app.add_middleware(RequestGuards, max_body_bytes=N)`."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value for name, value in scope.get("headers", ())}
        key = headers.get(IDEMPOTENCY_HEADER.lower())
        if key is not None:
            problem = _check_key(key)
            if problem:
                await _send(send, *_refusal(422, ["header", IDEMPOTENCY_HEADER], problem, "value_error"))
                return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _send(send, *self._too_large(int(length)))
            return
        try:
            body = await self._read_body(receive) if scope["method"] in ("POST", "PUT", "PATCH") else None
        except _TooLarge:
            await _send(send, *self._too_large(None))
            return
        if body is not None and b"json" in headers.get("content-type", b""):
            problem = json_text_problem(body)
            if problem:
                await _send(send, *_refusal(422, ["body"], problem, "value_error"))
                return
        token = _idempotency_key.set(key.decode("ascii") if key is not None else None)
        try:
            await self.app(scope, _replay(body, receive) if body is not None else receive, send)
        finally:
            _idempotency_key.reset(token)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _too_large(self, size: int | None) -> tuple[int, bytes]:
        said = f"{size} bytes" if size is not None else "more bytes"
        msg = f"request body is {said}, over the limit of {self.max_body_bytes} bytes (EVALKUBE_API_MAX_BODY_BYTES)"
        return _refusal(413, ["body"], msg, "too_large")


def _check_key(key: bytes) -> str | None:
    try:
        text = key.decode("ascii")
    except UnicodeDecodeError:
        return "must be printable ASCII"
    if not text:
        return "must not be empty"
    if len(text) > MAX_IDEMPOTENCY_KEY_LENGTH:
        return f"must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters, not {len(text)}"
    if not _KEY_CHARS.fullmatch(text):
        return "must be printable ASCII without spaces"
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The buffered body once, then whatever the client sends next (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send(send: Send, status: int, body: bytes) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 413:
        headers.append((b"connection", b"close"))
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
