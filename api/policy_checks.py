"""The cluster's policy applied at submission: a request it refuses is a 403 before anything exists.

The operator applies the same `evalkube.policy.violations` at admission (so kubectl users are bound
too); here a caller learns at once which rule refused which field, in FastAPI's detail shape
(`loc`, `msg`, like a 422), so the clients print it as they print validation errors.
"""

from __future__ import annotations

from fastapi import HTTPException
from kubernetes.client import CoreV1Api

from evalkube.kube import or_none
from evalkube.policy import Policy, violations
from evalkube.protocol import EvaluateRequest


def check_policy(request: EvaluateRequest, policy: Policy, core: CoreV1Api, namespace: str, timeout: float) -> None:
    """HTTPException 403 naming each broken rule and field.

    A custom-tasks ConfigMap is read only when the policy forbids custom-task Python; one that does
    not exist is left to the name checks, which answer 422 for it.
    """
    task_files = None
    if request.custom_tasks is not None and not policy.allow_custom_task_code:
        found = or_none(
            core.read_namespaced_config_map, request.custom_tasks.config_map, namespace, _request_timeout=timeout
        )
        task_files = None if found is None else dict(found.data or {})
    broken = violations(request, policy, task_files=task_files)
    if broken:
        raise HTTPException(
            status_code=403,
            detail=[{"type": "policy", "loc": ["body", *v.field], "msg": str(v), "rule": v.rule} for v in broken],
        )


class PolicyCheck:
    """The policy of the API's settings, with what reading a custom-tasks ConfigMap needs; one per
    served namespace, made once (see `state.Tenant`)."""

    def __init__(self, policy: Policy, core: CoreV1Api, namespace: str, timeout: float) -> None:
        self._policy, self._core, self._namespace, self._timeout = policy, core, namespace, timeout

    def check(self, request: EvaluateRequest) -> None:
        """403 naming each rule the request breaks (see `check_policy`)."""
        check_policy(request, self._policy, self._core, self._namespace, self._timeout)
