"""The checks of a request's model and task names, made before its EvalJob is created.

An unknown task would otherwise be found only after the evaluator pod was scheduled, maybe
minutes later on a GPU node; a 422 naming the field, with the closest known names, is found at
once. The request's own custom_tasks ConfigMap is read too: the tasks it defines are accepted, and
a ConfigMap that doesn't exist would fail the pod, so it fails the request instead.
"""

from __future__ import annotations

from typing import NoReturn

from fastapi.exceptions import RequestValidationError
from kubernetes.client import CoreV1Api

from evalkube.api import custom_tasks
from evalkube.api.catalog import CatalogSource, CatalogUnavailable
from evalkube.protocol import EvaluateRequest


class NameChecks:
    """Model and task names against the catalog and the request's custom tasks."""

    def __init__(self, catalog: CatalogSource, core: CoreV1Api, namespace: str, timeout: float) -> None:
        self._catalog = catalog
        self._core = core
        self._namespace = namespace
        self._timeout = timeout

    def check(self, request: EvaluateRequest) -> None:
        """RequestValidationError (a 422 like FastAPI's own) per unknown name; no catalog, no name check."""
        defined = self._custom_task_names(request)
        try:
            catalog = self._catalog.get()
        except CatalogUnavailable:
            return  # the runner finds unknown names later; /tasks says why there is no catalog
        problems = catalog.unknown_names(request, also_tasks=defined)
        if problems:
            _reject(problems)

    def _custom_task_names(self, request: EvaluateRequest) -> set[str]:
        if request.custom_tasks is None:
            return set()
        name = request.custom_tasks.config_map
        where = ("custom_tasks", "config_map")
        try:
            found = custom_tasks.read_defined_names(self._core, self._namespace, name, self._timeout)
        except ValueError as exc:
            _reject([(where, f"custom_tasks.config_map: ConfigMap {name!r}: {exc}")])
        if found is None:
            _reject(
                [(where, f"custom_tasks.config_map: ConfigMap {name!r} not found in namespace {self._namespace!r}")]
            )
        return found


def _reject(problems: list[tuple[tuple[str | int, ...], str]]) -> NoReturn:
    raise RequestValidationError([{"type": "value_error", "loc": ("body", *loc), "msg": msg} for loc, msg in problems])
