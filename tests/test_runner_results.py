"""The runner's results handling: finding lmms-eval's file, plain JSON, completeness, ConfigMap data."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalkube import resource
from evalkube.results import ResultsTooLarge, encoded_size
from evalkube.runner.results import (
    BUDGET_BYTES,
    configmap_data,
    find_results_file,
    lmms_eval_result,
    load_results,
    missing_tasks,
    to_plain,
)


def document(**extra: Any) -> dict[str, Any]:
    """A results document shaped like lmms-eval 0.7.3's."""
    return {
        "results": {"mme": {"alias": "mme", "exact_match,none": 0.5, "exact_match_stderr,none": "N/A"}},
        "group_subtasks": {"mme": []},
        "configs": {"mme": {"task": "mme", "doc_to_text": "x" * 5000}},
        "versions": {"mme": 1.0},
        "n-shot": {"mme": 0},
        "higher_is_better": {"mme": {"exact_match": True}},
        "n-samples": {"mme": {"original": 10, "effective": 5}},
        "config": {"model": "huggingface", "model_args": "y" * 3000},
        "lmms_eval_version": "main@unknown",
        **extra,
    }


# -- plain JSON ------------------------------------------------------------------------------


def test_numpy_values_become_plain_numbers() -> None:
    plain = to_plain({"f": np.float32(0.5), "i": np.int64(7), "b": np.bool_(True), "a": np.array([[1, 2]]),
                      "nested": [np.float64(0.25), (np.int32(1),)]})  # fmt: skip
    assert plain == {"f": 0.5, "i": 7, "b": True, "a": [[1, 2]], "nested": [0.25, [1]]}
    assert [type(plain[k]) for k in ("f", "i", "b")] == [float, int, bool]


def test_nan_and_infinity_become_null() -> None:
    plain = to_plain({"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "np": np.float64("nan"), "ok": 1.5})
    assert plain == {"nan": None, "inf": None, "-inf": None, "np": None, "ok": 1.5}
    json.dumps(plain, allow_nan=False)


def test_other_values_become_strings_and_keys_strings() -> None:
    assert to_plain({1: {2, 3} - {3}, "p": Path("/x")}) == {"1": [2], "p": "/x"}


def test_a_results_file_with_bare_nan_tokens_loads_plain(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"results": {"t": {"acc,none": NaN, "acc_stderr,none": Infinity}}}')
    assert load_results(path) == {"results": {"t": {"acc,none": None, "acc_stderr,none": None}}}


def test_a_file_without_results_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"config": {}}')
    with pytest.raises(ValueError, match="results"):
        load_results(path)


# -- finding lmms-eval's file ----------------------------------------------------------------


def write(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_newest_results_file_of_the_output_layout_is_found(tmp_path: Path) -> None:
    older = write(tmp_path / "org__model" / "20260101_100000_results.json")
    newer = write(tmp_path / "org__model" / "20260101_100500_results.json")
    write(tmp_path / "org__model" / "20260101_100500_samples_mme.jsonl")
    os.utime(older, (2e9, 2e9))  # the timestamp in the name decides, not the mtime
    assert find_results_file(tmp_path) == newer


def test_files_of_an_earlier_attempt_are_not_taken_for_this_ones(tmp_path: Path) -> None:
    earlier = write(tmp_path / "m" / "20260101_100000_results.json")
    assert find_results_file(tmp_path, ignore={earlier}) is None
    current = write(tmp_path / "m" / "20260101_110000_results.json")
    assert find_results_file(tmp_path, ignore={earlier}) == current


def test_no_results_file_means_none(tmp_path: Path) -> None:
    write(tmp_path / "m" / "20260101_100000_samples_mme.jsonl")
    write(tmp_path / "20260101_100000_results.json")  # not where lmms-eval writes it
    assert find_results_file(tmp_path) is None
    assert find_results_file(tmp_path / "absent") is None


# -- every requested task has results --------------------------------------------------------


def test_requested_tasks_present_as_tasks_or_groups() -> None:
    doc = document(groups={"mmmu": {"acc,none": 0.3}}, group_subtasks={"mmmu": ["mmmu_val"], "mme": []})
    doc["results"]["mmmu_val"] = {"acc,none": 0.3}
    assert missing_tasks(doc, ["mme", "mmmu", "mmmu_val"]) == []


def test_a_tag_counts_through_its_tasks_configs() -> None:
    doc = document()
    doc["configs"]["mme"]["tag"] = "perception"
    doc["results"]["other"] = {}
    doc["configs"]["other"] = {"tag": ["suite_a", "suite_b"]}
    assert missing_tasks(doc, ["perception", "suite_b"]) == []


def test_a_wildcard_must_match_something() -> None:
    assert missing_tasks(document(), ["mm*"]) == []
    assert missing_tasks(document(), ["vqa*"]) == ["vqa*"]


def test_absent_tasks_are_named() -> None:
    assert missing_tasks(document(), ["mme", "mmmu_val", "docvqa"]) == ["mmmu_val", "docvqa"]


# -- the ConfigMap's data --------------------------------------------------------------------

ARTIFACTS = {
    "m": {"results": "/artifacts/ns/job/m/x_results.json", "samples": ["/artifacts/ns/job/m/x_samples_mme.jsonl"]}
}


def test_a_small_document_is_stored_whole_with_its_metadata() -> None:
    doc = document()
    data = configmap_data(doc, ARTIFACTS, "0.7.3")
    assert set(data) == {resource.RESULTS_KEY, resource.RESULTS_META_KEY}
    assert json.loads(data[resource.RESULTS_KEY]) == doc
    assert json.loads(data[resource.RESULTS_META_KEY]) == {
        "dropped": [],
        "result": ARTIFACTS,
        "lmmsEvalVersion": "0.7.3",
    }


def test_no_result_paths_without_a_volume_is_null() -> None:
    meta = json.loads(configmap_data(document(), None, "0.7.3")[resource.RESULTS_META_KEY])
    assert meta["result"] is None


def data_size(data: dict[str, str]) -> int:
    return sum(len(value.encode()) for value in data.values())


def test_bulky_keys_are_dropped_first_and_reported() -> None:
    doc = document()
    worst_meta = encoded_size({"dropped": list(doc), "result": None, "lmmsEvalVersion": "0.7.3"})
    budget = encoded_size(doc) + worst_meta - 1  # one byte short of the whole document
    data = configmap_data(doc, None, "0.7.3", budget=budget)
    meta = json.loads(data[resource.RESULTS_META_KEY])
    assert meta["dropped"] == ["configs"]
    assert json.loads(data[resource.RESULTS_KEY]) == {k: v for k, v in doc.items() if k != "configs"}
    assert data_size(data) <= budget


def test_results_survive_when_everything_else_must_go() -> None:
    doc = document()
    worst_meta = encoded_size({"dropped": list(doc), "result": None, "lmmsEvalVersion": "0.7.3"})
    budget = encoded_size({"results": doc["results"]}) + worst_meta
    data = configmap_data(doc, None, "0.7.3", budget=budget)
    assert json.loads(data[resource.RESULTS_KEY]) == {"results": doc["results"]}
    dropped = json.loads(data[resource.RESULTS_META_KEY])["dropped"]
    assert dropped[:2] == ["configs", "config"] and set(dropped) == set(doc) - {"results"}
    assert data_size(data) <= budget


def test_results_that_alone_exceed_the_budget_fail() -> None:
    doc = document()
    doc["results"] = {f"task_{i}": {"acc,none": 0.5, "alias": "a" * 100} for i in range(10_000)}
    assert encoded_size(doc["results"]) > BUDGET_BYTES
    with pytest.raises(ResultsTooLarge, match="metrics"):
        configmap_data(doc, None, "0.7.3")


def test_a_large_real_shaped_document_fits_under_the_budget() -> None:
    doc = document(configs={f"task_{i}": {"prompt": "p" * 2000} for i in range(600)})
    data = configmap_data(doc, ARTIFACTS, "0.7.3")
    assert data_size(data) <= BUDGET_BYTES < 1024 * 1024
    assert json.loads(data[resource.RESULTS_META_KEY])["dropped"] == ["configs"]


def test_lmms_eval_result_names_the_run_s_own_files(tmp_path) -> None:
    model_dir = tmp_path / "out" / "__m__"
    model_dir.mkdir(parents=True)
    for name in (
        "20260101_results.json",
        "20260101_samples_a.jsonl",
        "20260101_samples_b.jsonl",
        "20250101_samples_a.jsonl",
    ):
        (model_dir / name).write_text("{}")
    assert lmms_eval_result(model_dir / "20260101_results.json") == {
        "__m__": {
            "results": str(model_dir / "20260101_results.json"),
            "samples": [str(model_dir / "20260101_samples_a.jsonl"), str(model_dir / "20260101_samples_b.jsonl")],
        }
    }
