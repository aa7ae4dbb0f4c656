"""REAL sharded training checkpoints of the tiny test model, made the way training frameworks make them.

A 2-rank job runs on CPU with the gloo backend (torch.multiprocessing spawn, a file rendezvous so
no port can clash), wraps the model with FSDP2's `fully_shard` as lmms-engine's trainer does (each
decoder layer, then the root), and saves what lmms-engine's `save_checkpoints` saves:

    <output_dir>/checkpoint-<step>/
      pytorch_model_fsdp_0/model_world_size_<W>_rank_<R>.pt      torch.save(model.state_dict()): DTensor shards
      pytorch_ema_model_fsdp_0/model_world_size_<W>_rank_<R>.pt  the EMA copy (different weights)
      config.json, tokenizer files                               "rank 0", as save_pretrained writes them

Formats (`make_checkpoints`): "fsdp2" is the above, on a 1-D mesh of all ranks; "dcp" holds
torch.distributed.checkpoint (DCP) folders instead (`.metadata` plus `__<rank>_0.distcp`), the
layout accelerate's FSDP SHARDED_STATE_DICT writes; "hsdp_1x2" and "hsdp_2x1" are the torch.save
layout of a model sharded over a 2-D (replicate, shard) mesh of that shape (HSDP), whose DTensors
carry two placements each.

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
#: Each format's device mesh for a 2-rank job (None: one dimension over all ranks).
MESHES: dict[str, tuple[int, int] | None] = {"fsdp2": None, "dcp": None, "hsdp_1x2": (1, 2), "hsdp_2x1": (2, 1)}


def ema_transform(value: torch.Tensor) -> torch.Tensor:
    """The EMA copy's weights: a deterministic elementwise change, so a shard-wise result is the
    full tensor's result and every tensor differs from the regular weights."""
    return value * 0.5 + 0.125


def _sharded_states(model_dir: str, mesh_shape: tuple[int, ...]) -> dict[str, dict[str, torch.Tensor]]:
    """The regular and EMA state dicts (DTensors) of the model sharded over a mesh of that shape."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM

    names = ("replicate", "shard") if len(mesh_shape) == 2 else None
    mesh = init_device_mesh("cpu", mesh_shape, mesh_dim_names=names)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    regular = model.state_dict()
    return {"regular": regular, "ema": {key: ema_transform(value.detach()) for key, value in regular.items()}}


def _worker(rank: int, world_size: int, rendezvous: str, model_dir: str, checkpoints: dict[str, str]) -> None:
    """One rank of the training job: for each format asked for ({format: checkpoint folder}),
    shard, take the state dicts of DTensors and save this rank's part."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        by_mesh: dict[tuple[int, ...], dict[str, dict[str, torch.Tensor]]] = {}
        for fmt, checkpoint in checkpoints.items():
            shape = MESHES[fmt] or (world_size,)
            if shape not in by_mesh:  # the 1-D formats share one sharded model
                by_mesh[shape] = _sharded_states(model_dir, shape)
            for kind, state in by_mesh[shape].items():
                folder = Path(checkpoint) / SHARD_DIRS[kind]
                if fmt == "dcp":
                    dcp.save(state, checkpoint_id=folder)
                else:
                    folder.mkdir(parents=True, exist_ok=True)
                    torch.save(state, folder / f"model_world_size_{world_size}_rank_{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def make_checkpoints(
    model_dir: Path, output_dir: Path, formats: tuple[str, ...] = ("fsdp2", "dcp"), step: int = 100,
    world_size: int = 2, ema: bool = True,
) -> dict[str, Path]:  # fmt: skip
    """Checkpoint `model_dir` (a save_pretrained folder) in each format from ONE real
    `world_size`-rank job on CPU, as `<output_dir>/<format>/checkpoint-<step>`; returns them by
    format. The files rank 0 adds with save_pretrained (config, tokenizer; never weights) are
    copied in. A few seconds, almost all of it the ranks' imports."""
    import torch.multiprocessing as mp

    checkpoints = {fmt: output_dir / fmt / f"checkpoint-{step}" for fmt in formats}
    with tempfile.TemporaryDirectory() as scratch:
        rendezvous = str(Path(scratch) / "rendezvous")
        targets = {fmt: str(path) for fmt, path in checkpoints.items()}
        mp.spawn(_worker, args=(world_size, rendezvous, str(model_dir), targets), nprocs=world_size)
    for checkpoint in checkpoints.values():
        if not ema:
            shutil.rmtree(checkpoint / SHARD_DIRS["ema"])
        for file in model_dir.iterdir():
            if file.is_file() and not file.name.endswith(".safetensors"):
                shutil.copy2(file, checkpoint / file.name)
    return checkpoints


def make_fsdp2_checkpoint(
    model_dir: Path, output_dir: Path, step: int = 100, world_size: int = 2, ema: bool = True, dcp: bool = False
) -> Path:
    """One checkpoint, torch.save shards (DCP folders with `dcp`), at `<output_dir>/checkpoint-<step>`."""
    fmt = "dcp" if dcp else "fsdp2"
    made = make_checkpoints(model_dir, output_dir, (fmt,), step, world_size, ema)[fmt]
    checkpoint = Path(shutil.move(made, output_dir / made.name))
    made.parent.rmdir()
    return checkpoint


def expected_state_dict(model_dir: Path, checkpoint_type: str = "regular") -> dict[str, torch.Tensor]:
    """What a correct merge of a checkpoint of `model_dir` holds: the original weights (EMA:
    through `ema_transform`) cast to bf16, keyed as the model's state_dict (tied keys included)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    state = model.state_dict()
    if checkpoint_type == "ema":
        state = {key: ema_transform(value) for key, value in state.items()}
    return {key: value.to(torch.bfloat16) for key, value in state.items()}
