"""Kubeconfig files for the emulator (plain http, optional bearer token).

A distinct token per component (tests, operator, API) is how tests tell their
requests apart in `KubeEmulator.requests`. Authentication only happens when the emulator
enforces RBAC; then `KubeEmulator.write_kubeconfig` tokens are superusers unless registered.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def write_kubeconfig(
    path: str | os.PathLike[str],
    server: str,
    token: str | None = None,
    namespace: str = "default",
    user: str = "kubeemu",
) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubeemu", "cluster": {"server": server}}],
        "users": [{"name": user, "user": {"token": token} if token else {}}],
        "contexts": [{"name": "kubeemu", "context": {"cluster": "kubeemu", "user": user, "namespace": namespace}}],
        "current-context": "kubeemu",
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target
