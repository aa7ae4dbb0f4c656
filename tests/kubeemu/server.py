"""HTTP front-end: URL routing, verbs, query parameters, watch streaming, request recording.

Built on the stdlib's ThreadingHTTPServer (HTTP/1.1 keep-alive, one thread per
connection): a watch simply occupies its connection's thread and writes chunked
JSON lines, so the server needs no event loop and never touches pytest's or
kopf's. TCP_NODELAY avoids the 40 ms Nagle/delayed-ACK stall on small responses.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from . import discovery, errors, logs
from .auth import Authenticator, answer_review, unauthorized
from .errors import ApiError
from .faults import THROTTLE_BODY, Fault, Faults, server_error
from .rbac import Attributes, RBACAuthorizer, UserInfo, forbidden
from .resources import ResourceType
from .selectors import Selector
from .store import Store, present
from .watch import Watcher

_TRUE = ("1", "t", "T", "true", "True", "TRUE")
_DISCONNECT_POLL_S = 0.5


class RequestRecord(NamedTuple):
    """One request as RBAC sees it; non-resource requests (discovery, /version) have resource ''."""

    verb: str  # get list watch create update patch delete deletecollection
    api_group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    token: str | None  # the bearer token, if any
    user_agent: str
    path: str
    fault: str = ""  # the kind of fault injected into this request ("" if none)


@dataclass
class Policy:
    """What the server checks and injects; read on every request, so changes apply at once."""

    authenticator: Authenticator
    authorizer: RBACAuthorizer
    faults: Faults
    enforce_rbac: bool = False


class _Dropped(Exception):
    """The connection must be dropped without (the rest of) a response."""


@dataclass(frozen=True)
class Route:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool  # deprecated /watch/ prefix


def parse_route(path: str) -> Route | None:
    """Resource URL -> Route; None for non-resource URLs (discovery, /version, ...)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) > 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_path = rest[0] == "watch"
    rest = rest[1:] if watch_path else rest
    namespace = None
    # /api/v1/namespaces/NAME/status is the namespace's own subresource, not a namespaced collection.
    if len(rest) >= 3 and rest[0] == "namespaces" and not (group == "" and len(rest) == 3 and rest[2] == "status"):
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3:
        raise errors.route_not_found()
    rest += [None] * (3 - len(rest))
    return Route(group, version, rest[0], namespace, rest[1], rest[2], watch_path)


def verb_of(method: str, route: Route, query: dict[str, str]) -> str:
    if method == "GET":
        if route.watch_path or query.get("watch") in _TRUE:
            return "watch"
        return "get" if route.name else "list"
    if route.name is None:
        return {"POST": "create", "DELETE": "deletecollection"}.get(method, method.lower())
    return {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    #: The stdlib's default backlog is 5; a burst of clients (50 concurrent submissions) then sees
    #: connection resets that a real apiserver (Go, somaxconn backlog) never gives.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], store: Store, recorder: Recorder, bookmark_interval: float, policy: Policy
    ):
        self.store, self.recorder, self.bookmark_interval, self.policy = store, recorder, bookmark_interval, policy
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets its connection (an asyncio client closing its pool, a killed
        process) has only left, as a real apiserver sees it; anything else is printed as before."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Wake every keep-alive/watch thread so that stop() leaves no thread behind."""
        self.stopping.set()
        with self.connections_lock:
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ---- plumbing ------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, code: int, data: bytes, content_type: str, warnings: Sequence[str] = ()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for warning in warnings:
            self.send_header("Warning", "299 - " + json.dumps(warning))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, code: int, body: Any, warnings: Sequence[str] = ()) -> None:
        self._send(code, json.dumps(body, separators=(",", ":")).encode(), "application/json", warnings)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _record(self, verb: str, route: Route | None, path: str, fault: Fault | None = None) -> None:
        r = route or Route("", "", "", None, None, None, False)
        self.server.recorder.add(
            RequestRecord(
                verb,
                r.group,
                r.plural,
                r.subresource or "",
                r.namespace or "",
                r.name or "",
                self._token(),
                self.headers.get("User-Agent", ""),
                path,
                fault.kind if fault else "",
            )
        )

    # ---- dispatch ------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self._read_body()
        policy = self.server.policy
        try:
            route = parse_route(url.path)
            verb = method.lower() if route is None else verb_of(method, route, query)
            user: UserInfo | None = None
            fault: Fault | None = None
            denial: ApiError | None = None
            if policy.enforce_rbac:
                user = policy.authenticator.authenticate(self._token(), self.server.store)
                denial = unauthorized() if user is None else self._authorize(user, method, verb, route, url.path, query)
            if denial is None and route is not None and policy.faults.rules:
                fault = policy.faults.decide(
                    verb,
                    route.group,
                    f"{route.plural}/{route.subresource}" if route.subresource else route.plural,
                    route.namespace or "",
                    route.name or _created_name(verb, raw),
                    self._token(),
                    resume=query.get("resourceVersion") not in (None, "", "0"),
                )
            self._record(verb, route, url.path, fault)
            if denial is not None:
                raise denial
            if route is None:
                return self._non_resource(method, url.path)
            if fault is not None and self._inject(fault, route):
                return
            if fault is not None and fault.kind == "lost_response":
                return self._lose_response(verb, route, query, raw, user)
            self._resource(verb, route, query, raw, user, fault)
        except ApiError as exc:
            self._send_json(exc.code, exc.status())
        except _Dropped:
            self._drop()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # an emulator bug: answer it visibly instead of dropping the connection
            traceback.print_exc()
            self._send_json(500, ApiError(500, "InternalError", f"kubeemu internal error: {exc!r}").status())

    # ---- authentication, authorization, faults --------------------------------------------

    def _authorize(
        self, user: UserInfo, method: str, verb: str, route: Route | None, path: str, query: dict[str, str]
    ) -> ApiError | None:
        """The 403 for this request, if RBAC does not allow it (attributes as RequestInfoFactory builds them)."""
        if route is None:
            attrs = Attributes(user, method.lower(), False, path=path)
        else:
            name, namespace = route.name or "", route.namespace or ""
            if verb == "watch" and name and not route.watch_path:
                verb = "get"  # GET .../NAME?watch=1 is a get to RBAC
            if verb in ("list", "watch") and not name:
                for term in query.get("fieldSelector", "").split(","):
                    key, _, value = term.partition("=")
                    if key.strip() == "metadata.name" and value and not value.startswith("="):
                        name = value.strip()
            if route.group == "" and route.plural == "namespaces" and route.name:
                namespace = route.name
            attrs = Attributes(
                user, verb, True, namespace, route.group, route.version, route.plural, route.subresource or "", name
            )
        allowed, reason = self.server.policy.authorizer.authorize(attrs)
        return None if allowed else forbidden(attrs, reason)

    def _drop(self) -> None:
        """Close the connection with no (further) bytes, as a crashed or partitioned server would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _inject(self, fault: Fault, route: Route) -> bool:
        """Act on a fault before the request is served; True if that answered (or dropped) it."""
        rule = fault.rule
        if rule.kind == "error":
            raise server_error(rule.code)
        if rule.kind == "throttle":
            self.send_response(429)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Retry-After", str(rule.retry_after))
            self.send_header("Content-Length", str(len(THROTTLE_BODY)))
            self.end_headers()
            self.wfile.write(THROTTLE_BODY)
            return True
        if rule.kind in ("timeout", "slow"):
            self.server.stopping.wait(rule.delay)
            if rule.kind == "timeout":
                self._drop()
                return True
            return False
        if rule.kind == "conflict":
            raise errors.conflict(route.plural, route.group, route.name or "", errors.STALE)
        return False

    def _lose_response(self, verb: str, route: Route, query: dict[str, str], raw: bytes, user: UserInfo | None) -> None:
        """Serve the request for real, into a sink; then drop the connection before any byte is sent."""
        sink, self.wfile = self.wfile, io.BytesIO()
        try:
            self._resource(verb, route, query, raw, user, None)
        except ApiError:
            pass  # the failure is lost with the connection too
        finally:
            self.wfile = sink
        self._drop()

    def _non_resource(self, method: str, path: str) -> None:
        registry = self.server.store.registry
        parts = [p for p in path.split("/") if p]
        if method != "GET":
            raise errors.method_not_allowed()
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return self._send(200, b"ok", "text/plain; charset=utf-8")
        body: Any = None
        if not parts:
            body = {
                "paths": [
                    "/api",
                    "/api/v1",
                    "/apis",
                    "/healthz",
                    "/livez",
                    "/readyz",
                    "/version",
                    *sorted({f"/apis/{rt.group}/{rt.version}" for rt in registry.all() if rt.group}),
                ]
            }
        elif parts == ["version"]:
            body = discovery.VERSION_INFO
        elif parts == ["api"]:
            host, port = self.server.server_address[:2]
            body = discovery.api_versions(f"{host}:{port}")
        elif parts == ["apis"]:
            body = discovery.api_group_list(registry)
        elif len(parts) == 2 and parts[0] == "apis":
            body = discovery.api_group(registry, parts[1])
        elif len(parts) == 2 and parts[0] == "api":
            body = discovery.api_resource_list(registry, "", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            body = discovery.api_resource_list(registry, parts[1], parts[2])
        if body is None:
            raise errors.route_not_found()
        self._send_json(200, body)

    def _resolve(self, route: Route) -> ResourceType:
        rt = self.server.store.registry.get(route.group, route.version, route.plural)
        if (
            rt is None
            or (rt.namespaced and route.namespace is None and route.name is not None)
            or (not rt.namespaced and route.namespace is not None)
            or (route.subresource is not None and route.subresource not in rt.subresources)
        ):
            raise errors.route_not_found()
        return rt

    def _resource(
        self,
        verb: str,
        route: Route,
        query: dict[str, str],
        raw: bytes,
        user: UserInfo | None = None,
        fault: Fault | None = None,
    ) -> None:
        rt = self._resolve(route)
        store, ns, name, sub = self.server.store, route.namespace, route.name, route.subresource
        dry_run = _dry_run(query)
        strict = query.get("fieldValidation") == "Strict"
        quiet = query.get("fieldValidation") == "Ignore"
        if sub == "log":
            if verb != "get":
                raise errors.method_not_allowed()
            return self._pod_log(ns or "", name or "", query)
        if not rt.stored:
            if verb != "create":
                raise errors.method_not_allowed()
            policy = self.server.policy
            requester = user or policy.authenticator.authenticate(self._token(), store)
            body = answer_review(rt.kind, _json(raw), requester, ns, policy.authenticator, policy.authorizer, store)
            return self._send_json(201, body)
        if sub == "status" and verb not in ("get", "update", "patch"):
            raise errors.method_not_allowed()
        if verb in ("list", "watch", "deletecollection"):
            selector = Selector.parse(rt, query.get("labelSelector", ""), query.get("fieldSelector", ""))
            if name is not None:  # GET .../plural/NAME?watch=1: a watch on one object
                selector = Selector(selector.labels, (*selector.fields, ("metadata.name", True, name)))
        if verb == "watch":
            return self._watch(rt, ns, selector, query, fault)
        if verb == "list":
            body = store.list(rt, ns, selector, _int(query, "limit"), query.get("continue", ""))
            return self._send_json(200, body)
        if verb == "get":
            return self._send_json(200, store.get(rt, ns, name or ""))
        if verb in ("deletecollection", "delete"):
            if rt.namespaced and ns is None:
                raise errors.method_not_allowed()
            options = _json(raw) if raw.strip() else {}
            if not isinstance(options, dict):
                raise errors.bad_request("the body of a DELETE must be a DeleteOptions object")
            for key in ("propagationPolicy", "orphanDependents"):
                if key in query and key not in options:
                    options[key] = query[key] if key == "propagationPolicy" else query[key] in _TRUE
            if verb == "delete":
                body, warnings = store.delete(rt, ns, name or "", options, dry_run)
            else:
                body, warnings = store.delete_collection(rt, ns, selector, options, dry_run)
            return self._send_json(200, body, warnings)
        if verb == "create":
            if rt.namespaced and ns is None:
                raise errors.method_not_allowed()
            body, warnings = store.create(rt, ns, _json(raw), dry_run, strict)
            return self._send_json(201, body, [] if quiet else warnings)
        if verb == "update":
            body, warnings = store.update(rt, ns, name or "", _json(raw), sub, dry_run, strict)
            return self._send_json(200, body, [] if quiet else warnings)
        if verb == "patch":
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            body, warnings = store.patch(rt, ns, name or "", content_type, _json(raw), sub, dry_run, strict)
            return self._send_json(200, body, [] if quiet else warnings)
        raise errors.method_not_allowed()

    # ---- pod logs ------------------------------------------------------------------------

    def _pod_log(self, ns: str, name: str, query: dict[str, str]) -> None:
        store = self.server.store
        opts = logs.LogOptions.parse(name, query)
        pod = store.get(store.registry.get("", "v1", "pods"), ns, name)  # type: ignore[arg-type]
        container = logs.pick_container(pod, opts.container)
        if not (pod.get("spec") or {}).get("nodeName"):
            self.send_response(204)  # LogLocation: no node, no location, a null stream
            self.end_headers()
            return
        has_log = store.logs.has(ns, name, container, logs.current_run(pod, container))
        run = logs.run_to_serve(pod, container, opts.previous, has_log)
        uid = pod["metadata"]["uid"]
        live = not opts.previous and logs.run_is_live(pod, uid, container, run)
        entries = everything = store.logs.view(ns, name, container, run, flushed=not live)
        if opts.tail_lines is not None:
            entries = entries[len(entries) - opts.tail_lines :] if opts.tail_lines else []
        since = opts.since(time.time_ns())
        budget = opts.limit_bytes
        data = opts.render(entries, since).encode()
        if budget is not None:
            data = data[:budget]
        if not opts.follow or not live or (budget is not None and len(data) >= budget):
            return self._send(200, data, "text/plain")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._follow(ns, name, uid, container, run, data, len(everything), opts)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def _follow(
        self, ns: str, name: str, uid: str, container: str, run: int, first: bytes, cursor: int, opts: logs.LogOptions
    ) -> None:
        """Stream new lines of one container run until it ends, its pod goes or the client leaves."""
        store, budget, since = self.server.store, opts.limit_bytes, opts.since(time.time_ns())
        if first:
            self._chunk(first)
        spent = len(first)
        while True:
            version = store.logs.version
            pod = store.find_pod(ns, name)
            live = logs.run_is_live(pod, uid, container, run)
            entries = store.logs.view(ns, name, container, run, flushed=not live)
            data = opts.render(entries[cursor:], since).encode()
            cursor = len(entries)
            if budget is not None:
                data = data[: budget - spent]
            if data:
                self._chunk(data)
                spent += len(data)
            if not live or (budget is not None and spent >= budget) or self.server.stopping.is_set():
                return
            store.logs.wait(version, _DISCONNECT_POLL_S)
            if self._client_gone():
                raise ConnectionAbortedError

    # ---- watch ---------------------------------------------------------------------------

    def _chunk(self, payload: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))

    def _event(self, event_type: str, obj: Any) -> None:
        self._chunk(json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n")

    def _client_gone(self) -> bool:
        """EOF from the client (it closed the watch); peeking never consumes a pipelined request."""
        try:
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _watch(
        self, rt: ResourceType, ns: str | None, selector: Selector, query: dict[str, str], fault: Fault | None
    ) -> None:
        store = self.server.store
        watcher: Watcher | None = None
        expired: ApiError | None = None
        try:
            if fault is not None and fault.kind == "watch_expired":
                since = query.get("resourceVersion", "")
                raise errors.expired(f"too old resource version: {since} ({store.resource_version})")
            watcher = store.watch(
                rt, ns, selector, query.get("resourceVersion"), query.get("sendInitialEvents") in _TRUE
            )
        except ApiError as exc:
            if exc.code != 410:
                raise
            expired = exc  # like the real server: 200 + one ERROR event, then the stream ends
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if expired is not None:
                self._event("ERROR", expired.status())
            elif watcher is not None:
                self._pump(watcher, rt, query, fault)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        except _Dropped:
            self._drop()
        finally:
            if watcher is not None:
                store.unwatch(watcher)

    def _pump(self, watcher: Watcher, rt: ResourceType, query: dict[str, str], fault: Fault | None = None) -> None:
        store, interval = self.server.store, self.server.bookmark_interval
        bookmarks = query.get("allowWatchBookmarks") in _TRUE
        timeout = _int(query, "timeoutSeconds")
        deadline = time.monotonic() + timeout if timeout else None
        next_bookmark = time.monotonic() + interval
        cut = fault.rule if fault is not None and fault.kind == "watch_cut" else None
        cut_at = time.monotonic() + cut.delay if cut else None
        sent = 0
        while deadline is None or time.monotonic() < deadline:
            if cut is not None and (sent >= cut.after_events or time.monotonic() >= (cut_at or 0)):
                self.wfile.flush()
                raise _Dropped
            wait = min(
                _DISCONNECT_POLL_S,
                next_bookmark - time.monotonic() if bookmarks else _DISCONNECT_POLL_S,
                deadline - time.monotonic() if deadline else _DISCONNECT_POLL_S,
                cut_at - time.monotonic() if cut_at else _DISCONNECT_POLL_S,
            )
            try:
                item = watcher.take(wait)
            except queue.Empty:
                if self._client_gone():
                    raise ConnectionAbortedError from None
                if bookmarks and time.monotonic() >= next_bookmark:
                    mark = store.bookmark(watcher)
                    if mark is not None:
                        self._event("BOOKMARK", mark)
                    next_bookmark = time.monotonic() + interval
                continue
            if item is None:  # store closed or the CRD went away
                return
            event_type, obj = item
            self._event(event_type, obj if event_type == "BOOKMARK" else present(rt, obj))
            sent += event_type != "BOOKMARK"
            next_bookmark = time.monotonic() + interval


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise errors.bad_request(f"json: cannot decode the request body: {exc}") from None


def _int(query: dict[str, str], key: str) -> int:
    try:
        return int(query.get(key) or 0)
    except ValueError:
        raise errors.bad_request(f'{key}: Invalid value: "{query[key]}": must be an integer') from None


def _dry_run(query: dict[str, str]) -> bool:
    value = query.get("dryRun")
    if value not in (None, "All"):
        raise errors.bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return value == "All"


def _created_name(verb: str, raw: bytes) -> str:
    """The name a create asks for (or its generateName), so that faults can be keyed by object."""
    if verb != "create":
        return ""
    try:
        meta = json.loads(raw or b"null").get("metadata") or {}
    except (ValueError, AttributeError):
        return ""
    return str(meta.get("name") or meta.get("generateName") or "") if isinstance(meta, dict) else ""
