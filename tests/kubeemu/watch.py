"""Watch plumbing: the event history entry and one subscriber's queue.

Events are offered to watchers while the store lock is held (cheap, never blocks),
and written to sockets by the connection's own thread after taking them from the
queue, so a slow client never stalls writers.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any

from .resources import ResourceType
from .selectors import Selector

Obj = dict[str, Any]


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    store_key: tuple[str, str]
    obj: Obj  # state after the change (for DELETED: last state, new rv)
    old: Obj | None  # state before (None for ADDED)


class Watcher:
    """A subscription: namespace + selector filter, and a queue of (type, object) to send."""

    def __init__(self, rt: ResourceType, namespace: str | None, selector: Selector):
        self.rt, self.namespace, self.selector = rt, namespace, selector
        self._queue: queue.SimpleQueue[tuple[str, Obj] | None] = queue.SimpleQueue()

    def push(self, event_type: str, obj: Obj) -> None:
        self._queue.put((event_type, obj))

    def offer(self, ev: Event) -> None:
        """Filter like the apiserver's watch cache: leaving the selector is a DELETED, entering an ADDED."""
        if self.namespace is not None and ev.obj["metadata"].get("namespace") != self.namespace:
            return
        now = ev.type != "DELETED" and self.selector.matches(ev.obj)
        before = ev.old is not None and self.selector.matches(ev.old)
        if now:
            self.push("MODIFIED" if before else "ADDED", ev.obj)
        elif before:
            old = (
                ev.old
                if ev.type == "DELETED"
                else {**ev.old, "metadata": {**ev.old["metadata"], "resourceVersion": str(ev.rv)}}
            )
            self.push("DELETED", old)

    def close(self) -> None:
        self._queue.put(None)

    def idle(self) -> bool:
        return self._queue.empty()

    def take(self, timeout: float) -> tuple[str, Obj] | None:
        """Next event; raises queue.Empty on timeout, returns None once closed."""
        return self._queue.get(timeout=max(timeout, 0.0))
