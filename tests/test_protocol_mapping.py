"""The wire protocol and the one mapping between REST requests, EvalJobs and JobInfo."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from evalkube import crdgen, mapping, resource
from evalkube.protocol import EvalJobSpec, EvaluateRequest, JobStatus

from crd_schema import openapi_schema


def full_request() -> EvaluateRequest:
    return EvaluateRequest(
        model="vllm",
        tasks=["mmmu_val", "mme"],
        model_args={"model": "/ckpt/step-100", "gpu_memory_utilization": 0.8},
        num_fewshot=2,
        batch_size="auto",
        device="cuda",
        limit=0.25,
        gen_kwargs="temperature=0,max_new_tokens=32",
        log_samples=False,
        predict_only=True,
        num_gpus=4,
        output_dir="runs/step-100",
        priority=5,
        timeout_seconds=3600,
        image="eval:2",
        resources={"limits": {"memory": "64Gi"}},
        node_selector={"pool": "h100"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        custom_tasks={"config_map": "my-tasks"},
        allow_online=True,
    )


def test_spec_names_are_the_protocol_names_in_camel_case() -> None:
    names = mapping.spec_names(EvaluateRequest)
    assert set(names) == set(EvaluateRequest.model_fields)
    assert names["model_args"] == "modelArgs" and names["num_gpus"] == "numGpus" and names["model"] == "model"


def test_every_protocol_field_is_in_the_crd() -> None:
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert set(spec) == set(mapping.spec_names(EvalJobSpec).values())
    assert set(spec["customTasks"]["properties"]) == {"configMap"}


def test_the_checked_in_crds_are_what_the_generator_writes() -> None:
    assert crdgen.main(["--check"]) == 0, "crds/ is stale: run `make crds`"


def test_a_stored_spec_parses_with_the_api_rules() -> None:
    spec = mapping.request_to_spec(full_request())
    parsed = mapping.parse_spec({**spec, "cancelRequested": True})
    assert parsed.custom_tasks is not None and parsed.custom_tasks.config_map == "my-tasks"
    assert parsed.cancel_requested is True
    with pytest.raises(ValidationError) as raised:
        mapping.parse_spec({**spec, "outputDir": "a/../../etc"})
    assert raised.value.errors()[0]["loc"] == ("output_dir",)


def test_request_round_trips_through_the_evaljob_spec() -> None:
    request = full_request()
    assert mapping.spec_to_request(mapping.request_to_spec(request)) == request


def test_spec_is_camel_case_and_model_args_keys_pass_untouched() -> None:
    spec = mapping.request_to_spec(full_request())
    assert spec["modelArgs"] == {"model": "/ckpt/step-100", "gpu_memory_utilization": 0.8}
    assert spec["numGpus"] == 4 and spec["timeoutSeconds"] == 3600
    assert spec["customTasks"] == {"configMap": "my-tasks"}


def test_unset_optional_fields_stay_out_of_the_spec() -> None:
    spec = mapping.request_to_spec(EvaluateRequest(model="hf", tasks=["mme"]))
    assert spec == {
        "model": "hf",
        "tasks": ["mme"],
        "logSamples": True,
        "predictOnly": False,
        "numGpus": 1,
        "priority": 0,
        "allowOnline": False,
    }


def test_upstream_defaults() -> None:
    request = EvaluateRequest(model="hf", tasks=["mme"])
    assert (request.log_samples, request.predict_only, request.num_gpus) == (True, False, 1)


def test_manifest_uses_generate_name_and_records_submission_time() -> None:
    manifest = mapping.evaljob_manifest(EvaluateRequest(model="hf", tasks=["mme"]), "research")
    assert manifest["apiVersion"] == "evalkube.dev/v1alpha1" and manifest["kind"] == "EvalJob"
    assert manifest["metadata"]["generateName"] == "eval-"
    assert manifest["metadata"]["namespace"] == "research"
    assert manifest["metadata"]["annotations"][resource.ANNOTATION_SUBMITTED_AT].endswith("Z")


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        (None, JobStatus.QUEUED),
        ("Queued", JobStatus.QUEUED),
        ("Running", JobStatus.RUNNING),
        ("Completed", JobStatus.COMPLETED),
        ("Failed", JobStatus.FAILED),
        ("Cancelled", JobStatus.CANCELLED),
    ],
)
def test_phase_maps_to_rest_status(phase: str | None, status: JobStatus) -> None:
    evaljob = {
        "metadata": {"name": "eval-x"},
        "spec": {"model": "hf", "tasks": ["t"]},
        "status": {"phase": phase} if phase else {},
    }
    assert mapping.job_status(evaljob) is status


def test_job_info_carries_the_metrics_and_times() -> None:
    evaljob = {
        "metadata": {"name": "eval-x", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"model": "hf", "tasks": ["mme"], "numGpus": 0},
        "status": {
            "phase": "Completed",
            "startedAt": "2026-01-01T00:01:00Z",
            "completedAt": "2026-01-01T00:02:00Z",
            "metrics": {"results": {"mme": {"exact_match,none": 0.5}}},
            "result": {
                "hf": {"results": "/shared/x/hf/t_results.json", "samples": ["/shared/x/hf/t_samples_mme.jsonl"]}
            },
        },
    }
    info = mapping.job_info(evaljob, position_in_queue=3)
    assert info.job_id == "eval-x"
    assert info.status is JobStatus.COMPLETED
    assert info.created_at == "2026-01-01T00:00:00Z"
    assert info.metrics == {"results": {"mme": {"exact_match,none": 0.5}}}
    assert info.result == {
        "hf": {"results": "/shared/x/hf/t_results.json", "samples": ["/shared/x/hf/t_samples_mme.jsonl"]}
    }
    assert info.request.num_gpus == 0 and info.request.log_samples is True
    assert info.position_in_queue is None  # only queued jobs have a position


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"tasks": []}, "tasks"),
        ({"tasks": ["mme,mmmu_val"]}, "tasks"),
        ({"tasks": ["--model_args"]}, "tasks"),
        ({"model": "hf\n--tasks x"}, "model"),
        ({"model_args": {"pretrained": "/m,device=cuda:1"}}, "model_args"),
        ({"model_args": {"a=b": 1}}, "model_args"),
        ({"model_args": {"nested": {"x": 1}}}, "model_args"),
        ({"gen_kwargs": "temperature"}, "gen_kwargs"),
        ({"gen_kwargs": "temperature=0\nmax_new_tokens=5"}, "gen_kwargs"),
        ({"gen_kwargs": "temperature=0,--max_new_tokens=5"}, "gen_kwargs"),
        ({"gen_kwargs": "stop=--x"}, "gen_kwargs"),
        ({"num_gpus": -1}, "num_gpus"),
        ({"limit": 0}, "limit"),
        ({"batch_size": 0}, "batch_size"),
        ({"output_dir": "/etc,x"}, "output_dir"),
        ({"output_dir": "../../x"}, "output_dir"),
        ({"num_gpu": 2}, "num_gpu"),
    ],
)
def test_bad_requests_name_the_field(fields: dict, location: str) -> None:
    with pytest.raises(ValidationError) as raised:
        EvaluateRequest(**{"model": "hf", "tasks": ["mme"], **fields})
    assert any(error["loc"][0] == location for error in raised.value.errors())
