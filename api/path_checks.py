"""Absolute paths of a request against the volumes the evaluator pods mount, before anything exists.

A path no pod can open would fail the evaluation only after its pod was scheduled (maybe on a GPU
node) or fail a merge that the training loop is waiting on; `evalkube.volumes.path_problems` names
them at once. The operator applies the same function at admission, for EvalJobs written with kubectl.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

from evalkube.volumes import path_problems


def check_paths(fields: dict[str, Any], mounts: list[str]) -> None:
    """RequestValidationError (a 422 naming each field) for every unreachable absolute path."""
    problems = path_problems(fields, mounts)
    if problems:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", *loc), "msg": f"Value error, {why}"} for loc, why in problems]
        )
