"""Progress from the runner to status.progress, REST's JobInfo and `kubectl get ej`; hung EvalJobs fail.

The runner's publisher (`evalkube.runner.progress_publish`) writes the `<name>-progress` ConfigMap
as the evaluator's service account; the real operator mirrors it into status.progress; the real
API serves it as JobInfo.progress. The heavy test reads a REAL lmms-eval run's tqdm bars.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from conftest import Cluster

from evalkube import EvalClient, kube, progress, resource
from evalkube.crdgen import PRINTER_COLUMNS
from evalkube.mapping import now_rfc3339
from evalkube.resource import Phase
from evalkube.runner.invocation import build_argv, child_env, parse_spec
from evalkube.runner.process import ProcessGroupRunner
from evalkube.runner.progress import Progress
from evalkube.runner.progress_publish import publisher

from evaluator_fixtures import make_tiny_task
from harness.kubelet import FakeKubelet
from harness.operator_process import OperatorProcess

SPEC = {"model": "huggingface", "tasks": ["mme"], "numGpus": 0}


def bar(done: int, total: int, stage: str = "Model Responding", at: str = "2026-01-01T00:00:00Z") -> Progress:
    return Progress(round(100 * done / total, 1), done, total, stage, 2.5, (total - done) // 2, at)


@pytest.fixture
def evaluator_core(kubeconfigs: dict[str, str]) -> Iterator[kubernetes.client.CoreV1Api]:
    """The runner's client: the evaluator's own token, as in its pod."""
    with kube.api_client(kubeconfigs["evaluator"]) as client:
        yield kubernetes.client.CoreV1Api(client)


def running(cluster: Cluster, kubelet: FakeKubelet) -> tuple[str, str]:
    name = cluster.apply(SPEC)
    cluster.wait(lambda: cluster.job(name), what="the Job")
    kubelet.run_pod(name)
    cluster.wait_phase(name, Phase.RUNNING)
    return name, cluster.evaljob(name)["metadata"]["uid"]


def progress_of(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return cluster.status(name).get("progress")


def test_the_progress_configmap_is_judged_by_the_protocol() -> None:
    good = {"percent": 50.0, "done": 5, "total": 10, "stage": "Model Responding", "updatedAt": "2026-01-01T00:00:00Z"}
    assert progress.from_configmap({progress.PROGRESS_KEY: json.dumps(good)}) == good
    for junk in ("not json", json.dumps({**good, "percent": 250}), json.dumps({"done": "many"}), "[]"):
        assert progress.from_configmap({progress.PROGRESS_KEY: junk}) is None
    assert progress.from_configmap(None) is None
    assert {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent"} in PRINTER_COLUMNS


def test_published_progress_reaches_status_and_rest(
    start_operator: Callable[..., OperatorProcess],
    cluster: Cluster,
    kubelet: FakeKubelet,
    evaluator_core: kubernetes.client.CoreV1Api,
    eval_client: EvalClient,
) -> None:
    start_operator(progress_poll_seconds=0.2)
    name, uid = running(cluster, kubelet)
    assert progress_of(cluster, name) is None  # nothing published yet
    publish = publisher(cluster.namespace, name, uid, api=evaluator_core)

    publish(bar(3, 10, at="2026-01-01T00:00:05Z"))
    first = cluster.wait(lambda: progress_of(cluster, name), what="status.progress")
    assert first == {"percent": 30.0, "done": 3, "total": 10, "stage": "Model Responding", "rate": 2.5,
                     "etaSeconds": 3, "updatedAt": "2026-01-01T00:00:05Z"}  # fmt: skip
    publish(bar(10, 10, at="2026-01-01T00:00:09Z"))
    cluster.wait(lambda: (progress_of(cluster, name) or {}).get("done") == 10, what="the second update")
    assert eval_client.get_job(name)["progress"] == {
        "percent": 100.0, "done": 10, "total": 10, "stage": "Model Responding", "rate": 2.5, "eta_seconds": 0,
        "updated_at": "2026-01-01T00:00:09Z",
    }  # fmt: skip
    config_map = cluster.config_map(progress.progress_configmap_name(name))
    assert [ref.uid for ref in config_map.metadata.owner_references] == [uid]  # goes with its EvalJob

    kubelet.finish(name, 0, results={"results": {"mme": {"exact_match,none": 1.0}}})
    done = cluster.wait_phase(name, Phase.COMPLETED)
    assert done["progress"]["percent"] == 100.0  # the last state stays in the finished EvalJob


def test_a_progress_configmap_its_evaljob_does_not_own_is_ignored(
    start_operator: Callable[..., OperatorProcess], cluster: Cluster, kubelet: FakeKubelet
) -> None:
    start_operator(progress_poll_seconds=0.2)
    name, _ = running(cluster, kubelet)
    forged = publisher(cluster.namespace, name, "another-uid", api=cluster.core)
    forged(bar(9, 10))
    other, uid = running(cluster, kubelet)  # a genuine one, to know the operator has polled since
    publisher(cluster.namespace, other, uid, api=cluster.core)(bar(1, 10))
    cluster.wait(lambda: progress_of(cluster, other), what="the genuine progress")
    assert progress_of(cluster, name) is None


def test_an_evaljob_that_makes_no_progress_for_too_long_fails_saying_so(
    start_operator: Callable[..., OperatorProcess],
    cluster: Cluster,
    kubelet: FakeKubelet,
    evaluator_core: kubernetes.client.CoreV1Api,
) -> None:
    start_operator(progress_poll_seconds=0.2, hung_after_seconds=3)
    name, uid = running(cluster, kubelet)
    publisher(cluster.namespace, name, uid, api=evaluator_core)(bar(4, 10, at=now_rfc3339()))
    cluster.wait(lambda: progress_of(cluster, name), what="status.progress")
    assert cluster.status(name)["phase"] == Phase.RUNNING  # moving, so far
    failed = cluster.wait_phase(name, Phase.FAILED, timeout=20)
    assert failed["error"].startswith("hung: no progress for ")
    assert "(limit 3s, EVALKUBE_HUNG_AFTER_SECONDS); last seen Model Responding at 4/10" in failed["error"]
    cluster.wait(lambda: cluster.job(name) is None, what="the hung Job to be deleted (its GPU freed)")


@pytest.mark.heavy
def test_a_real_lmms_eval_run_reports_progress_until_100_percent(
    start_operator: Callable[..., OperatorProcess],
    cluster: Cluster,
    kubelet: FakeKubelet,
    evaluator_core: kubernetes.client.CoreV1Api,
    tiny_model: Path,
    hf_home: Path,
) -> None:
    """lmms-eval's own tqdm output, read by the runner's pump, published, mirrored: at least two
    distinct updates while it runs, and the final state at 100%."""
    start_operator(progress_poll_seconds=0.1)
    name, uid = running(cluster, kubelet)
    publish = publisher(cluster.namespace, name, uid, api=evaluator_core)
    published: list[Progress] = []
    seen: list[dict[str, Any]] = []

    one_at_a_time = threading.Lock()  # the runner's final report can come while a periodic one waits

    def on_progress(state: Progress) -> None:
        with one_at_a_time:  # else the later state overwrites the earlier one before it is mirrored
            publish(state)
            published.append(state)
            cluster.wait(lambda: progress_of(cluster, name) == progress.from_configmap(
                {progress.PROGRESS_KEY: json.dumps(state.to_json())}), what="the operator to mirror it")  # fmt: skip
            seen.append(progress_of(cluster, name) or {})

    with tempfile.TemporaryDirectory() as scratch, open(os.devnull, "wb") as sink:
        root = Path(scratch)
        task, _ = make_tiny_task(root / "tasks")
        spec = parse_spec({**SPEC, "tasks": [task], "modelArgs": {"pretrained": str(tiny_model)}})
        argv = build_argv(spec, root / "output", root / "tasks")
        runner = ProcessGroupRunner(output=sink, on_progress=on_progress, progress_interval=0.5)
        outcome = runner.run(argv, child_env({**os.environ, "HF_HOME": str(hf_home)}, False))
    assert outcome.returncode == 0, outcome.tail[-2000:]
    assert len({(s["stage"], s["done"]) for s in seen}) >= 2, seen
    assert seen[-1]["percent"] == 100.0, seen
    assert seen[-1]["done"] == seen[-1]["total"]
    assert {s["stage"] for s in seen} & {"Model Responding", "Postprocessing"} or any(
        s["stage"].startswith("Building contexts for") for s in seen
    )
    assert resource.LABEL_EVALJOB in cluster.config_map(progress.progress_configmap_name(name)).metadata.labels
