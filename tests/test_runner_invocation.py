"""The runner's EvalJob spec -> lmms-eval command line: safe, exact, and as lmms-eval reads it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from evalkube.runner.invocation import (
    LAUNCHER_MODULE,
    EvalSpec,
    InvalidSpec,
    build_argv,
    child_env,
    format_model_args,
    parse_spec,
)

OUT = Path("/artifacts/ns/job")
BASE = {"model": "huggingface", "tasks": ["mme"]}


def spec(**fields: Any) -> EvalSpec:
    return parse_spec({**BASE, **fields})


def lmms_args(argv: list[str]) -> list[str]:
    """The arguments after the launcher module."""
    return argv[argv.index(LAUNCHER_MODULE) + 1 :]


# -- parsing ---------------------------------------------------------------------------------


def test_defaults_follow_lmms_eval_servers_request() -> None:
    parsed = parse_spec(BASE)
    assert parsed == EvalSpec(model="huggingface", tasks=["mme"])
    assert (parsed.log_samples, parsed.predict_only, parsed.num_gpus) == (True, False, 1)


def test_kubernetes_only_fields_do_not_reach_the_command_line(tmp_path: Path) -> None:
    parsed = spec(priority=5, timeoutSeconds=60, image="x", resources={"limits": {"cpu": "1"}},
                  nodeSelector={"a": "b"}, tolerations=[], customTasks={"configMap": "t"},
                  allowOnline=True, cancelRequested=False)  # fmt: skip
    plain = EvalSpec(model="huggingface", tasks=["mme"])
    assert build_argv(parsed, tmp_path) == build_argv(plain, tmp_path)


HOSTILE = ["a,b", "a=b", "a\nb", "a\x00b", "--flag"]
# Where each free-text field sits in a spec, and the field name the error must carry.
PLACES = {
    "model": (lambda v: {"model": v}, "model"),
    "tasks": (lambda v: {"tasks": ["mme", v]}, "tasks[1]"),
    "device": (lambda v: {"device": v}, "device"),
    "batchSize": (lambda v: {"batchSize": v}, "batchSize"),
    "modelArgs key": (lambda v: {"modelArgs": {v: "1"}}, "modelArgs"),
    "modelArgs value": (lambda v: {"modelArgs": {"pretrained": v}}, "modelArgs.pretrained"),
    "genKwargs value": (lambda v: {"genKwargs": f"max_new_tokens=8,temperature={v}"}, "genKwargs"),
    "genKwargs key": (lambda v: {"genKwargs": f"max_new_tokens=8,{v}=1"}, "genKwargs"),
    "outputDir": (lambda v: {"outputDir": v}, "outputDir"),
}


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
@pytest.mark.parametrize("place", PLACES)
def test_hostile_free_text_is_rejected_naming_the_field(place: str, value: str) -> None:
    build, field = PLACES[place]
    with pytest.raises(InvalidSpec) as error:
        parse_spec({**BASE, **build(value)})
    assert field in str(error.value)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"modelArgs": ["pretrained=x"]}, "modelArgs"),
        ({"modelArgs": "pretrained=x"}, "modelArgs"),
        ({"modelArgs": {"pretrained": {"nested": 1}}}, "modelArgs.pretrained"),
        ({"modelArgs": {"pretrained": [1, 2]}}, "modelArgs.pretrained"),
        ({"genKwargs": "temperature"}, "genKwargs"),
        ({"genKwargs": "=0"}, "genKwargs"),
        ({"genKwargs": "a=1,,b=2"}, "genKwargs"),
        ({"genKwargs": "a=1=2"}, "genKwargs"),
        ({"genKwargs": {"temperature": 0}}, "genKwargs"),
        ({"tasks": []}, "tasks"),
        ({"tasks": "mme"}, "tasks"),
        ({"tasks": [1]}, "tasks"),
        ({"tasks": [""]}, "tasks[0]"),
        ({"model": None}, "model"),
        ({"model": 3}, "model"),
        ({"numFewshot": -1}, "numFewshot"),
        ({"numFewshot": True}, "numFewshot"),
        ({"numFewshot": 1.5}, "numFewshot"),
        ({"batchSize": 0}, "batchSize"),
        ({"batchSize": 2.5}, "batchSize"),
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"limit": True}, "limit"),
        ({"numGpus": -1}, "numGpus"),
        ({"numGpus": "2"}, "numGpus"),
        ({"logSamples": "yes"}, "logSamples"),
        ({"predictOnly": 1}, "predictOnly"),
        ({"device": 0}, "device"),
        ({"outputDir": "/abs/../path"}, "outputDir"),
        ({"outputDir": "runs/../../escape"}, "outputDir"),
        ({"outputDir": ""}, "outputDir"),
    ],
    ids=repr,
)
def test_malformed_fields_are_rejected_naming_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as error:
        parse_spec({**BASE, **fields})
    assert str(error.value).startswith(field)


def test_a_spec_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidSpec, match="spec"):
        parse_spec(["huggingface"])


# -- the command line ------------------------------------------------------------------------


def test_full_single_process_command_line() -> None:
    parsed = spec(
        tasks=["mme", "mmmu_val"], modelArgs={"pretrained": "Qwen/Qwen2-VL-2B", "max_pixels": 12845056},
        numFewshot=2, batchSize="auto", device="cuda:0", limit=0.5, genKwargs="max_new_tokens=16,temperature=0",
        logSamples=True, predictOnly=True,
    )  # fmt: skip
    argv = build_argv(parsed, OUT, include_path=Path("/tasks"), python="/py")
    assert argv == [
        "/py", "-m", LAUNCHER_MODULE,
        "--model=huggingface", "--tasks=mme,mmmu_val", "--output_path=/artifacts/ns/job",
        "--model_args=pretrained=Qwen/Qwen2-VL-2B,max_pixels=12845056", "--include_path=/tasks",
        "--device=cuda:0", "--num_fewshot=2", "--batch_size=auto", "--limit=0.5",
        "--gen_kwargs=max_new_tokens=16,temperature=0", "--log_samples", "--predict_only",
    ]  # fmt: skip


def test_optional_flags_are_left_out_when_unset() -> None:
    argv = build_argv(spec(logSamples=False), OUT, python="/py")
    assert lmms_args(argv) == ["--model=huggingface", "--tasks=mme", "--output_path=/artifacts/ns/job"]


def test_every_value_travels_inside_its_own_option() -> None:
    """`--name=value` in one argv element: no value can ever be read as an option."""
    argv = build_argv(spec(device="cuda:0", batchSize=4, modelArgs={"a": 1}), OUT, Path("/t"))
    assert all(arg.startswith("--") for arg in lmms_args(argv))


def test_model_args_render_as_lmms_eval_parses_them() -> None:
    from lmms_eval.utils import simple_parse_args_string

    args = {"pretrained": "org/model", "trust_remote_code": True, "use_cache": False, "max_pixels": 1024,
            "temperature": 0.25, "attn_implementation": None}  # fmt: skip
    text = format_model_args(args)
    assert text == "pretrained=org/model,trust_remote_code=True,use_cache=False,max_pixels=1024,temperature=0.25"
    assert simple_parse_args_string(text) == {k: v for k, v in args.items() if v is not None}


def test_cpu_only_defaults_device_and_hf_device_map() -> None:
    argv = build_argv(spec(numGpus=0, modelArgs={"pretrained": "/m"}), OUT)
    assert "--device=cpu" in argv
    assert "--model_args=pretrained=/m,device_map=cpu" in argv


def test_cpu_only_keeps_what_the_spec_sets() -> None:
    argv = build_argv(spec(numGpus=0, device="cpu:0", modelArgs={"device_map": "sequential"}), OUT)
    assert "--device=cpu:0" in argv and "--model_args=device_map=sequential" in argv


def test_device_map_default_is_for_the_huggingface_backend_only() -> None:
    argv = build_argv(spec(model="openai", numGpus=0, modelArgs={"model": "gpt"}), OUT)
    assert "--model_args=model=gpt" in argv


def test_several_gpus_for_an_hf_style_backend_launch_one_rank_per_gpu() -> None:
    argv = build_argv(spec(model="qwen2_5_vl", numGpus=4), OUT, python="/py")
    assert argv[: argv.index(LAUNCHER_MODULE) + 1] == [
        "/py", "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=4", "--num_machines=1",
        "--main_process_port=29500", "-m", LAUNCHER_MODULE,
    ]  # fmt: skip
    assert "--model=qwen2_5_vl" in argv


def test_accelerate_reads_the_multi_gpu_command() -> None:
    from accelerate.commands.launch import launch_command_parser

    argv = build_argv(spec(model="qwen2_5_vl", numGpus=2, modelArgs={"pretrained": "/m"}), OUT)
    args = launch_command_parser().parse_args(argv[argv.index("accelerate.commands.launch") + 1 :])
    assert (args.multi_gpu, args.num_processes, args.num_machines, args.module) == (True, 2, 1, True)
    assert args.training_script == LAUNCHER_MODULE
    assert args.training_script_args == lmms_args(argv)


@pytest.mark.heavy
def test_lmms_eval_reads_the_command_line_as_meant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through lmms-eval's own argument parser (importing it takes ~5 s)."""
    from lmms_eval.__main__ import parse_eval_args

    parsed = spec(tasks=["mme", "mmmu_val"], modelArgs={"pretrained": "/m"}, numFewshot=2, batchSize=4,
                  device="cuda:0", limit=0.5, genKwargs="max_new_tokens=16", predictOnly=True)  # fmt: skip
    argv = build_argv(parsed, OUT, include_path=Path("/tasks"))
    monkeypatch.setattr(sys, "argv", ["lmms-eval", *lmms_args(argv)])
    _, args = parse_eval_args()
    assert (args.model, args.tasks, args.model_args, args.output_path, args.include_path) == (
        "huggingface", "mme,mmmu_val", "pretrained=/m", str(OUT), "/tasks",
    )  # fmt: skip
    assert (args.num_fewshot, args.batch_size, args.device, args.limit, args.gen_kwargs) == (
        2, "4", "cuda:0", 0.5, "max_new_tokens=16",
    )  # fmt: skip
    assert args.log_samples and args.predict_only


@pytest.mark.parametrize("backend", ["vllm", "vllm_generate"])
def test_several_gpus_for_vllm_mean_tensor_parallelism_in_one_process(backend: str) -> None:
    argv = build_argv(spec(model=backend, numGpus=2, modelArgs={"model": "/m"}), OUT, python="/py")
    assert argv[:3] == ["/py", "-m", LAUNCHER_MODULE]
    assert "--model_args=model=/m,tensor_parallel_size=2" in argv


def test_vllm_keeps_an_explicit_tensor_parallel_size() -> None:
    argv = build_argv(spec(model="vllm", numGpus=4, modelArgs={"tensor_parallel_size": 2}), OUT)
    assert "--model_args=tensor_parallel_size=2" in argv


def test_one_gpu_is_one_plain_process() -> None:
    argv = build_argv(spec(numGpus=1), OUT, python="/py")
    assert argv[:3] == ["/py", "-m", LAUNCHER_MODULE] and "accelerate.commands.launch" not in argv


def test_the_launcher_defaults_to_this_interpreter() -> None:
    assert build_argv(spec(), OUT)[0] == sys.executable


# -- the environment -------------------------------------------------------------------------

LAUNCHER_ENV = {
    "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "10.0.0.1",
    "MASTER_PORT": "29400", "GROUP_RANK": "0", "ROLE_RANK": "3", "TORCHELASTIC_RUN_ID": "x",
    "SLURM_PROCID": "3", "SLURM_NTASKS": "8", "OMPI_COMM_WORLD_RANK": "3", "PMI_RANK": "3", "PMIX_RANK": "3",
}  # fmt: skip
KEPT_ENV = {"PATH": "/usr/bin", "HF_HOME": "/cache/huggingface", "CUDA_VISIBLE_DEVICES": "0,1", "HF_TOKEN": "t"}


def test_distributed_launcher_variables_are_scrubbed() -> None:
    env = child_env({**LAUNCHER_ENV, **KEPT_ENV}, allow_online=True)
    assert env == {**KEPT_ENV, "PYTHONUNBUFFERED": "1"}


def test_offline_is_forced_unless_allowed() -> None:
    env = child_env({**KEPT_ENV, "HF_HUB_OFFLINE": "0"}, allow_online=False)
    assert {k: env[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")} == dict.fromkeys(
        ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"), "1"
    )


def test_allowing_online_keeps_an_explicit_offline_setting() -> None:
    env = child_env({**KEPT_ENV, "HF_HUB_OFFLINE": "1"}, allow_online=True)
    assert env["HF_HUB_OFFLINE"] == "1" and "TRANSFORMERS_OFFLINE" not in env


def test_child_output_is_unbuffered() -> None:
    assert child_env({"PYTHONUNBUFFERED": "0"}, allow_online=False)["PYTHONUNBUFFERED"] == "1"
