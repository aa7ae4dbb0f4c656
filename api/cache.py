"""A watch-backed, in-memory copy of one kind of Kubernetes object in one namespace.

The API reads EvalJobs (and the catalog ConfigMap) from here, never with a LIST per request: one
LIST, then one long WATCH resumed from the last resourceVersion it saw (bookmarks keep that
version fresh while nothing changes), a new LIST only when the apiserver answers 410 Gone (the
version fell out of its history), and reconnection with capped exponential backoff on any other
error. This is what client-go's informers do; the `kubernetes` package has no informer, so this
is that loop, in a daemon thread, on the real client (its own streaming loop rather than
kubernetes.watch.Watch, so that "connected" is known as soon as the apiserver answers 200).

Objects are stored as the raw JSON dicts the apiserver sent (the same shape for custom objects and
built-ins) and are shared with readers: treat them as read-only. An optional `Indexer` (client-go's
indexers) is told of every change under the cache's lock, so a structure derived from the objects
(the queue's order) is kept up to date event by event rather than rebuilt per read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from evalkube.kube import api_message

log = logging.getLogger(__name__)

#: A list function of the `kubernetes` client with its positional arguments already bound,
#: e.g. functools.partial(CustomObjectsApi.list_namespaced_custom_object, group, version, ns, plural).
ListFunction = Callable[..., Any]

_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 10.0
_CONNECT_TIMEOUT = 5.0


class Indexer(Protocol):
    """Kept in step with a cache's objects: told of each change while the cache's lock is held."""

    def put(self, obj: dict[str, Any]) -> None: ...

    def delete(self, name: str) -> None: ...

    def replace(self, objs: Iterable[dict[str, Any]]) -> None: ...


class WatchCache:
    """List + watch of the objects `list_fn` lists, kept current in a background thread."""

    def __init__(
        self,
        list_fn: ListFunction,
        *,
        what: str,
        field_selector: str | None = None,
        watch_timeout_seconds: int = 300,
        indexer: Indexer | None = None,
    ) -> None:
        self._list_fn = list_fn
        self._indexer = indexer
        self._what = what
        self._selector = {"field_selector": field_selector} if field_selector else {}
        self._watch_timeout = watch_timeout_seconds
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._thread: threading.Thread | None = None
        self._error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start listing and watching in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name=f"watch-{self._what}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; an open watch is cut at once (its socket is shut down)."""
        self._stopping.set()
        response = self._response
        if response is not None:
            _shutdown(response)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_synced(self, timeout: float) -> bool:
        """Block until the first LIST has been loaded (or `timeout` passes)."""
        return self._synced.wait(timeout)

    # -- state -------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """True once a first LIST has been loaded: from then on reads reflect the cluster."""
        return self._synced.is_set()

    @property
    def healthy(self) -> bool:
        """True while the watch is connected; False while it is reconnecting after an error."""
        return self.synced and self._error is None

    @property
    def error(self) -> str | None:
        """The last error of the list/watch loop, until it recovers."""
        return self._error

    # -- reads and writes --------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(name)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    @contextlib.contextmanager
    def indexed(self) -> Iterator[Any]:  # the indexer given, e.g. a QueueIndex
        """The indexer, with no change applied while the block runs (keep the block short)."""
        with self._lock:
            yield self._indexer

    def remember(self, obj: dict[str, Any]) -> None:
        """Add an object this process just created or read, unless the watch already has it.

        This gives read-your-writes before the watch event arrives. The watch's copy, when there
        is one, is never older than a create response, so it is kept.
        """
        with self._lock:
            if obj["metadata"]["name"] not in self._objects:
                self._objects[obj["metadata"]["name"]] = obj
                if self._indexer is not None:
                    self._indexer.put(obj)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        resource_version: str | None = None
        backoff = _BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                resource_version = self._watch_from(resource_version)
                backoff = _BACKOFF_FIRST
            except ApiException as exc:
                if exc.status == 410:
                    log.info("%s: watch expired (410 Gone); listing again", self._what)
                    resource_version = None
                    continue
                backoff = self._failed(f"{exc.status} {exc.reason}: {api_message(exc)}", backoff)
            except Exception as exc:  # connection refused, reset, timeout, bad JSON: all retried
                backoff = self._failed(f"{type(exc).__name__}: {exc}", backoff)

    def _failed(self, reason: str, backoff: float) -> float:
        self._error = reason
        if not self._stopping.is_set():
            log.warning("%s: list/watch failed (%s); retrying in %.1fs", self._what, reason, backoff)
        self._stopping.wait(backoff * random.uniform(0.5, 1.0))
        return min(backoff * 2, _BACKOFF_MAX)

    def _relist(self) -> str:
        response = self._list_fn(**self._selector, _preload_content=False, _request_timeout=(_CONNECT_TIMEOUT, 60))
        try:
            listing = json.loads(response.data)
        finally:
            response.release_conn()
        objects = {item["metadata"]["name"]: item for item in listing.get("items") or []}
        with self._lock:
            self._objects = objects
            if self._indexer is not None:
                self._indexer.replace(objects.values())
        self._synced.set()
        return listing["metadata"]["resourceVersion"]

    def _watch_from(self, resource_version: str) -> str:
        """Apply watch events until the server ends the stream; return the last version seen."""
        response = self._list_fn(
            **self._selector,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout,
            _preload_content=False,
            # a connection silent for longer than the server-side timeout is a dead one
            _request_timeout=(_CONNECT_TIMEOUT, self._watch_timeout + 30),
        )
        self._response = response
        self._error = None
        try:
            if self._stopping.is_set():  # stop() came before the response could be shut down
                return resource_version
            for line in iter_resp_lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":  # a Status object; 410 means the version expired
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                resource_version = obj["metadata"]["resourceVersion"]
                with self._lock:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._objects[obj["metadata"]["name"]] = obj
                        if self._indexer is not None:
                            self._indexer.put(obj)
                    elif event["type"] == "DELETED":
                        self._objects.pop(obj["metadata"]["name"], None)
                        if self._indexer is not None:
                            self._indexer.delete(obj["metadata"]["name"])
                # BOOKMARK: only the version moves on
        finally:
            self._response = None
            response.release_conn()
        return resource_version


def _shutdown(response: urllib3.BaseHTTPResponse) -> None:
    """Unblock a thread reading `response`: shutting the socket down ends its recv() at once."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
