"""What the operator registers with kopf, and what that lets it skip.

Only watch-event handlers and indexes: no on.create/on.update/on.resume state machine (so kopf
keeps no per-object progress annotations) and no daemons. That is why its settings drop kopf's
diff base, which only those would read.
"""

from __future__ import annotations

import inspect

import kopf

import evalkube.operator.main  # noqa: F401  (registers every handler)
from evalkube.operator.main import NoDiffBase


def registry() -> kopf.OperatorRegistry:
    return kopf.get_default_registry()


def test_only_event_handlers_and_indexes_are_registered() -> None:
    assert registry()._changing.get_all_handlers() == []
    assert registry()._spawning.get_all_handlers() == []
    assert len(registry()._watching.get_all_handlers()) >= 3
    assert len(registry()._indexing.get_all_handlers()) >= 4


def test_every_indexer_runs_on_kopfs_loop_not_in_a_thread() -> None:
    for handler in registry()._indexing.get_all_handlers():
        assert inspect.iscoroutinefunction(handler.fn), handler.id


def test_the_diff_base_is_empty_and_never_stored() -> None:
    storage = NoDiffBase()
    body = kopf.Body({"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"model": "m"}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
