"""The policy's rules, each allowed and refused: the one function the API and the operator both apply."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from evalkube.policy import Policy, parse_policy, task_code, violations
from evalkube.protocol import EvaluateRequest

EVALUATOR = "ghcr.io/evalkube/evaluator:0.1.0"


def request(**fields: Any) -> EvaluateRequest:
    return EvaluateRequest.model_validate({"model": "huggingface", "tasks": ["mme"], **fields})


def rules(fields: dict[str, Any], policy: Policy, task_files: dict[str, str] | None = None) -> list[str]:
    return [v.rule for v in violations(request(**fields), policy, task_files=task_files)]


DEFAULT = Policy(evaluator_image=EVALUATOR)
OPEN = Policy(
    evaluator_image=EVALUATOR,
    allowed_images=["registry.example/team/*", "repo/evaluator:", "exact/image:1"],
    max_gpus=16,
    allow_node_selector=True,
    allow_tolerations=True,
    max_resources={"cpu": "16", "memory": "64Gi"},
    allow_online=True,
    allow_trust_remote_code=True,
    allow_custom_task_code=True,
)

CASES = [
    # (fields, rule broken under the default policy, allowed under OPEN)
    ({"image": "registry.example/team/eval:2"}, "allowedImages"),
    ({"image": "repo/evaluator:v9"}, "allowedImages"),
    ({"image": "exact/image:1"}, "allowedImages"),
    ({"num_gpus": 9}, "maxGpus"),
    ({"node_selector": {"pool": "a100"}}, "allowNodeSelector"),
    ({"tolerations": [{"key": "gpu", "operator": "Exists"}]}, "allowTolerations"),
    ({"resources": {"limits": {"memory": "64Gi"}}}, "maxResources"),
    ({"resources": {"requests": {"cpu": 16}}}, "maxResources"),
    ({"allow_online": True}, "allowOnline"),
    ({"model_args": {"pretrained": "Qwen/Qwen2-0.5B", "trust_remote_code": True}}, "allowTrustRemoteCode"),
    ({"model_args": {"trust_remote_code": "True"}}, "allowTrustRemoteCode"),
]


@pytest.mark.parametrize(("fields", "rule"), CASES)
def test_each_rule_refuses_by_default_and_allows_when_the_admin_says_so(fields: dict[str, Any], rule: str) -> None:
    assert rules(fields, DEFAULT) == [rule]
    assert rules(fields, OPEN) == []


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"image": EVALUATOR},
        {"num_gpus": 8},
        {"num_gpus": 0},
        {"allow_online": False},
        {"model_args": {"trust_remote_code": False}},
        {"model_args": {"trust_remote_code": "false"}},
        {"node_selector": {}, "tolerations": []},
    ],
)
def test_what_the_default_policy_lets_through(fields: dict[str, Any]) -> None:
    assert rules(fields, DEFAULT) == []


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("registry.example/teamx/eval:2", False),  # a prefix is a prefix of the whole name, not of a word
        ("repo/evaluatorx:1", False),
        ("exact/image:10", False),  # an exact name is exact
        ("repo/evaluator:", True),
        ("evil/miner:latest", False),
    ],
)
def test_image_prefixes_match_from_the_start_and_exact_names_exactly(image: str, allowed: bool) -> None:
    assert (rules({"image": image}, OPEN) == []) is allowed


def test_resources_above_the_admins_limit_or_not_listed_are_refused_with_the_field() -> None:
    found = violations(request(resources={"limits": {"memory": "65Gi", "ephemeral-storage": "1Gi"}}), OPEN)
    assert [(v.rule, v.field) for v in found] == [
        ("maxResources", ("resources", "limits", "memory")),
        ("maxResources", ("resources", "limits", "ephemeral-storage")),
    ]
    assert "64Gi" in found[0].message and "not be set" in found[1].message
    assert rules({"resources": {"limits": {"memory": "64Gi"}, "requests": {"cpu": "500m"}}}, OPEN) == []


def test_several_rules_broken_are_all_named_with_readable_messages() -> None:
    found = violations(request(image="evil/x", num_gpus=64, allow_online=True), DEFAULT)
    assert [(v.rule, v.field) for v in found] == [
        ("allowedImages", ("image",)),
        ("maxGpus", ("num_gpus",)),
        ("allowOnline", ("allow_online",)),
    ]
    assert str(found[0]) == f"policy rule allowedImages: image 'evil/x' is not allowed (allowed: ['{EVALUATOR}'])"
    assert "64 GPUs asked, at most 8" in found[1].message


TASK_WITH_FUNCTION = "task: mytask\nprocess_results: !function utils.process_results\ndataset_path: data\n"
TASK_PLAIN = "task: plain\ndataset_path: json\ndataset_kwargs:\n  data_files: {test: data.jsonl}\n"
TASK_DATASET_SCRIPT = "task: scripted\ndataset_path: loader\ndataset_kwargs:\n  trust_remote_code: true\n"


@pytest.mark.parametrize(
    ("files", "found"),
    [
        ({"plain.yaml": TASK_PLAIN, "data.jsonl": "{}"}, []),
        ({"t.yaml": TASK_WITH_FUNCTION}, [("t.yaml", "!function utils.process_results")]),
        ({"utils.py": "import os"}, [("utils.py", "a Python module")]),
        ({"s.yml": TASK_DATASET_SCRIPT}, [("s.yml", "dataset_kwargs.trust_remote_code")]),
        ({"broken.yaml": "task: [unclosed"}, []),  # not YAML: lmms-eval and the name checks refuse it
    ],
)
def test_custom_task_python_is_found(files: dict[str, str], found: list[tuple[str, str]]) -> None:
    assert task_code(files) == found


def test_custom_task_python_is_refused_unless_allowed() -> None:
    fields = {"custom_tasks": {"config_map": "my-tasks"}}
    files = {"t.yaml": TASK_WITH_FUNCTION, "utils.py": "x = 1"}
    found = violations(request(**fields), DEFAULT, task_files=files)
    assert {(v.rule, v.field) for v in found} == {("allowCustomTaskCode", ("custom_tasks", "config_map"))}
    assert "t.yaml: !function utils.process_results" in found[0].message
    assert rules(fields, DEFAULT, {"plain.yaml": TASK_PLAIN}) == []
    assert rules(fields, OPEN, files) == []


def test_the_setting_is_camel_case_json_and_its_absence_the_safe_default() -> None:
    assert parse_policy(None) == parse_policy("") == Policy()
    assert Policy().max_gpus == 8 and not Policy().allow_online and Policy().max_resources == {}
    parsed = parse_policy('{"allowedImages": ["a/*"], "maxGpus": 2, "maxResources": {"memory": "8Gi"}}')
    assert parsed.allowed_images == ["a/*"] and parsed.max_gpus == 2
    with pytest.raises(ValidationError, match="maxGpuz"):
        parse_policy('{"maxGpuz": 2}')  # a misspelt rule is an error, never silently the default
    with pytest.raises(ValidationError, match="not a Kubernetes quantity"):
        parse_policy('{"maxResources": {"memory": "lots"}}')
