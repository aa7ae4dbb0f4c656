"""REAL sharded training checkpoints of the tiny test model, made the way training frameworks make them.

A 2-rank job runs on CPU with the gloo backend (torch.multiprocessing spawn, a file rendezvous so
no port can clash), wraps the model with FSDP2's `fully_shard` as lmms-engine's trainer does (each
decoder layer, then the root), and saves what lmms-engine's `save_checkpoints` saves:

    <output_dir>/checkpoint-<step>/
      pytorch_model_fsdp_0/model_world_size_<W>_rank_<R>.pt      torch.save(model.state_dict()): DTensor shards
      pytorch_ema_model_fsdp_0/model_world_size_<W>_rank_<R>.pt  the EMA copy (different weights)
      config.json, tokenizer files                               "rank 0", as save_pretrained writes them

With `dcp=True` the two shard folders hold torch.distributed.checkpoint (DCP) checkpoints instead
(`.metadata` plus `__<rank>_0.distcp`), the layout accelerate's FSDP SHARDED_STATE_DICT writes.

The EMA weights are the model's passed through `ema_transform`, elementwise, so that the expected
merged tensors can be computed from the original model alone (`expected_state_dict`), never from the
merger under test.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

#: The shard folder of each checkpoint type, as lmms-engine names them.
SHARD_DIRS = {"regular": "pytorch_model_fsdp_0", "ema": "pytorch_ema_model_fsdp_0"}


def ema_transform(value: torch.Tensor) -> torch.Tensor:
    """The EMA copy's weights: a deterministic elementwise change, so a shard-wise result is the
    full tensor's result and every tensor differs from the regular weights."""
    return value * 0.5 + 0.125


def _worker(rank: int, world_size: int, rendezvous: str, model_dir: str, checkpoints: dict[str, str]) -> None:
    """One rank of the training job: shard, take the state dict of DTensors, save this rank's part
    in each format asked for ({"fsdp2" | "dcp": checkpoint folder})."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp_api
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        mesh = init_device_mesh("cpu", (world_size,))
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        states = {"regular": model.state_dict()}
        states["ema"] = {key: ema_transform(value.detach()) for key, value in states["regular"].items()}
        for fmt, checkpoint in checkpoints.items():
            for kind, state in states.items():
                folder = Path(checkpoint) / SHARD_DIRS[kind]
                if fmt == "dcp":
                    dcp_api.save(state, checkpoint_id=folder)
                else:
                    folder.mkdir(parents=True, exist_ok=True)
                    torch.save(state, folder / f"model_world_size_{world_size}_rank_{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _train_and_save(model_dir: Path, checkpoints: dict[str, Path], world_size: int, ema: bool) -> None:
    """One real `world_size`-rank job writing each checkpoint, plus what rank 0 adds with
    save_pretrained: the config and the tokenizer files, never the weights."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as scratch:
        mp.spawn(
            _worker,
            args=(
                world_size,
                str(Path(scratch) / "rendezvous"),
                str(model_dir),
                {k: str(v) for k, v in checkpoints.items()},
            ),
            nprocs=world_size,
        )
    for checkpoint in checkpoints.values():
        if not ema:
            shutil.rmtree(checkpoint / SHARD_DIRS["ema"])
        for file in model_dir.iterdir():
            if file.is_file() and not file.name.endswith(".safetensors"):
                shutil.copy2(file, checkpoint / file.name)


def make_fsdp2_checkpoint(
    model_dir: Path, output_dir: Path, step: int = 100, world_size: int = 2, ema: bool = True, dcp: bool = False
) -> Path:
    """Checkpoint `model_dir` (a save_pretrained folder) from a real `world_size`-rank FSDP2 job on
    CPU as `<output_dir>/checkpoint-<step>` (DCP shard folders with `dcp`); returns that folder."""
    checkpoint = output_dir / f"checkpoint-{step}"
    _train_and_save(model_dir, {"dcp" if dcp else "fsdp2": checkpoint}, world_size, ema)
    return checkpoint


def make_both_checkpoints(model_dir: Path, output_dir: Path, step: int = 100, world_size: int = 2) -> tuple[Path, Path]:
    """`make_fsdp2_checkpoint` in both formats from ONE job (half the time): the torch.save one at
    `<output_dir>/fsdp2/checkpoint-<step>`, the DCP one at `<output_dir>/dcp/checkpoint-<step>`."""
    checkpoints = {fmt: output_dir / fmt / f"checkpoint-{step}" for fmt in ("fsdp2", "dcp")}
    _train_and_save(model_dir, checkpoints, world_size, ema=True)
    return checkpoints["fsdp2"], checkpoints["dcp"]


def expected_state_dict(model_dir: Path, checkpoint_type: str = "regular") -> dict[str, torch.Tensor]:
    """What a correct merge of a checkpoint of `model_dir` holds: the original weights (EMA:
    through `ema_transform`) cast to bf16, keyed as the model's state_dict (tied keys included)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    state = model.state_dict()
    if checkpoint_type == "ema":
        state = {key: ema_transform(value) for key, value in state.items()}
    return {key: value.to(torch.bfloat16) for key, value in state.items()}
