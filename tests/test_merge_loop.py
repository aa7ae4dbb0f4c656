"""Checkpoint merging and the training-loop contract, through every real component.

A real 2-rank FSDP2 checkpoint of the tiny model (tests/checkpoint_fixtures.py) sits on the shared
volume (the session's temporary folder, mounted at the same path in every "pod"). POST /merge
(our client and lmms-eval's own) becomes a CheckpointMerge, the real operator runs it as a Job,
the test kubelet runs the container's real command (`evalkube-runner merge`), and the answer comes
back synchronously. Then lmms-engine's real EvalServerBackend (0.1.4) submits the sharded
checkpoint with `lmms_engine_kwargs`, the evaluator pod merges and evaluates it with real
lmms-eval, and the backend opens the result files the API names and reports the metric.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import torch
from lmms_eval.entrypoints.client import EvalClient as UpstreamEvalClient
from safetensors.torch import load_file

from evalkube import EvalClient, EvalServerError
from evalkube.api.settings import ApiSettings

from checkpoint_fixtures import SHARD_DIRS, expected_state_dict, make_checkpoints
from evaluator_fixtures import METRIC_KEY, TASK_NAME, make_tiny_task
from harness.api_server import ApiServer
from harness.kubelet import FakeKubelet

pytestmark = [pytest.mark.heavy, pytest.mark.usefixtures("operator"), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def checkpoints(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_checkpoints(tiny_model, tmp_path_factory.mktemp("training"), ("fsdp2", "dcp"))


@pytest.fixture
def checkpoint(checkpoints: dict[str, Path], tmp_path: Path) -> Path:
    """A fresh copy of the FSDP2 checkpoint (a merge may write into it), as `run/checkpoint-100`."""
    copy = tmp_path / "run" / checkpoints["fsdp2"].name
    shutil.copytree(checkpoints["fsdp2"], copy)
    return copy


@pytest.fixture
def pods(kube_client: kubernetes.client.ApiClient, namespace: str, kubeconfigs: dict[str, str], hf_home: Path,
         tmp_path: Path) -> Iterator[FakeKubelet]:  # fmt: skip
    kubelet = FakeKubelet(
        kube_client, namespace, run_containers=True, container_kubeconfig=kubeconfigs["evaluator"],
        image_env={"HF_HOME": str(hf_home)}, workdir=tmp_path / "pods",
    ).start()  # fmt: skip
    yield kubelet
    kubelet.stop()


@pytest.fixture
def api(api_kubeconfig: str, namespace: str, shared_volumes: str) -> Iterator[str]:
    """The API as deployed: POST /merge waits for the merge (a real one takes seconds here)."""
    settings = ApiSettings(namespace=namespace, kubeconfig=api_kubeconfig, shared_volumes=shared_volumes)
    with ApiServer(settings) as server:
        yield server.url


def merged_tensors(folder: Path) -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        found.update(load_file(file))
    return found


def assert_exact(folder: Path, expected: dict[str, torch.Tensor]) -> None:
    tensors = merged_tensors(folder)
    for key, tensor in tensors.items():
        assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, expected[key]), key
    assert set(tensors) <= set(expected) and len(tensors) >= len(expected) - 1  # a tied head may be left out


def test_post_merge_runs_a_job_and_answers_synchronously(
    api: str, pods: FakeKubelet, checkpoint: Path, tiny_model: Path, tmp_path: Path, kube_client, namespace
) -> None:
    output = tmp_path / "merged-ema"
    with EvalClient(api, timeout=120) as client:
        started = time.monotonic()
        answer = client.merge_checkpoint(str(checkpoint), output_path=str(output), checkpoint_type="ema")
        print(f"POST /merge wall time: {time.monotonic() - started:.1f}s")
        assert (answer["success"], answer["merged_path"], answer["status"]) == (True, str(output), "completed")
        assert client.get_merge(answer["merge_id"])["merged_path"] == str(output)
    assert_exact(output, expected_state_dict(tiny_model, "ema"))
    assert (output / "config.json").is_file() and (output / "tokenizer.json").is_file()

    events = kubernetes.client.CoreV1Api(kube_client).list_namespaced_event(namespace).items
    story = [e.reason for e in events if e.involved_object.name == answer["merge_id"]]
    assert sorted(story) == ["Completed", "Queued", "Running"]  # `kubectl describe ckm` reads as its history
    assert all(
        e.involved_object.kind == "CheckpointMerge" for e in events if e.involved_object.name == answer["merge_id"]
    )

    job = kubernetes.client.BatchV1Api(kube_client).read_namespaced_job(answer["merge_id"], namespace)
    container = job.spec.template.spec.containers[0]
    assert container.args[0] == "merge" and "nvidia.com/gpu" not in (container.resources.limits or {})


def test_lmms_evals_own_client_merges_a_parent_folder_into_its_latest_checkpoint(
    api: str, pods: FakeKubelet, checkpoint: Path, tiny_model: Path
) -> None:
    older = checkpoint.parent / "checkpoint-50"
    older.mkdir()
    with UpstreamEvalClient(api, timeout=120) as upstream:
        answer = upstream.merge_checkpoint(str(checkpoint.parent))  # the parent: highest checkpoint-N
    assert answer["success"] is True
    # No output_path: written into the checkpoint path as given, as lmms-engine's FSDP2Merger does.
    assert_exact(Path(answer["merged_path"]), expected_state_dict(tiny_model, "regular"))


@pytest.mark.parametrize(
    ("damage", "status", "reason"),
    [
        ("missing checkpoint", 404, "does not exist"),
        ("missing rank file", 404, "rank"),
        ("no checkpoint-N under a parent", 400, "checkpoint-"),
    ],
)
def test_a_users_mistake_keeps_lmms_evals_http_class(
    api: str, pods: FakeKubelet, checkpoint: Path, tmp_path: Path, damage: str, status: int, reason: str
) -> None:
    target = checkpoint
    if damage == "missing checkpoint":
        target = checkpoint.parent / "checkpoint-999" / "nope"
    elif damage == "missing rank file":
        next((checkpoint / SHARD_DIRS["regular"]).glob("*rank_1.pt")).unlink()
    else:
        target = tmp_path / "empty-run"
        target.mkdir()
    with EvalClient(api, timeout=120) as client, pytest.raises(EvalServerError) as refused:
        client.merge_checkpoint(str(target))
    assert refused.value.response.status_code == status
    assert reason in str(refused.value.detail)


@pytest.fixture
def tiny_tasks(kube_client: kubernetes.client.ApiClient, namespace: str) -> str:
    _, files = make_tiny_task()
    kubernetes.client.CoreV1Api(kube_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "tiny-tasks"}, "data": files}
    )
    return "tiny-tasks"


def test_lmms_engines_eval_server_backend_gets_its_metrics(
    api: str, pods: FakeKubelet, checkpoint: Path, tiny_tasks: str
) -> None:
    from lmms_engine.eval.backends import EvalServerBackend

    backend = EvalServerBackend(
        url=api,
        poll_interval=0.5,
        eval_config={
            "model": "huggingface",
            "tasks": [TASK_NAME],
            "model_args": {},
            "checkpoint_key": "pretrained",
            "num_gpus": 0,
            "log_samples": True,
        },
    )
    # lmms-eval 0.7.3's own client has no lmms_engine_kwargs parameter (TypeError); ours does, and
    # carries what the backend cannot say (the tiny task's ConfigMap) as a default.
    backend.client = EvalClient(api, timeout=60, defaults={"custom_tasks": tiny_tasks})
    started = time.monotonic()
    job_id = backend.submit_eval(
        str(checkpoint), step=100, eval_output_dir=str(checkpoint / "eval"), checkpoint_type="regular"
    )
    assert job_id is not None
    completed: list[tuple[int, dict[str, float]]] = []
    while not completed and time.monotonic() - started < 240:
        completed = backend.check_and_get_completed()
        time.sleep(0.5)
    print(f"lmms-engine flow end to end: {time.monotonic() - started:.1f}s")
    metric = f"eval/{TASK_NAME}_{METRIC_KEY.split(',')[0]}"
    ((step, metrics),) = completed
    assert (step, metrics[metric]) == (100, 1.0)  # beside it, lmms-eval's stderr variants

    job = EvalClient(api).get_job(job_id)
    ((_, files),) = job["result"].items()  # lmms-eval's shape, paths on the shared volume
    assert Path(files["results"]).is_relative_to(checkpoint / "eval") and Path(files["results"]).is_file()
    assert job["metrics"]["results"][TASK_NAME][METRIC_KEY] == 1.0
    assert job["request"]["lmms_engine_kwargs"]["model_path"] == str(checkpoint)
