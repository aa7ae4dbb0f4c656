"""The EvalJob CRD: its schema accepts what users write and rejects what would break a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evalkube import resource, validation

from crd_schema import ROOT, errors, load_crd, load_merge_crd, openapi_schema


def evaljob(**spec: object) -> dict:
    return {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {"name": "x"},
        "spec": {"model": "huggingface", "tasks": ["mme"], **spec},
    }


def test_names_match_the_code() -> None:
    crd = load_crd()
    assert crd["metadata"]["name"] == f"{resource.PLURAL}.{resource.GROUP}"
    assert crd["spec"]["group"] == resource.GROUP
    assert crd["spec"]["names"]["kind"] == resource.KIND
    assert crd["spec"]["names"]["shortNames"] == [resource.SHORT_NAME]
    assert crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert version["name"] == resource.VERSION
    assert version["subresources"] == {"status": {}}


def test_printer_columns_show_phase_model_tasks_and_age() -> None:
    columns = {
        column["name"]: column["jsonPath"] for column in load_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert columns["Phase"] == ".status.phase"
    assert columns["Model"] == ".spec.model"
    assert columns["Tasks"] == ".spec.tasks"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_phase_enum_is_the_code_phases() -> None:
    phases = openapi_schema()["properties"]["status"]["properties"]["phase"]["enum"]
    assert set(phases) == {resource.Phase.QUEUED, resource.Phase.RUNNING, *resource.Phase.FINISHED}


def test_token_pattern_is_the_shared_validation_rule() -> None:
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert spec["model"]["pattern"] == validation.SAFE_TOKEN_PATTERN
    assert spec["tasks"]["items"]["pattern"] == validation.SAFE_TOKEN_PATTERN


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"modelArgs": {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "max_pixels": 12845056, "use_flash": True}},
        {"batchSize": 8},
        {"batchSize": "auto:4"},
        {"limit": 0.5},
        {"limit": 100},
        {"numGpus": 0},
        {"numFewshot": 5, "genKwargs": "temperature=0,max_new_tokens=64", "logSamples": False, "predictOnly": True},
        {
            "priority": 10,
            "timeoutSeconds": 3600,
            "image": "eval:2",
            "resources": {"limits": {"memory": "64Gi", "cpu": 8}},
        },
        {
            "nodeSelector": {"pool": "h100"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
        {"customTasks": {"configMap": "my-tasks"}, "allowOnline": True, "cancelRequested": True},
    ],
)
def test_valid_specs_are_accepted(spec: dict) -> None:
    assert errors(evaljob(**spec)) == []


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        ({"apiVersion": "evalkube.dev/v1alpha1", "kind": "EvalJob", "metadata": {}}, ""),
        ({"spec": {"tasks": ["mme"]}}, "spec"),
        ({"spec": {"model": "hf"}}, "spec"),
        (evaljob(tasks=[]), "spec.tasks"),
        (evaljob(tasks=["mme,mmmu_val"]), "spec.tasks.0"),
        (evaljob(model="--tasks"), "spec.model"),
        (evaljob(numGpus=-1), "spec.numGpus"),
        (evaljob(limit=0), "spec.limit"),
        (evaljob(batchSize=1.5), "spec.batchSize"),
        (evaljob(numFewshot="five"), "spec.numFewshot"),
        (evaljob(timeoutSeconds=0), "spec.timeoutSeconds"),
        (evaljob(logSamples="yes"), "spec.logSamples"),
        (evaljob(customTasks={}), "spec.customTasks"),
    ],
)
def test_invalid_specs_are_rejected_naming_the_field(manifest: dict, field: str) -> None:
    found = errors(manifest)
    assert found, "expected a schema violation"
    assert any(error.startswith(field) for error in found), found


def test_merge_examples_are_valid_checkpointmerges() -> None:
    crd = load_merge_crd()
    assert crd["spec"]["names"]["shortNames"] == [resource.MERGE_SHORT_NAME]
    documents = [
        doc for path in sorted((ROOT / "examples").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
    ]
    merges = [doc for doc in documents if doc and doc.get("kind") == resource.MERGE_KIND]
    assert merges, "examples/ must show a CheckpointMerge"
    for document in merges:
        assert errors(document, crd) == []
    bad = {**merges[0], "spec": {"checkpointPath": "relative/path", "checkpointType": "fp8"}}
    assert {error.split(":")[0] for error in errors(bad, crd)} == {"spec.checkpointPath", "spec.checkpointType"}


def test_examples_are_valid_evaljobs() -> None:
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert examples, "examples/ must hold EvalJob manifests"
    for path in examples:
        for document in yaml.safe_load_all(Path(path).read_text()):
            if document and document.get("kind") == resource.KIND:
                assert errors(document) == [], path
