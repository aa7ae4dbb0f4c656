"""evalkube: lmms-eval evaluations as Kubernetes resources.

The shared core every component imports: the wire protocol (`evalkube.protocol`), the EvalJob
names (`evalkube.resource`), the request <-> EvalJob mapping (`evalkube.mapping`) and the clients.
"""

from evalkube.client import AsyncEvalClient, EvalClient, EvalServerError, JobCancelledError, JobFailedError

__version__ = "0.1.0"

__all__ = ["AsyncEvalClient", "EvalClient", "EvalServerError", "JobCancelledError", "JobFailedError", "__version__"]
