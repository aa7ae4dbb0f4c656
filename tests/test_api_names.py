"""Name checks of a request against the catalog, and the names custom task YAML defines."""

from __future__ import annotations

import json

import pytest

from evalkube.api.catalog import Catalog
from evalkube.api.custom_tasks import defined_names
from evalkube.protocol import EvaluateRequest

CATALOG = Catalog(tasks=["mmmu_val", "mmmu_test", "mme", "gsm8k"], models=["huggingface", "vllm", "qwen2_5_vl"])


def problems(
    model: str, tasks: list[str], also: frozenset[str] = frozenset()
) -> list[tuple[tuple[str | int, ...], str]]:
    return CATALOG.unknown_names(EvaluateRequest(model=model, tasks=tasks), also_tasks=also)


def test_known_names_pass() -> None:
    assert problems("vllm", ["mme", "gsm8k"]) == []


def test_unknown_names_are_located_and_come_with_close_matches() -> None:
    assert problems("hugginface", ["mme", "mmmu_vall", "mmmu", "zzz"]) == [
        (("model",), "model: unknown model 'hugginface'; did you mean 'huggingface'?"),
        (("tasks", 1), "tasks[1]: unknown task 'mmmu_vall'; did you mean 'mmmu_val'?"),
        (("tasks", 2), "tasks[2]: unknown task 'mmmu'; did you mean 'mmmu_val' or 'mmmu_test'?"),
        (("tasks", 3), "tasks[3]: unknown task 'zzz' (GET /tasks lists the 4 known)"),
    ]


def test_tasks_defined_by_the_request_itself_are_known() -> None:
    assert problems("vllm", ["my_task"], also={"my_task"}) == []


def test_catalog_json_is_read_and_checked() -> None:
    text = json.dumps({"tasks": ["a"], "models": ["m"], "lmmsEvalVersion": "0.7.3", "generatedAt": "now"})
    assert Catalog.parse(text) == Catalog(tasks=["a"], models=["m"], lmms_eval_version="0.7.3", generated_at="now")
    with pytest.raises(ValueError, match="'models' is not a list of names"):
        Catalog.parse(json.dumps({"tasks": ["a"], "models": [1]}))


TASK_YAML = """\
task: tinyqa
dataset_path: json
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
"""
GROUP_YAML = """\
group: tiny_suite
task: [tinyqa, tinyqa_hard]
"""
TAGGED_YAML = """\
task: tinyqa_hard
tag: [tiny_tag, other_tag]
"""


def test_custom_task_yaml_defines_task_group_and_tag_names() -> None:
    data = {
        "tinyqa.yaml": TASK_YAML,
        "suite.yml": GROUP_YAML,
        "hard.yaml": TAGGED_YAML,
        "tinyqa.jsonl": '{"task": "not a definition"}',
        "utils.py": "def process_results(doc, results): ...",
    }
    assert defined_names(data) == {"tinyqa", "tinyqa_hard", "tiny_suite", "tiny_tag", "other_tag"}


def test_custom_task_yaml_that_is_not_yaml_is_named() -> None:
    with pytest.raises(ValueError, match="'broken.yaml' is not valid YAML"):
        defined_names({"broken.yaml": "task: [unclosed"})
