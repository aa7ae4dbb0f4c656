"""The tasks and models the evaluator image can run, and the name checks made against them.

Listing them takes lmms-eval seconds (it imports every task module), so the API never does: the
evaluator image's `evalkube-runner catalog` writes them to a ConfigMap (key catalog.json), which
the API watches and serves from memory. With no catalog the API says so (503) rather than answer
an empty list that would read as "nothing can run", and skips the name checks rather than guess.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from evalkube import resource
from evalkube.api.cache import WatchCache
from evalkube.protocol import EvaluateRequest

_PRODUCED_BY = (
    "It is written by `evalkube-runner catalog`, run in the evaluator image "
    "(the Helm chart runs it as a hook Job after install and upgrade)."
)


class CatalogUnavailable(Exception):
    """There is no usable catalog; the message says why and how one is produced."""


@dataclass(frozen=True)
class Catalog:
    """One catalog.json: what the evaluator image can run."""

    tasks: list[str]
    models: list[str]
    lmms_eval_version: str | None = None
    generated_at: str | None = None

    @classmethod
    def parse(cls, text: str) -> Catalog:
        """Read catalog.json; ValueError says what is wrong with it."""
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        names: dict[str, list[str]] = {}
        for key in ("tasks", "models"):
            value = document.get(key)
            if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
                raise ValueError(f"'{key}' is not a list of names")
            names[key] = value
        return cls(
            tasks=names["tasks"],
            models=names["models"],
            lmms_eval_version=document.get("lmmsEvalVersion"),
            generated_at=document.get("generatedAt"),
        )

    def unknown_names(
        self, request: EvaluateRequest, also_tasks: Collection[str] = ()
    ) -> list[tuple[tuple[str | int, ...], str]]:
        """(location in the request, message) for each model or task name this catalog lacks.

        `also_tasks` are the names the request's own custom task definitions add.
        """
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if request.model not in self.models:
            problems.append((("model",), _unknown("model", "model", request.model, self.models)))
        known_tasks = set(self.tasks).union(also_tasks)
        for i, task in enumerate(request.tasks):
            if task not in known_tasks:
                problems.append((("tasks", i), _unknown(f"tasks[{i}]", "task", task, known_tasks)))
        return problems


def _unknown(field: str, kind: str, name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    if not close:
        return f"{field}: unknown {kind} {name!r} (GET /{kind}s lists the {len(known)} known)"
    quoted = [repr(match) for match in close]
    options = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"{field}: unknown {kind} {name!r}; did you mean {options}?"


class CatalogSource:
    """The catalog ConfigMap as the watch cache last saw it, parsed once per version."""

    def __init__(self, cache: WatchCache, configmap: str, namespace: str) -> None:
        self._cache = cache
        self._configmap = configmap
        self._namespace = namespace
        self._parsed: tuple[str, Catalog | str] | None = None  # (resourceVersion, catalog or why not)

    def get(self) -> Catalog:
        """The current catalog, or CatalogUnavailable saying why there is none."""
        where = f"ConfigMap {self._configmap!r} in namespace {self._namespace!r}"
        if not self._cache.synced:
            raise CatalogUnavailable(
                f"The task and model catalog is not available: {where} could not be read yet "
                f"({self._cache.error or 'still loading'})."
            )
        configmap = self._cache.get(self._configmap)
        if configmap is None:
            raise CatalogUnavailable(
                f"The task and model catalog is not available: {where} does not exist. {_PRODUCED_BY}"
            )
        version = configmap["metadata"]["resourceVersion"]
        if self._parsed is None or self._parsed[0] != version:
            self._parsed = (version, self._parse(configmap, where))
        parsed = self._parsed[1]
        if isinstance(parsed, str):
            raise CatalogUnavailable(parsed)
        return parsed

    @staticmethod
    def _parse(configmap: dict[str, Any], where: str) -> Catalog | str:
        text = (configmap.get("data") or {}).get(resource.CATALOG_KEY)
        if text is None:
            return (
                f"The task and model catalog is not available: {where} has no {resource.CATALOG_KEY!r} key. "
                f"{_PRODUCED_BY}"
            )
        try:
            return Catalog.parse(text)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return (
                f"The task and model catalog is not usable: {resource.CATALOG_KEY!r} of {where} is invalid "
                f"({exc}). {_PRODUCED_BY}"
            )
