"""The real-cluster end-to-end test, hack/e2e-kind.sh on kind, and the hygiene of the hack/ scripts.

The e2e test runs wherever a Docker engine and kind exist (it creates and deletes its own cluster,
builds both images and runs real evaluations); elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import tools

SCRIPTS = sorted((tools.REPO / "hack").glob("*.sh"))


def test_scripts_are_shellcheck_clean() -> None:
    assert SCRIPTS
    result = subprocess.run(
        [str(tools.path("shellcheck")), "--external-sources", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=tools.REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_strict_bash_and_executable(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert os.access(script, os.X_OK)


def e2e_unavailable() -> str | None:
    """Why the kind e2e can't run here, or None when it can."""
    if shutil.which("docker") is None:
        return "`docker` is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine is running (`docker info`: {last})"
    if shutil.which("kind") is None:
        return "`kind` is not installed"
    return None


@pytest.mark.kind
@pytest.mark.timeout(3600)
def test_e2e_on_kind() -> None:
    reason = e2e_unavailable()
    if reason:
        pytest.skip(f"the kind e2e needs Docker and kind: {reason}")
    env = {**os.environ, "HELM": str(tools.path("helm4")), "KUBECTL": str(tools.path("kubectl"))}
    result = subprocess.run(["bash", "hack/e2e-kind.sh"], cwd=tools.REPO, env=env, timeout=3500)
    assert result.returncode == 0
