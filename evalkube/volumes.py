"""Shared volumes: where a path means the same file in the training pod and in evalkube's pods.

Checkpoints and evaluation outputs live on PersistentVolumeClaims that training pods and evalkube's
pods mount at the same mountPath (the operator's and the API's EVALKUBE_SHARED_VOLUMES, one chart
value feeding both). An absolute path in a request must lie under one of the mounted volumes
(the shared ones, the model cache, the artifacts volume), else no pod could open it: the API
refuses it at submission and the operator at admission, with the same function, so nothing is
accepted and then refused in the pod. A hub id such as `Qwen/Qwen2.5-VL-7B-Instruct` is not a path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from pydantic.alias_generators import to_camel

#: Where the operator mounts its own volumes (see operator settings).
ARTIFACTS_MOUNT = "/artifacts"
CACHE_MOUNT = "/cache"
#: model_args keys that name the model's location (HF-style backends, vLLM).
MODEL_LOCATION_ARGS = ("pretrained", "model")


class SharedVolume(BaseModel):
    """One claim every evaluator and merge pod mounts, at the path training pods use too."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    claim_name: str = Field(min_length=1, max_length=253)
    mount_path: str
    read_only: bool = False
    sub_path: str | None = None

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts or str(path) == "/":
            raise ValueError(f"must be an absolute path below / without '..' (got {value!r})")
        return str(path)


_VOLUMES = TypeAdapter(list[SharedVolume])


def parse_shared_volumes(value: Any) -> list[SharedVolume]:
    """EVALKUBE_SHARED_VOLUMES: a JSON list of {claimName, mountPath, readOnly, subPath}."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = json.loads(value)
    return _VOLUMES.validate_python(value)


def mount_paths(shared: Iterable[SharedVolume], *, model_cache: bool = False, artifacts: bool = False) -> list[str]:
    """Every mountPath an evaluator pod has for user data, as the API and the operator see it."""
    paths = [volume.mount_path for volume in shared]
    if model_cache:
        paths.append(CACHE_MOUNT)
    if artifacts:
        paths.append(ARTIFACTS_MOUNT)
    return paths


def is_under(path: str, mounts: Iterable[str]) -> bool:
    """True when the absolute `path` lies in (or is) one of the mount paths."""
    pure = PurePosixPath(path)
    return ".." not in pure.parts and any(pure == PurePosixPath(m) or PurePosixPath(m) in pure.parents for m in mounts)


def _outside(path: str, mounts: list[str]) -> str:
    listed = ", ".join(mounts) if mounts else "none are configured (EVALKUBE_SHARED_VOLUMES)"
    return f"{path!r} lies under no volume the evaluator pods mount; mounted: {listed}"


def path_problems(fields: dict[str, Any], mounts: list[str]) -> list[tuple[tuple[str, ...], str]]:
    """(field location, reason) for each absolute path of a request (REST names) that no pod can open.

    Checked: output_dir, the model-location model_args, lmms_engine_kwargs' paths, and a merge's. A relative
    output_dir means the artifacts volume, and a model_args value that is not absolute is a hub id.
    """
    problems: list[tuple[tuple[str, ...], str]] = []

    def check(location: tuple[str, ...], value: Any) -> None:
        if isinstance(value, str) and value.startswith("/") and not is_under(value, mounts):
            problems.append((location, _outside(value, mounts)))

    for key in ("output_dir", "checkpoint_path", "output_path"):  # EvaluateRequest's, MergeRequest's
        check((key,), fields.get(key))
    for key in MODEL_LOCATION_ARGS:
        check(("model_args", key), (fields.get("model_args") or {}).get(key))
    merge = fields.get("lmms_engine_kwargs") or {}
    for key in ("model_path", "output_path"):
        check(("lmms_engine_kwargs", key), merge.get(key))
    return problems
