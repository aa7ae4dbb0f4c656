"""A real evaluation's log, followed through REST for the pod's whole life: the kubelet runs the
evaluator container (`evalkube-runner run`, real lmms-eval) and feeds what it prints to the
emulator's pods/log; the API streams it from there, as from a cluster's kubelet."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from evalkube import EvalClient, EvalServerError

from evaluator_fixtures import TASK_NAME, make_tiny_task
from harness.api_server import wait_until
from harness.kubelet import FakeKubelet
from kubeemu import KubeEmulator

pytestmark = [pytest.mark.heavy, pytest.mark.usefixtures("operator")]


@pytest.fixture
def pods(kube_client: kubernetes.client.ApiClient, namespace: str, kubeconfigs: dict[str, str], hf_home: Path,
         tmp_path: Path, kube_emulator: KubeEmulator) -> Iterator[FakeKubelet]:  # fmt: skip
    kubelet = FakeKubelet(kube_client, namespace, run_containers=True, container_kubeconfig=kubeconfigs["evaluator"],
                          image_env={"HF_HOME": str(hf_home)}, workdir=tmp_path / "pods",
                          emulator=kube_emulator).start()  # fmt: skip
    yield kubelet
    kubelet.stop()


def test_the_log_of_a_real_run_is_followed_from_start_to_end(
    eval_client: EvalClient, pods: FakeKubelet, tiny_model: Path, kube_client: kubernetes.client.ApiClient,
    namespace: str,
) -> None:  # fmt: skip
    _, files = make_tiny_task()
    kubernetes.client.CoreV1Api(kube_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "tiny-tasks"}, "data": files}
    )
    name = eval_client.evaluate("huggingface", [TASK_NAME], model_args={"pretrained": str(tiny_model)}, num_gpus=0,
                                custom_tasks="tiny-tasks")["job_id"]  # fmt: skip

    def log_started() -> bool:
        try:
            return bool(eval_client.get_logs(name))
        except EvalServerError as error:
            assert error.response.status_code == 409  # no log yet: queued or starting
            return False

    wait_until(log_started, "the evaluator's first output", timeout=120, interval=0.1)
    followed: list[str] = []
    ended = threading.Event()

    def follow() -> None:
        followed.extend(eval_client.stream_logs(name))
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    assert ended.wait(240), "the follow did not end with the container"
    text = "".join(followed)
    assert text.startswith("evalkube-runner: ")  # from the first line, not only what came later
    assert "lmms_eval" in text
    assert text.rstrip().endswith(f"results written to ConfigMap {namespace}/{name}-result")
    assert eval_client.wait_for_job(name, poll_interval=0.2, timeout=60, verbose=False)["status"] == "completed"
    assert eval_client.get_logs(name) == pods.logs[name].read_bytes().decode()  # the kubelet's own record, as is
    assert eval_client.get_logs(name, tail_lines=1).endswith(f"{name}-result\n")
