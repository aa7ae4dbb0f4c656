"""Every Job the operator can build is valid Kubernetes and a "restricted" pod."""

from __future__ import annotations

import kubernetes_validate
import pytest

from evalkube import resource
from evalkube.operator.jobspec import build_job
from evalkube.operator.settings import OperatorSettings

from pss import violations

EVALJOB = {
    "apiVersion": resource.API_VERSION,
    "kind": resource.KIND,
    "metadata": {"name": "eval-abcde", "namespace": "research", "uid": "0b7e2b8c-6a43-4b53-9d3a-2f1f7f5f0a11"},
    "spec": {"model": "huggingface", "tasks": ["mme"]},
}

VARIANTS = {
    "defaults": ({}, OperatorSettings()),
    "cpu-only": ({"numGpus": 0}, OperatorSettings()),
    "everything": (
        {
            "numGpus": 8,
            "timeoutSeconds": 3600,
            "image": "eval:2",
            "resources": {"requests": {"cpu": 8, "memory": "64Gi"}},
            "nodeSelector": {"pool": "h100"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "customTasks": {"configMap": "my-tasks"},
            "allowOnline": True,
        },
        OperatorSettings(
            artifacts_pvc="artifacts",
            model_cache_pvc="hf-cache",
            evaluator_service_account="evaluator",
            image_pull_secrets=["regcred"],
            kueue_queue_name="team-a",
            allow_online=True,
            default_resources={"limits": {"memory": "96Gi"}},
            node_selector={"gpu": "true"},
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        ),
    ),
}


@pytest.mark.parametrize("version", ["1.30", "1.37"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_job_is_valid_for_kubernetes(variant: str, version: str) -> None:
    spec, settings = VARIANTS[variant]
    job = build_job({**EVALJOB, "spec": {**EVALJOB["spec"], **spec}}, settings)
    kubernetes_validate.validate(job, version, strict=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_evaluator_pod_meets_the_restricted_pod_security_standard(variant: str) -> None:
    spec, settings = VARIANTS[variant]
    job = build_job({**EVALJOB, "spec": {**EVALJOB["spec"], **spec}}, settings)
    assert violations(job["spec"]["template"]["spec"]) == []
