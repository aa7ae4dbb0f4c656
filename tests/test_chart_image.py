"""The API + operator image the chart deploys (the repository's Dockerfile), checked without Docker.

No Docker engine runs here, so the build is reproduced in its parts: the files the Dockerfile
copies get through .dockerignore, and they alone build the evalkube wheel with both console
scripts and every package; the image runs as the UID the chart's securityContext expects.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from tools import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
# Both images build from the repository root, so both go through the one .dockerignore.
DOCKERFILES = ["Dockerfile", "evaluator-image/Dockerfile"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def copied_sources(dockerfile: str = "Dockerfile") -> list[str]:
    """Sources of the Dockerfile's COPY instructions that read the build context."""
    sources = []
    for line in (REPO / dockerfile).read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources.extend(w for w in words[1:-1] if not w.startswith("--"))
    return sources


def build_isolation_args() -> list[str]:
    """Build with this environment's build backend when it meets pyproject's build requirements
    (fast, offline); otherwise let pip fetch them into an isolated environment."""
    for spec in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(spec)
        try:
            if not requirement.specifier.contains(version(requirement.name)):
                return []
        except PackageNotFoundError:
            return []
    return ["--no-build-isolation"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerignore_lets_the_copied_sources_through(dockerfile: str) -> None:
    patterns = [p for p in (REPO / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    assert patterns[0] == "*", "an allow-list: everything else stays out of the context (.venv!)"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = copied_sources(dockerfile)
    assert sources
    for source in sources:
        parts = Path(source).parts
        assert any("/".join(parts[:n]) in allowed for n in range(1, len(parts) + 1)), source


def test_the_copied_sources_build_the_package_with_both_console_scripts(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for source in copied_sources():
        target = src / source
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / source, target)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            *build_isolation_args(),
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "dist").glob("evalkube-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        entry_points = whl.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    assert re.search(r"^evalkube-api = ", entry_points, re.MULTILINE)
    assert re.search(r"^evalkube-operator = ", entry_points, re.MULTILINE)


def test_the_base_install_leaves_out_the_evaluator() -> None:
    base = " ".join(PYPROJECT["project"]["dependencies"])
    assert "lmms" not in base and "torch" not in base
    assert "pip install --no-deps ." in DOCKERFILE and "[evaluator" not in DOCKERFILE


def test_image_runs_as_the_non_root_user_the_chart_expects() -> None:
    values = yaml.safe_load((REPO / "charts" / "evalkube" / "values.yaml").read_text())
    uid, gid = values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]
    final_stage = DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]
    assert re.findall(r"^USER (.+)$", final_stage, re.MULTILINE) == [f"{uid}:{gid}"]
    assert f"--uid {uid}" in final_stage  # a passwd entry: getpass.getuser() works
    assert re.search(r'^CMD \["', final_stage, re.MULTILINE)  # exec form: no shell at run time
