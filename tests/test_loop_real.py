"""The full loop with a REAL evaluation: EvalClient -> API -> EvalJob -> operator -> Job -> the
kubelet runs the container's command (`evalkube-runner run`) -> real lmms-eval on a tiny model and
a tiny task brought in a ConfigMap -> results ConfigMap -> status -> GET /jobs/{id}.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import psutil
import pytest

from evalkube import EvalClient, EvalServerError, JobCancelledError, JobFailedError

from evaluator_fixtures import METRIC_KEY, TASK_NAME, make_tiny_task
from harness.kubelet import FakeKubelet

pytestmark = [pytest.mark.heavy, pytest.mark.usefixtures("operator")]


@pytest.fixture
def pods(kube_client: kubernetes.client.ApiClient, namespace: str, kubeconfigs: dict[str, str], hf_home: Path,
         tmp_path: Path) -> Iterator[FakeKubelet]:  # fmt: skip
    """A kubelet that really runs evaluator containers, as the evaluator's service account."""
    kubelet = FakeKubelet(
        kube_client,
        namespace,
        run_containers=True,
        container_kubeconfig=kubeconfigs["evaluator"],
        image_env={"HF_HOME": str(hf_home)},
        workdir=tmp_path / "pods",
    ).start()
    yield kubelet
    kubelet.stop()


@pytest.fixture
def tasks_config_map(kube_client: kubernetes.client.ApiClient, namespace: str) -> str:
    _, files = make_tiny_task()
    kubernetes.client.CoreV1Api(kube_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "tiny-tasks"}, "data": files}
    )
    return "tiny-tasks"


def submit(client: EvalClient, model: Path | str, tasks_config_map: str, task: str = TASK_NAME) -> str:
    return client.evaluate(
        model="huggingface",
        tasks=[task],
        num_gpus=0,
        log_samples=True,
        model_args={"pretrained": str(model)},
        custom_tasks=tasks_config_map,
    )["job_id"]


def test_a_real_evaluation_comes_back_with_its_metric(eval_client: EvalClient, pods: FakeKubelet, tiny_model: Path,
                                                      tasks_config_map: str, cluster: Any) -> None:  # fmt: skip
    started = time.monotonic()
    name = submit(eval_client, tiny_model, tasks_config_map)
    done = eval_client.wait_for_job(name, poll_interval=0.2, timeout=240, verbose=False)
    print(f"full loop wall time: {time.monotonic() - started:.1f}s")

    assert done["status"] == "completed"
    assert done["created_at"] <= done["started_at"] < done["completed_at"]  # lmms-eval ran for seconds
    assert done["metrics"]["results"][TASK_NAME][METRIC_KEY] == 1.0  # the tiny model was trained to answer all
    assert done["metrics"]["n-samples"][TASK_NAME]["effective"] == 5
    assert done["request"]["custom_tasks"] == {"config_map": tasks_config_map}
    assert "lmms_eval" in pods.logs[name].read_text()  # lmms-eval's own output reached the container log
    assert cluster.config_map(f"{name}-result") is not None


def test_an_unknown_task_fails_with_a_message_naming_it(eval_client: EvalClient, pods: FakeKubelet, tiny_model: Path,
                                                        tasks_config_map: str) -> None:  # fmt: skip
    name = submit(eval_client, tiny_model, tasks_config_map, task="evalkube_no_such_task")
    with pytest.raises(JobFailedError, match="evalkube_no_such_task"):
        eval_client.wait_for_job(name, poll_interval=0.2, timeout=240, verbose=False)


def test_a_missing_model_path_fails_plainly(
    eval_client: EvalClient, pods: FakeKubelet, tmp_path: Path, tasks_config_map: str
) -> None:
    missing = tmp_path / "no-such-checkpoint"
    name = submit(eval_client, missing, tasks_config_map)
    with pytest.raises(JobFailedError) as failed:
        eval_client.wait_for_job(name, poll_interval=0.2, timeout=240, verbose=False)
    assert str(missing) in str(failed.value)


def _lmms_eval_processes(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in process.info["cmdline"] or []) and "lmms_launch" in " ".join(
            process.info["cmdline"] or []
        ):
            found.append(process)
    return found


def test_a_crash_mid_run_fails_the_job(eval_client: EvalClient, pods: FakeKubelet, tiny_model: Path, tasks_config_map: str,
                                       cluster: Any) -> None:  # fmt: skip
    name = submit(eval_client, tiny_model, tasks_config_map)
    [child] = cluster.wait(lambda: _lmms_eval_processes(str(tiny_model)), timeout=60, what="lmms-eval to start")
    child.kill()  # lmms-eval dies mid-run (as an OOM kill or a segfault would)
    with pytest.raises(JobFailedError, match="lmms-eval"):
        eval_client.wait_for_job(name, poll_interval=0.2, timeout=120, verbose=False)


def test_cancel_while_running_kills_the_whole_process_group(eval_client: EvalClient, pods: FakeKubelet, tiny_model: Path,
                                                            tasks_config_map: str, cluster: Any) -> None:  # fmt: skip
    name = submit(eval_client, tiny_model, tasks_config_map)
    cluster.wait(lambda: _lmms_eval_processes(str(tiny_model)), timeout=60, what="lmms-eval to start")
    cluster.wait(lambda: eval_client.get_job(name)["status"] == "running", what="running")
    runner = pods.processes[name]

    eval_client.cancel_job(name)
    with pytest.raises(JobCancelledError):
        eval_client.wait_for_job(name, poll_interval=0.2, timeout=60, verbose=False)
    cluster.wait(lambda: runner.poll() is not None, timeout=30, what="the runner to exit")
    assert runner.returncode == 143  # 128 + SIGTERM: it was asked to stop, and did
    cluster.wait(lambda: not _lmms_eval_processes(str(tiny_model)), timeout=30, what="lmms-eval's process group to die")
    assert cluster.job(name) is None


def test_the_images_catalog_makes_the_api_reject_typos(eval_client: EvalClient, kubeconfigs: dict[str, str], cluster: Any,
                                                       tiny_model: Path, tasks_config_map: str) -> None:  # fmt: skip
    """`evalkube-runner catalog` (the chart's install hook) feeds GET /tasks and the name checks."""
    runner = str(Path(sys.executable).with_name("evalkube-runner"))
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(Path.home()), "KUBECONFIG": kubeconfigs["evaluator"]}
    subprocess.run(
        [runner, "catalog", "--configmap", "evalkube-catalog", "--namespace", cluster.namespace],
        env=env,
        check=True,
        timeout=180,
    )

    tasks = cluster.wait(lambda: _listing(eval_client.list_tasks), what="the catalog to reach the API")
    assert "mmmu_val" in tasks and "mme" in tasks
    assert "huggingface" in eval_client.list_models() and "vllm" in eval_client.list_models()
    with pytest.raises(EvalServerError, match="did you mean 'mmmu_val'") as typo:
        eval_client.evaluate(model="huggingface", tasks=["mmmu_vall"], model_args={"pretrained": str(tiny_model)})
    assert typo.value.response.status_code == 422
    with pytest.raises(EvalServerError, match="unknown model 'hugingface'") as model_typo:
        eval_client.evaluate(model="hugingface", tasks=["mme"])
    assert model_typo.value.response.status_code == 422
    # a task the catalog doesn't know is fine when the request brings its definition
    assert submit(eval_client, tiny_model, tasks_config_map)


def _listing(list_call: Any) -> list[str] | None:
    try:
        return list_call()
    except Exception:
        return None
