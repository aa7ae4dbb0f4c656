"""evalkube: lmms-eval evaluations as Kubernetes resources.

The shared core every component imports: the wire protocol (`evalkube.protocol`), the EvalJob
names (`evalkube.resource`), the request <-> EvalJob mapping (`evalkube.mapping`) and the clients.
The clients are imported on first use: the runner and the operator never need httpx, and every
evaluator process would otherwise pay for importing it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AsyncEvalClient", "EvalClient", "EvalServerError", "JobCancelledError", "JobFailedError", "__version__"]

if TYPE_CHECKING:
    from evalkube.client import AsyncEvalClient, EvalClient, EvalServerError, JobCancelledError, JobFailedError


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("evalkube.client"), name)
    raise AttributeError(f"module 'evalkube' has no attribute {name!r}")
