"""The real runner (`evalkube-runner run`, a subprocess with the operator's env contract) running
real lmms-eval on the tiny model and task, offline on CPU, writing to the Kubernetes API emulator.

One lmms-eval run per case; the model is trained once per session (~6 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from evalkube import resource

from evaluator_fixtures import METRIC_KEY, TASK_NAME, make_tiny_task

pytestmark = pytest.mark.heavy

RUNNER = str(Path(sys.executable).with_name("evalkube-runner"))


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    """The tiny task laid out as the kubelet mounts a ConfigMap: top-level links into ..data."""
    mount = tmp_path / "tasks"
    version = mount / "..2026_01_01_00_00_00.000000001"
    _, files = make_tiny_task(version)
    for name in files:
        (mount / name).symlink_to(Path("..data") / name)
    (mount / "..data").symlink_to(version.name)
    return mount


class Job:
    """One EvalJob in the emulator and the environment its evaluator container gets."""

    def __init__(self, cluster: Any, kubeconfig: str, tmp_path: Path, hf_home: Path, tasks_dir: Path,
                 spec: dict[str, Any]) -> None:  # fmt: skip
        self.cluster = cluster
        self.spec = {"model": "huggingface", "tasks": [TASK_NAME], "numGpus": 0, **spec}
        self.name = cluster.apply(self.spec, name="tiny")
        self.uid = cluster.evaljob(self.name)["metadata"]["uid"]
        self.artifacts = tmp_path / "artifacts"
        self.termination_log = tmp_path / "termination-log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("EVALKUBE_", "KUBERNETES_"))}
        self.env = {
            **inherited,
            "KUBECONFIG": kubeconfig,
            "HF_HOME": str(hf_home),
            "EVALKUBE_EVALJOB_NAME": self.name,
            "EVALKUBE_EVALJOB_UID": self.uid,
            "EVALKUBE_NAMESPACE": cluster.namespace,
            "EVALKUBE_SPEC": json.dumps(self.spec),
            "EVALKUBE_RESULT_CONFIGMAP": resource.result_configmap_name(self.name),
            "EVALKUBE_TASKS_DIR": str(tasks_dir),
            "EVALKUBE_ARTIFACTS_DIR": str(self.artifacts),
            "EVALKUBE_TERMINATION_LOG": str(self.termination_log),
        }

    def run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RUNNER, "run"], env=self.env, capture_output=True, text=True, timeout=300)

    def result(self) -> Any:
        return self.cluster.config_map(resource.result_configmap_name(self.name))

    def message(self) -> str:
        return self.termination_log.read_text()


@pytest.fixture
def job(cluster: Any, kubeconfigs: dict[str, str], tmp_path: Path, hf_home: Path, tiny_model: Path,
        tasks_dir: Path) -> Callable[..., Job]:  # fmt: skip
    """Makes the Job of the tiny model on the tiny task, with the given spec fields."""

    def make(**spec: Any) -> Job:
        spec = {"modelArgs": {"pretrained": str(tiny_model)}, **spec}
        return Job(cluster, kubeconfigs["evaluator"], tmp_path, hf_home, tasks_dir, spec)

    return make


def test_a_real_evaluation_lands_in_the_results_configmap(job: Callable[..., Job]) -> None:
    evaljob = job(logSamples=True)
    # A stale ConfigMap from an earlier pod of the same EvalJob is replaced, not an error.
    evaljob.cluster.core.create_namespaced_config_map(
        evaljob.cluster.namespace,
        {
            "metadata": {
                "name": resource.result_configmap_name(evaljob.name),
                "ownerReferences": [resource.owner_reference(evaljob.name, evaljob.uid, block_owner_deletion=False)],
            },
            "data": {"results.json": "{}"},
        },
    )

    started = time.monotonic()
    done = evaljob.run()
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    print(f"runner wall time: {elapsed:.1f}s")

    config_map = evaljob.result()
    document = json.loads(config_map.data[resource.RESULTS_KEY])
    assert document["results"][TASK_NAME][METRIC_KEY] == 1.0
    assert document["n-samples"][TASK_NAME]["effective"] == 5
    meta = json.loads(config_map.data[resource.RESULTS_META_KEY])
    output = evaljob.artifacts / evaljob.cluster.namespace / evaljob.name
    ((model_dir, files),) = meta["result"].items()  # lmms-eval's own result shape: paths on the volume
    assert Path(files["results"]).is_file() and Path(files["results"]).parent == output / model_dir
    samples = [Path(f) for f in files["samples"]]
    assert [p.name.split("_samples_")[1] for p in samples] == [f"{TASK_NAME}.jsonl"]
    assert all(path.is_file() and path.is_relative_to(output) for path in samples)
    assert next(json.loads(line)["filtered_resps"] for line in samples[0].read_text().splitlines()) == "Paris"
    assert meta["dropped"] == [] and meta["lmmsEvalVersion"] == "0.7.3"

    assert config_map.metadata.labels == resource.child_labels(evaljob.name)
    [owner] = config_map.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("EvalJob", evaljob.name, evaljob.uid, True)
    assert not evaljob.termination_log.exists()
    assert "Verbosity set to INFO" in done.stdout  # lmms-eval's output is streamed through


def test_an_unknown_task_fails_naming_it(job: Callable[..., Job]) -> None:
    evaljob = job(tasks=["evalkube_no_such_task"])
    done = evaljob.run()
    assert done.returncode == 1
    first_line = evaljob.message().splitlines()[0]
    assert first_line.startswith("lmms-eval produced no results: Tasks not found: evalkube_no_such_task")
    assert evaljob.result() is None


def test_a_missing_model_path_fails_plainly(job: Callable[..., Job], tmp_path: Path) -> None:
    evaljob = job(modelArgs={"pretrained": str(tmp_path / "no-model")})
    done = evaljob.run()
    assert done.returncode == 1
    assert evaljob.message() == (
        f"modelArgs.pretrained: model path {tmp_path / 'no-model'} does not exist in the evaluator pod"
        " (is its volume mounted?)"
    )
    assert evaljob.result() is None


def test_an_invalid_spec_exits_2(job: Callable[..., Job]) -> None:
    # The CRD refuses such an EvalJob now; the runner still refuses a spec handed to it directly.
    evaljob = job()
    evaljob.env["EVALKUBE_SPEC"] = json.dumps({**evaljob.spec, "modelArgs": {"pretrained": "/m,device_map=cuda"}})
    done = evaljob.run()
    assert done.returncode == 2
    assert evaljob.message().startswith("invalid spec: modelArgs.pretrained: must not contain ',' or '='")
    assert evaljob.result() is None


def test_sigterm_stops_the_whole_process_group(job: Callable[..., Job]) -> None:
    evaljob = job()
    runner = subprocess.Popen([RUNNER, "run"], env=evaljob.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(runner.stdout.readline, b"")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not any(b"Verbosity set to" in line for line in lines):  # lmms-eval is up, evaluation ahead
        assert runner.poll() is None and time.monotonic() < deadline, b"".join(lines)[-3000:]
        time.sleep(0.05)
    group = psutil.Process(runner.pid).children(recursive=True)
    assert group, "lmms-eval is not running"

    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=30) == 128 + signal.SIGTERM
    _, alive = psutil.wait_procs(group, timeout=5)
    assert alive == []
    assert evaljob.message().startswith("evaluation stopped: the runner received SIGTERM")
    assert evaljob.result() is None
