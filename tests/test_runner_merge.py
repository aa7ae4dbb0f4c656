"""Merging sharded training checkpoints (`evalkube.runner.merge`, `evalkube-runner merge`).

The checkpoints are real: a 2-rank FSDP2 job on CPU (gloo) saved the tiny model as lmms-engine's
trainer does, once as per-rank torch.save shards and once as DCP (tests/checkpoint_fixtures.py).
A merge must give back the original weights in bf16 bit for bit, load with transformers, and
evaluate as the original model does; every user mistake must come out as its HTTP class, both as
an exception and as the command's exit code and termination log.
"""

from __future__ import annotations

import json
import resource as resource_limits
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from evalkube import resource
from evalkube.runner.merge import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    CheckpointNotFound,
    InvalidCheckpoint,
    MergeError,
    merge_checkpoint,
    resolve_checkpoint,
)

from checkpoint_fixtures import MESHES, SHARD_DIRS, expected_state_dict, make_checkpoints
from evaluator_fixtures import METRIC_KEY, TASK_NAME
from test_runner_e2e import Job, tasks_dir  # noqa: F401  (tasks_dir: the e2e module's fixture, reused)

RUNNER = str(Path(sys.executable).with_name("evalkube-runner"))
TIED = "lm_head.weight"  # the tiny model ties it to model.embed_tokens.weight


@pytest.fixture(scope="module")
def checkpoints(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every format's checkpoint, from one real 2-rank job made once (~5 s)."""
    return make_checkpoints(tiny_model, tmp_path_factory.mktemp("checkpoints"), tuple(MESHES))


@pytest.fixture
def fsdp2_checkpoint(checkpoints: dict[str, Path]) -> Path:
    return checkpoints["fsdp2"]


@pytest.fixture
def dcp_checkpoint(checkpoints: dict[str, Path]) -> Path:
    return checkpoints["dcp"]


@pytest.fixture(scope="module")
def expected(tiny_model: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {kind: expected_state_dict(tiny_model, kind) for kind in SHARD_DIRS}


@pytest.fixture
def copy(tmp_path: Path) -> Callable[..., Path]:
    """A private copy of a checkpoint (or parent), for a test that merges into it or breaks it."""

    def make(source: Path, name: str | None = None) -> Path:
        return Path(shutil.copytree(source, tmp_path / (name or source.name)))

    return make


def assert_merged(folder: Path, expected: dict[str, torch.Tensor]) -> None:
    """The merged folder's safetensors are exactly the expected bf16 tensors (tied ones once)."""
    merged = {}
    for file in folder.glob("*.safetensors"):
        merged.update(load_file(file))
    assert set(merged) == set(expected) - {TIED}
    for key, tensor in merged.items():
        assert tensor.dtype == torch.bfloat16, key
        assert torch.equal(tensor, expected[key]), key


def merge_command(*args: str, termination_log: Path, **options: Any) -> subprocess.CompletedProcess[str]:
    argv = [RUNNER, "merge", *args, "--termination-log", str(termination_log)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **options)


@pytest.mark.parametrize("checkpoint_type", ["regular", "ema"])
def test_an_fsdp2_checkpoint_merges_to_the_original_weights_in_bf16(
    fsdp2_checkpoint: Path, expected: dict[str, dict[str, torch.Tensor]], tmp_path: Path, checkpoint_type: str
) -> None:
    outcome = merge_checkpoint(fsdp2_checkpoint, tmp_path / "merged", checkpoint_type)
    assert (outcome.merged_path, outcome.checkpoint) == (tmp_path / "merged", fsdp2_checkpoint)
    assert (outcome.format, outcome.world_size, outcome.tensors) == ("fsdp2", 2, len(expected[checkpoint_type]))
    assert_merged(outcome.merged_path, expected[checkpoint_type])
    config = json.loads((outcome.merged_path / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["architectures"] == ["Qwen2ForCausalLM"]


@pytest.mark.parametrize("layout", ["hsdp_1x2", "hsdp_2x1"])
def test_a_checkpoint_sharded_over_a_2d_mesh_merges_exactly(
    checkpoints: dict[str, Path], expected: dict[str, dict[str, torch.Tensor]], tmp_path: Path, layout: str
) -> None:
    """HSDP: every DTensor has a (Replicate, Shard(0)) placement on a (replicate, shard) mesh."""
    shard = torch.load(
        checkpoints[layout] / SHARD_DIRS["regular"] / "model_world_size_2_rank_1.pt", weights_only=False, mmap=True
    )["model.embed_tokens.weight"]
    assert len(shard.placements) == 2 and tuple(shard.device_mesh.shape) == MESHES[layout]
    outcome = merge_checkpoint(checkpoints[layout], tmp_path / "merged")
    assert (outcome.format, outcome.world_size) == ("fsdp2", 2)
    assert_merged(outcome.merged_path, expected["regular"])


def test_the_ema_copy_is_not_the_regular_one(expected: dict[str, dict[str, torch.Tensor]]) -> None:
    """Guards the EMA test above: it could not pass by merging the regular shards."""
    regular, ema = expected["regular"], expected["ema"]
    assert not any(torch.equal(regular[key], ema[key]) for key in regular)


@pytest.mark.parametrize("checkpoint_type", ["regular", "ema"])
def test_a_dcp_checkpoint_is_detected_and_merges_exactly(
    dcp_checkpoint: Path, expected: dict[str, dict[str, torch.Tensor]], tmp_path: Path, checkpoint_type: str
) -> None:
    assert (dcp_checkpoint / SHARD_DIRS[checkpoint_type] / ".metadata").is_file()
    outcome = merge_checkpoint(dcp_checkpoint, tmp_path / "merged", checkpoint_type)
    assert (outcome.format, outcome.world_size) == ("dcp", 2)
    assert_merged(outcome.merged_path, expected[checkpoint_type])


def test_a_dcp_checkpoint_at_the_checkpoint_root_is_the_regular_weights(
    dcp_checkpoint: Path, expected: dict[str, dict[str, torch.Tensor]], copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = copy(dcp_checkpoint / SHARD_DIRS["regular"], "root-dcp")
    for file in dcp_checkpoint.glob("*.json*"):
        shutil.copy2(file, root / file.name)
    outcome = merge_checkpoint(root, tmp_path / "merged")
    assert (outcome.format, outcome.checkpoint) == ("dcp", root)
    assert_merged(outcome.merged_path, expected["regular"])
    with pytest.raises(CheckpointNotFound, match="has no pytorch_ema_model_fsdp_0/ folder"):
        merge_checkpoint(root, tmp_path / "ema", "ema")


def test_the_merged_folder_loads_with_transformers(
    fsdp2_checkpoint: Path, expected: dict[str, dict[str, torch.Tensor]], tiny_model: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = merge_checkpoint(fsdp2_checkpoint, tmp_path / "merged").merged_path
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert model.dtype == torch.bfloat16
    state = model.state_dict()
    assert set(state) == set(expected["regular"])
    assert all(torch.equal(state[key], expected["regular"][key]) for key in state)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # re-tied
    tokenizer, original = AutoTokenizer.from_pretrained(merged), AutoTokenizer.from_pretrained(tiny_model)
    assert tokenizer.chat_template == original.chat_template
    assert tokenizer("What color is the sky?")["input_ids"] == original("What color is the sky?")["input_ids"]


def test_without_output_path_the_model_is_written_into_the_checkpoint(
    fsdp2_checkpoint: Path, expected: dict[str, dict[str, torch.Tensor]], copy: Callable[..., Path]
) -> None:
    checkpoint = copy(fsdp2_checkpoint)
    (checkpoint / "model-00002-of-00002.safetensors").write_bytes(b"a stale shard of an earlier merge")
    outcome = merge_checkpoint(checkpoint)
    assert outcome.merged_path == checkpoint
    assert_merged(checkpoint, expected["regular"])  # the stale shard is gone, or this would fail
    assert sorted(p.name for p in (checkpoint / SHARD_DIRS["regular"]).iterdir()) == [
        "model_world_size_2_rank_0.pt",
        "model_world_size_2_rank_1.pt",
    ]
    assert not list(checkpoint.glob(".evalkube-merge-*"))  # no staging folder left behind
    assert (checkpoint / "model.safetensors").stat().st_mode & 0o044 == 0o044  # readable by other pods' users


def test_a_parent_folder_resolves_to_its_highest_checkpoint(
    fsdp2_checkpoint: Path, expected: dict[str, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    parent = tmp_path / "run"
    latest = Path(shutil.copytree(fsdp2_checkpoint, parent / "checkpoint-100"))
    # checkpoint-20 sorts after checkpoint-100 as text; its "regular" shards are the EMA weights.
    older = Path(shutil.copytree(fsdp2_checkpoint, parent / "checkpoint-20"))
    shutil.rmtree(older / SHARD_DIRS["regular"])
    (older / SHARD_DIRS["ema"]).rename(older / SHARD_DIRS["regular"])
    (parent / "checkpoint-final").mkdir()
    (parent / "checkpoint-900").write_text("a file, not a checkpoint")

    assert resolve_checkpoint(parent, "regular") == latest
    assert resolve_checkpoint(latest, "regular") == latest
    outcome = merge_checkpoint(parent, tmp_path / "merged")
    assert outcome.checkpoint == latest
    assert_merged(outcome.merged_path, expected["regular"])
    # Unset output_path means the path as given, as lmms-engine's FSDP2Merger has it: the parent.
    assert merge_checkpoint(parent).merged_path == parent
    assert_merged(parent, expected["regular"])


def test_an_architecture_transformers_lacks_keeps_every_tensor(
    fsdp2_checkpoint: Path, expected: dict[str, dict[str, torch.Tensor]], copy: Callable[..., Path], tmp_path: Path
) -> None:
    checkpoint = copy(fsdp2_checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "architectures": ["EvalkubeCustomForCausalLM"]}))
    merged = merge_checkpoint(checkpoint, tmp_path / "merged").merged_path
    tensors = load_file(merged / "model.safetensors")
    assert set(tensors) == set(expected["regular"])  # tied ones too: nothing says which to drop
    assert all(torch.equal(tensors[key], expected["regular"][key]) for key in tensors)
    assert json.loads((merged / "config.json").read_text())["dtype"] == "bfloat16"


def test_weights_that_do_not_fit_the_configs_architecture_are_refused(
    fsdp2_checkpoint: Path, copy: Callable[..., Path], tmp_path: Path
) -> None:
    checkpoint = copy(fsdp2_checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(architectures=["LlamaForCausalLM"], model_type="llama")  # Llama: no q/k/v biases
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidCheckpoint, match=r"do not fit LlamaForCausalLM .*unexpected keys: .*self_attn\..*bias"):
        merge_checkpoint(checkpoint, tmp_path / "merged")
    assert not (tmp_path / "merged" / "model.safetensors").exists()


def test_a_dcp_checkpoint_missing_a_data_file_is_not_found(dcp_checkpoint: Path, copy: Callable[..., Path]) -> None:
    checkpoint = copy(dcp_checkpoint)
    (checkpoint / SHARD_DIRS["regular"] / "__1_0.distcp").unlink()
    with pytest.raises(CheckpointNotFound, match=r"lacks files its \.metadata names: __1_0\.distcp"):
        merge_checkpoint(checkpoint)


def test_error_classes_carry_their_http_status() -> None:
    assert (MergeError.http_status, CheckpointNotFound.http_status, InvalidCheckpoint.http_status) == (500, 404, 400)
    assert (CheckpointNotFound.exit_code, InvalidCheckpoint.exit_code) == (EXIT_NOT_FOUND, EXIT_INVALID) == (3, 4)


def test_the_merge_command_prints_and_records_its_outcome(fsdp2_checkpoint: Path, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    done = merge_command("--checkpoint-path", str(fsdp2_checkpoint), "--output-path", str(tmp_path / "m"),
                         "--checkpoint-type", "ema", termination_log=log)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert set(summary) == {"merged_path", "format", "world_size", "seconds"}
    assert (summary["merged_path"], summary["format"], summary["world_size"]) == (str(tmp_path / "m"), "fsdp2", 2)
    assert json.loads(log.read_text()) == summary
    assert (tmp_path / "m" / "model.safetensors").is_file()


def _missing_path(checkpoint: Path) -> tuple[list[str], str]:
    return ["--checkpoint-path", str(checkpoint / "nope")], f"checkpoint path {checkpoint / 'nope'} does not exist"


def _no_ema_folder(checkpoint: Path) -> tuple[list[str], str]:
    shutil.rmtree(checkpoint / SHARD_DIRS["ema"])
    args = ["--checkpoint-path", str(checkpoint), "--checkpoint-type", "ema"]
    return args, f"checkpoint {checkpoint} has no pytorch_ema_model_fsdp_0/ folder for checkpoint_type 'ema'"


def _missing_rank_file(checkpoint: Path) -> tuple[list[str], str]:
    (checkpoint / SHARD_DIRS["regular"] / "model_world_size_2_rank_1.pt").unlink()
    folder = checkpoint / SHARD_DIRS["regular"]
    return [
        "--checkpoint-path",
        str(checkpoint),
    ], f"{folder} lacks rank files of world size 2: model_world_size_2_rank_1.pt"


def _empty_shard_folder(checkpoint: Path) -> tuple[list[str], str]:
    for file in (checkpoint / SHARD_DIRS["regular"]).iterdir():
        file.unlink()
    return ["--checkpoint-path", str(checkpoint)], f"{checkpoint / SHARD_DIRS['regular']} holds no rank files"


def _parent_without_checkpoints(checkpoint: Path) -> tuple[list[str], str]:
    parent = checkpoint.parent / "run"
    (parent / "checkpoint-latest").mkdir(parents=True)
    return ["--checkpoint-path", str(parent)], f"{parent} is not a checkpoint: it holds no pytorch_model_fsdp_0/ folder"


def _misnamed_rank_file(checkpoint: Path) -> tuple[list[str], str]:
    folder = checkpoint / SHARD_DIRS["regular"]
    (folder / "model_world_size_2_rank_1.pt").rename(folder / "rank1.pt")
    return ["--checkpoint-path", str(checkpoint)], f"{folder / 'rank1.pt'} is not a rank file"


def _mixed_world_sizes(checkpoint: Path) -> tuple[list[str], str]:
    folder = checkpoint / SHARD_DIRS["regular"]
    (folder / "model_world_size_2_rank_1.pt").rename(folder / "model_world_size_4_rank_1.pt")
    return ["--checkpoint-path", str(checkpoint)], f"{folder} mixes rank files of world sizes [2, 4]"


def _corrupt_rank_file(checkpoint: Path) -> tuple[list[str], str]:
    file = checkpoint / SHARD_DIRS["regular"] / "model_world_size_2_rank_1.pt"
    file.write_bytes(file.read_bytes()[:1000])  # a copy cut short
    return ["--checkpoint-path", str(checkpoint)], f"{file} cannot be read as a torch.save state dict"


def _a_file(checkpoint: Path) -> tuple[list[str], str]:
    file = checkpoint / "config.json"
    return ["--checkpoint-path", str(file)], f"checkpoint path {file} is a file"


def _bad_type(checkpoint: Path) -> tuple[list[str], str]:
    args = ["--checkpoint-path", str(checkpoint), "--checkpoint-type", "best"]
    return args, "checkpoint_type must be one of regular, ema, not 'best'"


def _no_config(checkpoint: Path) -> tuple[list[str], str]:
    (checkpoint / "config.json").unlink()
    return ["--checkpoint-path", str(checkpoint)], f"checkpoint {checkpoint} has no config.json"


def _output_under_a_file(checkpoint: Path) -> tuple[list[str], str]:
    output = checkpoint / "config.json" / "merged"
    args = ["--checkpoint-path", str(checkpoint), "--output-path", str(output)]
    return args, f"cannot write the merged model to output_path {output}: {checkpoint / 'config.json'} is a file"


@pytest.mark.parametrize(
    ("break_it", "exit_code"),
    [
        (_missing_path, EXIT_NOT_FOUND),
        (_no_ema_folder, EXIT_NOT_FOUND),
        (_missing_rank_file, EXIT_NOT_FOUND),
        (_empty_shard_folder, EXIT_NOT_FOUND),
        (_parent_without_checkpoints, EXIT_INVALID),
        (_misnamed_rank_file, EXIT_INVALID),
        (_mixed_world_sizes, EXIT_INVALID),
        (_corrupt_rank_file, EXIT_INVALID),
        (_a_file, EXIT_INVALID),
        (_bad_type, EXIT_INVALID),
        (_no_config, EXIT_INVALID),
        (_output_under_a_file, EXIT_INVALID),
    ],
    ids=lambda case: case.__name__.strip("_") if callable(case) else str(case),
)
def test_each_mistake_exits_with_its_class_and_says_what_is_wrong(
    break_it: Callable[[Path], tuple[list[str], str]], exit_code: int, fsdp2_checkpoint: Path,
    copy: Callable[..., Path], tmp_path: Path,
) -> None:  # fmt: skip
    args, message = break_it(copy(fsdp2_checkpoint))
    log = tmp_path / "termination-log"
    done = merge_command(*args, termination_log=log)
    assert done.returncode == exit_code, done.stderr
    assert log.read_text().startswith(message)
    assert f"evalkube-runner merge: {message}" in done.stderr
    assert done.stdout == ""


def test_a_failure_of_the_environment_exits_1_with_the_error(fsdp2_checkpoint: Path, tmp_path: Path) -> None:
    """Not the user's mistake (here: the pod may write no file over 64 KiB, as on a full disk), so a 500."""

    def small_files_only() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource_limits.setrlimit(resource_limits.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    log = tmp_path / "termination-log"
    args = ["--checkpoint-path", str(fsdp2_checkpoint), "--output-path", str(tmp_path / "m")]
    done = merge_command(*args, termination_log=log, preexec_fn=small_files_only)
    assert done.returncode == EXIT_FAILED, done.stderr
    assert log.read_text().startswith("merge failed: ")
    assert "File too large" in log.read_text()
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_a_dcp_state_dict_nested_under_model_is_unwrapped(
    tiny_model: Path, expected: dict[str, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    """accelerate and others save {"model": ..., "optimizer": ...}: only the model's tensors are merged."""
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForCausalLM

    checkpoint = tmp_path / "checkpoint-7"
    state = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled ... single process"
        dcp.save(
            {"model": state, "step": torch.tensor(7)}, checkpoint_id=checkpoint / SHARD_DIRS["regular"], no_dist=True
        )
    for file in tiny_model.glob("*.json*"):
        shutil.copy2(file, checkpoint / file.name)
    outcome = merge_checkpoint(tmp_path, tmp_path / "merged")
    assert (outcome.checkpoint, outcome.format, outcome.world_size) == (checkpoint, "dcp", 1)
    assert_merged(outcome.merged_path, expected["regular"])


@pytest.mark.heavy
def test_the_merged_checkpoint_evaluates_as_the_original_model(
    fsdp2_checkpoint: Path, cluster: Any, kubeconfigs: dict[str, str], tmp_path: Path, hf_home: Path,
    tasks_dir: Path,  # noqa: F811  (the fixture imported above)
) -> None:  # fmt: skip
    """The e2e runner test's evaluation (real lmms-eval through `evalkube-runner run`), on the merge."""
    merged = merge_checkpoint(fsdp2_checkpoint, tmp_path / "merged").merged_path
    spec = {"modelArgs": {"pretrained": str(merged)}}
    evaljob = Job(cluster, kubeconfigs["evaluator"], tmp_path, hf_home, tasks_dir, spec)
    done = evaljob.run()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    document = json.loads(evaljob.result().data[resource.RESULTS_KEY])
    assert document["results"][TASK_NAME][METRIC_KEY] == 1.0  # the original model's score
