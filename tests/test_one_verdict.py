"""One corpus of good and hostile requests, judged by the three places that judge an EvalJob.

The API (POST /evaluate), the CRD's schema as the apiserver applies it (a kubectl create, here
dry-run against the emulator, which evaluates the CRD's patterns and CEL rules) and the runner's
parser must give the same verdict on every request: a request one of them accepts and another
refuses would be accepted by the API (or kubectl) and then fail in the pod.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from evalkube import mapping, resource
from evalkube.protocol import CustomTasks, EvaluateRequest
from evalkube.runner.invocation import InvalidSpec, parse_spec

pytestmark = pytest.mark.timeout(120)

BASE = {"model": "huggingface", "tasks": ["mme"], "num_gpus": 0}

GOOD: list[dict[str, Any]] = [
    {},
    {"model_args": {"pretrained": "/ckpt/models/ckpt-100", "dtype": "bfloat16", "max_pixels": 12845056, "flash": True}},
    {"model_args": {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "gpu_memory_utilization": 0.8, "x": None}},
    {"tasks": ["mmmu_val", "mme", "a b"]},
    {"batch_size": 8},
    {"batch_size": "auto:4"},
    {"limit": 0.5},
    {"limit": 100},
    {"gen_kwargs": "temperature=0,max_new_tokens=64"},
    {"gen_kwargs": "stop=-x"},
    {"output_dir": "runs/step-100"},
    {"output_dir": "./a/.hidden/..x"},
    {"device": "cuda:0", "num_fewshot": 5, "log_samples": False, "predict_only": True},
    {"priority": -1000, "timeout_seconds": 1, "image": "eval:2"},
    {"resources": {"limits": {"memory": "64Gi", "cpu": 8}}, "node_selector": {"pool": "h100"}},
    {"tolerations": [{"key": "gpu", "operator": "Exists"}]},  # custom_tasks: the API also checks the ConfigMap exists
]

HOSTILE: list[dict[str, Any]] = [
    {"tasks": []},
    {"tasks": ["mme,mmmu_val"]},
    {"tasks": ["--include_path=/etc"]},
    {"tasks": ["mme "]},
    {"tasks": ["t" * 254]},
    {"model": "hf\n--tasks x"},
    {"model": "a\x00b"},
    {"device": "cuda,0"},
    {"model_args": {"pretrained": "/m,device_map=cuda"}},
    {"model_args": {"pretrained": "a=b"}},
    {"model_args": {"pretrained": "--flag"}},
    {"model_args": {"pretrained": "line\nbreak"}},
    {"model_args": {"a=b": 1}},
    {"model_args": {"-k": 1}},
    {"model_args": {"nested": {"x": 1}}},
    {"model_args": {"listed": [1, 2]}},
    {"gen_kwargs": "temperature"},
    {"gen_kwargs": "temperature=0\nmax_new_tokens=5"},
    {"gen_kwargs": "temperature=0,--max_new_tokens=5"},
    {"gen_kwargs": "stop=--x"},
    {"gen_kwargs": "temperature=0, max_new_tokens=5"},
    {"gen_kwargs": "a=b=c"},
    {"output_dir": "/shared/../etc"},
    {"output_dir": "/a//b"},
    {"output_dir": "../../x"},
    {"output_dir": "a/../../x"},
    {"output_dir": "a=b"},
    {"output_dir": "a,b"},
    {"output_dir": "a//b"},
    {"output_dir": "-x"},
    {"num_gpus": -1},
    {"num_gpus": 65},
    {"num_gpus": True},
    {"limit": 0},
    {"batch_size": 0},
    {"batch_size": True},
    {"batch_size": 1.5},
    {"batch_size": "-1"},
    {"priority": 5000},
    {"timeout_seconds": 0},
    {"log_samples": "yes"},
    {"num_fewshot": "five"},
    {"custom_tasks": {"config_map": ""}},
    {"resources": {"limits": {"cpu": [1]}}},
]


def as_spec(body: dict[str, Any]) -> dict[str, Any]:
    """A REST body in the EvalJob's names, for kubectl and the runner (without validating it)."""
    names = mapping.spec_names(EvaluateRequest)
    spec = {}
    for key, value in body.items():
        if key == "custom_tasks" and isinstance(value, dict):
            value = {mapping.spec_names(CustomTasks).get(k, k): v for k, v in value.items()}
        spec[names.get(key, key)] = value
    return spec


def api_accepts(http: Any, body: dict[str, Any]) -> bool:
    response = http.post("/evaluate", json=body)
    assert response.status_code in (200, 422), response.text
    return response.status_code == 200


def crd_accepts(kube_client: Any, namespace: str, spec: dict[str, Any]) -> bool:
    manifest = {"apiVersion": resource.API_VERSION, "kind": resource.KIND, "metadata": {"name": "x"}, "spec": spec}
    try:
        kubernetes.client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
            resource.GROUP, resource.VERSION, namespace, resource.PLURAL, manifest, dry_run="All"
        )
    except ApiException as error:
        assert error.status == 422, error.body
        return False
    return True


def runner_accepts(spec: dict[str, Any]) -> bool:
    try:
        parse_spec(spec)
    except InvalidSpec:
        return False
    return True


@pytest.mark.parametrize("extra", GOOD + HOSTILE, ids=repr)
def test_the_api_the_crd_and_the_runner_agree(http, kube_client, namespace, extra: dict[str, Any]) -> None:
    body = {**BASE, **extra}
    spec = as_spec(body)
    verdicts = {
        "api": api_accepts(http, body),
        "crd": crd_accepts(kube_client, namespace, spec),
        "runner": runner_accepts(spec),
    }
    expected = extra in GOOD
    assert verdicts == dict.fromkeys(verdicts, expected)
