"""Merge a sharded training checkpoint into a Hugging Face model folder that lmms-eval can load.

This is what lmms-eval's POST /merge does (it calls lmms-engine's `FSDP2Merger`), with the same
semantics, run by `evalkube-runner merge` in a CPU-only pod:

- `checkpoint_type` "regular" reads `<ckpt>/pytorch_model_fsdp_0/`, "ema" `<ckpt>/pytorch_ema_model_fsdp_0/`.
- A folder with neither shard folder is a parent: its highest-numbered `checkpoint-<N>` is used.
- lmms-engine's own layout (FSDP2): one `model_world_size_<W>_rank_<R>.pt` per rank, each
  `torch.save(model.state_dict())` of DTensors. Every tensor is rebuilt from its ranks' local
  shards by its placements on its device mesh (Shard(d): concatenated along d in mesh order,
  Replicate: the first copy), multi-dimensional meshes (HSDP, FSDP2 + EP) included.
- torch DCP (`torch.distributed.checkpoint`, as accelerate's FSDP SHARDED_STATE_DICT, torchtitan and
  the HF FSDP2 path save it), recognised by its `.metadata` file, in the same shard folders or at
  the checkpoint root; read by torch's own DCP loader on CPU, with no process group. A state dict
  nested under "model" (accelerate) is unwrapped; optimizer and other entries are left out.
- Floating-point tensors are cast to bf16, built into the model class that config.json names
  (checked: every key must fit it), tied weights re-tied as lmms-engine does, and written with
  `save_pretrained` (safetensors). config.json, the tokenizer/processor files and the other small
  top-level files of the checkpoint are carried over.
- `output_path` unset: the merged model is written into `checkpoint_path` itself, the path as given
  (a parent folder if a parent was given), exactly as FSDP2Merger does.

Why not lmms-engine's own merger: `pip install --dry-run lmms-engine==0.1.4` beside lmms-eval 0.7.3
would downgrade transformers 5.24 -> 5.8.1 (it requires transformers<5.9; the evaluator image pins
5.20.2 for vLLM 0.33, which needs >=5.16.1), tokenizers 0.23 -> 0.22 and huggingface_hub 2.4 -> 1.33,
and pull deepspeed, bitsandbytes, liger-kernel, decord, librosa and more into the image, all for
~100 lines of tensor bookkeeping. So the same semantics are implemented here on torch. Deliberate
differences: shards load with `weights_only=True` (a checkpoint on a shared volume cannot run
code in the merge pod); integer tensors keep their dtype; errors say which path is wrong and what
was expected, as `CheckpointNotFound` (404) or `InvalidCheckpoint` (400), never a bare ValueError.

DCP is read into bf16 tensors allocated from its metadata, not with `dcp_to_torch_save`: that one
materialises the model in its saved precision (fp32: twice the bf16 size) and writes a second full
copy to disk before anything can be cast.

Memory: lmms-engine holds the whole model on CPU plus a copy while concatenating. Here shards are
memory-mapped (page cache, not the pod's anonymous memory) and each tensor is cast and
concatenated on its own, so the copy is one tensor's, not the model's: the peak is the
consolidated bf16 model (2 bytes per tensor element) plus the largest tensor once more, above the
~1.1 GiB that importing torch and transformers costs. Measured (bench/merge_memory.py, a 213M-
parameter Qwen2 saved fp32 by a 2-rank job): 471 MiB anonymous above the imports for FSDP2 and DCP
alike, exactly the bf16 state dict; FSDP2 adds up to 0.7 GiB of file-backed pages (the mapped fp32
shards), which the kernel reclaims under pressure, though a cgroup counts them until it does. A 7B
model (7.6B parameters, Qwen2.5-7B) therefore needs ~14.2 GiB for its bf16 weights + ~1 GiB for
its largest tensor (the 152k x 3584 embedding) + ~1.1 GiB of imports: request 17 GiB, and allow
some more as limit for the shards' page cache. Disk: the merged folder (~15 GB) beside the shards.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: The shard folder of each checkpoint type (lmms-engine's names, also accelerate's for FSDP).
SHARD_DIRS: dict[str, str] = {"regular": "pytorch_model_fsdp_0", "ema": "pytorch_ema_model_fsdp_0"}
#: The file that marks a torch.distributed.checkpoint folder.
DCP_METADATA = ".metadata"
#: `evalkube-runner merge` exit codes, one per class of error, so the operator can map a failed
#: merge pod back to HTTP without parsing text (any other failure exits 1, a 500).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_FOUND = 3
EXIT_INVALID = 4

_RANK_FILE = re.compile(r"model_world_size_(\d+)_rank_(\d+)\.pt")
_NUMBERED = re.compile(r"checkpoint-(\d+)")
_DCP_FILE = re.compile(r"__(\d+)_\d+\.distcp")
_RANK_PATTERN = "model_world_size_<W>_rank_<R>.pt"
#: Top-level checkpoint files that are weights or training state, never carried into the merged folder.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".distcp", ".h5", ".msgpack", ".gguf")


class MergeError(Exception):
    """A merge the user's request made impossible; `http_status` is what POST /merge answers."""

    http_status: int = 500
    exit_code: int = EXIT_FAILED


class CheckpointNotFound(MergeError):
    """The checkpoint path, its shard folder or one of its rank files does not exist."""

    http_status = 404
    exit_code = EXIT_NOT_FOUND


class InvalidCheckpoint(MergeError):
    """The request or the files are not a checkpoint this merger understands."""

    http_status = 400
    exit_code = EXIT_INVALID


@dataclass(frozen=True)
class MergeOutcome:
    """What a merge produced: the folder to evaluate and how it was made."""

    merged_path: Path
    #: "fsdp2" (per-rank torch.save shards) or "dcp" (torch.distributed.checkpoint).
    format: str
    world_size: int
    #: Tensors in the consolidated state dict, by name (a tied pair counts twice).
    tensors: int
    seconds: float
    #: The checkpoint that was merged (a parent folder resolves to its highest checkpoint-<N>).
    checkpoint: Path

    def summary(self) -> dict[str, Any]:
        """The one JSON line `evalkube-runner merge` prints and leaves in the termination log."""
        return {
            "merged_path": str(self.merged_path),
            "format": self.format,
            "world_size": self.world_size,
            "seconds": round(self.seconds, 3),
        }


def _check_type(checkpoint_type: str) -> str:
    if checkpoint_type not in SHARD_DIRS:
        raise InvalidCheckpoint(f"checkpoint_type must be one of {', '.join(SHARD_DIRS)}, not {checkpoint_type!r}")
    return SHARD_DIRS[checkpoint_type]


def _is_checkpoint(path: Path) -> bool:
    return any((path / name).is_dir() for name in SHARD_DIRS.values()) or (path / DCP_METADATA).is_file()


def resolve_checkpoint(path: Path, checkpoint_type: str) -> Path:
    """The checkpoint folder `path` names: itself if it holds a shard folder (or a DCP checkpoint
    at its root), else, as a parent, its highest `checkpoint-<N>`."""
    shard_dir = _check_type(checkpoint_type)
    if not path.exists():
        raise CheckpointNotFound(f"checkpoint path {path} does not exist (is its volume mounted in the merge pod?)")
    if not path.is_dir():
        raise InvalidCheckpoint(f"checkpoint path {path} is a file; expected a checkpoint folder or a parent of them")
    if _is_checkpoint(path):
        return path
    numbered = [(int(m.group(1)), child) for child in path.iterdir() if (m := _NUMBERED.fullmatch(child.name))]
    numbered = [(step, child) for step, child in numbered if child.is_dir()]
    if not numbered:
        raise InvalidCheckpoint(
            f"{path} is not a checkpoint: it holds no {shard_dir}/ folder (nor a DCP {DCP_METADATA}), and as a parent"
            " folder it holds no checkpoint-<N> folders"
        )
    return max(numbered)[1]


def _shard_folder(checkpoint: Path, checkpoint_type: str) -> Path:
    folder = checkpoint / SHARD_DIRS[checkpoint_type]
    if folder.is_dir():
        return folder
    if checkpoint_type == "regular" and (checkpoint / DCP_METADATA).is_file():
        return checkpoint
    hint = " (was it saved with EMA enabled?)" if checkpoint_type == "ema" else ""
    raise CheckpointNotFound(
        f"checkpoint {checkpoint} has no {folder.name}/ folder for checkpoint_type {checkpoint_type!r}{hint}"
    )


def _rank_files(folder: Path) -> list[Path]:
    """The folder's rank files in rank order, checked to be exactly ranks 0..W-1 of one world size."""
    files = sorted(folder.glob("*.pt"))
    if not files:
        raise CheckpointNotFound(
            f"{folder} holds no rank files {_RANK_PATTERN} (nor a DCP {DCP_METADATA}); is the checkpoint"
            " still being written?"
        )
    by_rank: dict[int, Path] = {}
    sizes: set[int] = set()
    for file in files:
        match = _RANK_FILE.fullmatch(file.name)
        if not match:
            raise InvalidCheckpoint(f"{file} is not a rank file: expected names {_RANK_PATTERN}")
        sizes.add(int(match.group(1)))
        by_rank[int(match.group(2))] = file
    if len(sizes) > 1:
        raise InvalidCheckpoint(f"{folder} mixes rank files of world sizes {sorted(sizes)}: expected one world size")
    (world_size,) = sizes
    beyond = sorted(rank for rank in by_rank if rank >= world_size)
    if beyond:
        raise InvalidCheckpoint(f"{folder} has rank files for ranks {beyond}, beyond world size {world_size}")
    missing = [f"model_world_size_{world_size}_rank_{rank}.pt" for rank in range(world_size) if rank not in by_rank]
    if missing:
        raise CheckpointNotFound(f"{folder} lacks rank files of world size {world_size}: {', '.join(missing)}")
    return [by_rank[rank] for rank in range(world_size)]


def _bf16(tensor: torch.Tensor) -> torch.Tensor:
    import torch

    return tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor


def _full_tensor(key: str, pieces: list[Any], world_size: int) -> torch.Tensor | None:
    """One tensor of the model from every rank's piece of it (None: not a tensor, left out)."""
    import torch
    from torch.distributed.tensor import DTensor, Replicate, Shard

    first = pieces[0]
    if not isinstance(first, DTensor):
        # A plain tensor (a buffer such as inv_freq) is replicated on every rank.
        return _bf16(first) if isinstance(first, torch.Tensor) else None
    if not all(isinstance(piece, DTensor) and piece.placements == first.placements for piece in pieces):
        raise InvalidCheckpoint(f"{key}: the ranks disagree on how it is sharded")
    placements = first.placements
    unsupported = [p for p in placements if type(p) not in (Shard, Replicate)]
    if unsupported:
        raise InvalidCheckpoint(f"{key}: placement {unsupported[0]} is not supported (only Shard and Replicate)")
    ranks = first.device_mesh.mesh
    if sorted(ranks.flatten().tolist()) != list(range(world_size)):
        raise InvalidCheckpoint(
            f"{key}: its device mesh spans ranks {ranks.flatten().tolist()}, the checkpoint has world size {world_size}"
        )

    def fold(grid: torch.Tensor, axis: int) -> torch.Tensor:
        # DTensor shards mesh dimension 0 first, then each piece along the next: rebuild innermost first.
        members = [grid[i] for i in range(grid.shape[0])]
        if type(placements[axis]) is Replicate:
            members = members[:1]
        parts = [fold(m, axis + 1) if m.dim() else _bf16(pieces[int(m)].to_local()) for m in members]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=placements[axis].dim)

    full = fold(ranks, 0)
    if full.shape != first.shape:
        raise InvalidCheckpoint(f"{key}: its shards make shape {tuple(full.shape)}, expected {tuple(first.shape)}")
    return full


def _load_rank_file(file: Path) -> Any:
    # Importing torch.distributed.tensor registers DTensor with the weights_only unpickler.
    import torch.distributed.tensor

    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # corrupt, truncated, or pickled objects other than tensors
        raise InvalidCheckpoint(f"{file} cannot be read as a torch.save state dict: {error}") from None


def _load_fsdp2(folder: Path) -> tuple[dict[str, torch.Tensor], int]:
    """Consolidate per-rank torch.save state dicts of DTensors, one tensor at a time."""
    files = _rank_files(folder)  # before importing torch: a layout mistake is answered at once
    shards: list[dict[str, Any]] = []
    # Unpickling a DeviceMesh without process groups warns about torch.compile; no mesh is used to
    # communicate here.
    mesh_logger = logging.getLogger("torch.distributed.device_mesh")
    level = mesh_logger.level
    mesh_logger.setLevel(logging.ERROR)
    try:
        loaded = [_load_rank_file(file) for file in files]
    finally:
        mesh_logger.setLevel(level)
    for file, state in zip(files, loaded, strict=True):
        if not isinstance(state, Mapping):
            raise InvalidCheckpoint(f"{file} holds a {type(state).__name__}; expected a state dict")
        shards.append(dict(state))
    keys = list(shards[0])
    for file, state in zip(files[1:], shards[1:], strict=True):
        if set(state) != set(keys):
            odd = sorted(set(state) ^ set(keys))[:5]
            raise InvalidCheckpoint(f"{file} has other keys than {files[0].name}: {', '.join(odd)}")
    merged = {}
    for key in keys:
        full = _full_tensor(key, [state.pop(key) for state in shards], len(files))
        if full is not None:
            merged[key] = full
    return merged, len(files)


def _load_dcp(folder: Path) -> tuple[dict[str, torch.Tensor], int]:
    """Read a DCP checkpoint's model tensors, whole and in bf16, with torch's own loader."""
    import torch
    from torch.distributed.checkpoint import FileSystemReader, load
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    try:
        metadata = FileSystemReader(folder).read_metadata()
    except Exception as error:
        raise InvalidCheckpoint(f"{folder / DCP_METADATA} cannot be read as DCP metadata: {error}") from None
    files = {getattr(info, "relative_path", None) for info in (metadata.storage_data or {}).values()} - {None}
    missing = sorted(name for name in files if not (folder / name).is_file())
    if missing:
        raise CheckpointNotFound(f"{folder} lacks files its {DCP_METADATA} names: {', '.join(missing)}")
    world_size = len({m.group(1) for name in files if (m := _DCP_FILE.fullmatch(name))}) or len(files) or 1

    # Flat keys with their place in the saved (possibly nested) state dict; the model's tensors are
    # the top-level ones, or those under "model" when the trainer saved {"model": ..., "optim": ...}.
    tensors = {
        key: meta for key, meta in metadata.state_dict_metadata.items() if isinstance(meta, TensorStorageMetadata)
    }
    paths = {key: tuple((metadata.planner_data or {}).get(key, (key,))) for key in tensors}
    nested = {key: path[1] for key, path in paths.items() if len(path) == 2 and path[0] == "model"}
    chosen = nested or {key: path[0] for key, path in paths.items() if len(path) == 1}
    if not chosen:
        raise InvalidCheckpoint(f"{folder} is a DCP checkpoint without model tensors")
    targets = {}
    for key in chosen:
        dtype = tensors[key].properties.dtype
        targets[key] = torch.empty(tensors[key].size, dtype=torch.bfloat16 if dtype.is_floating_point else dtype)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            load(targets, storage_reader=FileSystemReader(folder), no_dist=True)
    except Exception as error:
        raise InvalidCheckpoint(f"{folder} cannot be read as a DCP checkpoint: {error}") from None
    return {chosen[key]: tensor for key, tensor in targets.items()}, world_size


def _carried_files(checkpoint: Path) -> list[Path]:
    """Top-level files of the checkpoint that belong in the model folder: tokenizer, processor,
    generation config, chat template, remote code; never weights, shards or hidden files."""
    return [
        file
        for file in sorted(checkpoint.iterdir())
        if file.is_file()
        and not file.name.startswith(".")
        and file.name != "config.json"
        and not file.name.endswith(_WEIGHT_SUFFIXES)
        and not file.name.endswith(".index.json")
    ]


def _tie_declared(config: Any) -> bool:
    text_config = getattr(config, "text_config", None)
    return bool(getattr(config, "tie_word_embeddings", False) or getattr(text_config, "tie_word_embeddings", False))


def _save_model(state: dict[str, torch.Tensor], checkpoint: Path, folder: Path) -> None:
    """Write `state` as a bf16 Hugging Face model into `folder`, through the class config.json names."""
    import torch
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(checkpoint)
    except (ValueError, KeyError, OSError):
        config = None  # a model type this transformers does not know (remote code): weights as they are
    model_class = getattr(transformers, (getattr(config, "architectures", None) or [""])[0], None)
    if config is None or not hasattr(model_class, "_from_config"):
        _save_raw(state, checkpoint, folder)
        return

    with torch.device("meta"):
        model = model_class._from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    tied = getattr(model, "_tied_weights_keys", None)
    if tied and _tie_declared(config):
        pairs = tied.items() if isinstance(tied, dict) else ()
        if all(a not in state or b not in state or torch.equal(state[a], state[b]) for a, b in pairs):
            model.tie_weights()  # as FSDP2Merger does: FSDP saved the tied pair as two tensors
        else:
            print(
                f"evalkube-runner merge: tied weights {dict(pairs)} differ in {checkpoint}; not re-tied",
                file=sys.stderr,
            )
    still_meta = sorted(name for name, value in model.state_dict().items() if value.is_meta)
    if unexpected or still_meta:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for what, keys in (("unexpected keys", unexpected), ("missing keys", still_meta or missing))
            if keys
        )
        raise InvalidCheckpoint(
            f"the weights in {checkpoint} do not fit {model_class.__name__} from its config.json: {detail}"
        )
    model.save_pretrained(folder)


def _save_raw(state: dict[str, torch.Tensor], checkpoint: Path, folder: Path) -> None:
    """For an architecture transformers cannot build here: safetensors as they are, config marked bf16."""
    from huggingface_hub import save_torch_state_dict

    save_torch_state_dict(state, folder)
    config = json.loads((checkpoint / "config.json").read_text())
    config["dtype"] = "bfloat16"
    if "torch_dtype" in config:
        config["torch_dtype"] = "bfloat16"
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _publish(staging: Path, output: Path) -> None:
    """Move the finished files into `output`, dropping weight files an earlier merge left there, so a
    reader never sees a half-written model under its final name."""
    written = {file.name for file in staging.iterdir()}
    for stale in [*output.glob("*.safetensors"), *output.glob("*.safetensors.index.json")]:
        if stale.name not in written:
            stale.unlink()
    # safetensors creates its files 0600: give them the mode any new file gets, so the trainer's and
    # the evaluator's pods (maybe other users on the shared volume) can read the merged model.
    umask = os.umask(0)
    os.umask(umask)
    weights = sorted(name for name in written if name.endswith((".safetensors", ".index.json")))
    for name in [*weights, *sorted(written - set(weights))]:  # weights first, config.json among the last
        os.chmod(staging / name, 0o666 & ~umask)
        os.replace(staging / name, output / name)


def _check_writable(output: Path) -> None:
    """Refuse, before any work, an output_path the merge pod cannot create or write: under a file,
    on a read-only volume, or without permission (the user's mistake, not the server's)."""
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidCheckpoint(f"cannot write the merged model to output_path {output}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidCheckpoint(f"cannot write the merged model to output_path {output}: {existing} is not writable")


def merge_checkpoint(
    checkpoint_path: str | Path, output_path: str | Path | None = None, checkpoint_type: str = "regular"
) -> MergeOutcome:
    """Merge the sharded checkpoint at `checkpoint_path` (or a parent's highest checkpoint-<N>)
    into a bf16 Hugging Face folder at `output_path` (default: `checkpoint_path` itself)."""
    started = time.monotonic()
    given = Path(checkpoint_path)
    checkpoint = resolve_checkpoint(given, checkpoint_type)
    folder = _shard_folder(checkpoint, checkpoint_type)
    if not (checkpoint / "config.json").is_file():
        raise InvalidCheckpoint(f"checkpoint {checkpoint} has no config.json (rank 0 saves it with save_pretrained)")
    output = Path(output_path) if output_path is not None else given
    _check_writable(output)

    if (folder / DCP_METADATA).is_file():
        fmt, (state, world_size) = "dcp", _load_dcp(folder)
    else:
        fmt, (state, world_size) = "fsdp2", _load_fsdp2(folder)
    if not state:
        raise InvalidCheckpoint(f"{folder} holds no tensors")
    try:
        output.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".evalkube-merge-", dir=output))
    except OSError as error:
        raise InvalidCheckpoint(f"cannot write the merged model to output_path {output}: {error}") from None
    try:
        _save_model(state, checkpoint, staging)
        for file in _carried_files(checkpoint):
            shutil.copy2(file, staging / file.name)
        _publish(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return MergeOutcome(output, fmt, world_size, len(state), time.monotonic() - started, checkpoint)
