"""`evalkube-runner catalog`: the tasks and models this image's lmms-eval can run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from evalkube import resource
from evalkube.runner.cli import main

RUNNER = str(Path(sys.executable).with_name("evalkube-runner"))


def test_a_configmap_needs_a_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["catalog", "--configmap", "evalkube-catalog"])
    assert exit_.value.code == 2 and "--namespace" in capsys.readouterr().err


@pytest.mark.heavy
def test_the_catalog_goes_to_a_file_and_a_configmap(cluster: Any, kubeconfigs: dict[str, str], tmp_path: Path) -> None:
    output = tmp_path / "catalog.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    command = [RUNNER, "catalog", "--output", str(output), "--configmap", "evalkube-catalog"]
    done = subprocess.run(
        [*command, "--namespace", cluster.namespace],
        env={**env, "KUBECONFIG": kubeconfigs["evaluator"]}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DEBUG" not in done.stderr  # lmms-eval's task indexing noise is silenced

    catalog = json.loads(output.read_text())
    config_map = cluster.config_map("evalkube-catalog")
    assert json.loads(config_map.data[resource.CATALOG_KEY]) == catalog
    assert config_map.metadata.labels == {resource.LABEL_MANAGED_BY: resource.MANAGED_BY}

    assert set(catalog) == {"tasks", "groups", "models", "lmmsEvalVersion", "generatedAt"}
    assert catalog["lmmsEvalVersion"] == "0.7.3"
    datetime.fromisoformat(catalog["generatedAt"])
    assert catalog["tasks"] == sorted(catalog["tasks"]) and len(catalog["tasks"]) > 1000
    assert {"mme", "mmmu_val", "ai2_arc"} <= set(catalog["tasks"])  # a task, a subtask, a tag
    assert "mmmu" in catalog["groups"] and set(catalog["groups"]) <= set(catalog["tasks"])
    assert {"huggingface", "vllm", "openai", "openai_compatible"} <= set(catalog["models"])
    assert catalog["models"] == sorted(catalog["models"])
