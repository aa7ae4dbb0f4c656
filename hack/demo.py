"""evalkube end to end on one machine, no cluster needed.

Starts the project's Kubernetes API emulator (tests/kubeemu) with the EvalJob CRD, the real
operator (`evalkube-operator`) and the real API (`evalkube-api`) as processes, and plays the
kubelet by running each evaluator pod's command (`evalkube-runner run`) as a local process. Then it
trains a tiny model, puts a tiny task in a ConfigMap, submits an evaluation with `EvalClient`
exactly as a training loop would, waits, and prints the metrics lmms-eval produced.

    bash hack/demo.sh            # or, once installed: .venv/bin/python hack/demo.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import kubernetes  # noqa: E402
import yaml  # noqa: E402

from evalkube import EvalClient, kube  # noqa: E402

from evaluator_fixtures import make_tiny_model, make_tiny_task  # noqa: E402
from harness.kubelet import FakeKubelet  # noqa: E402
from kubeemu import KubeEmulator  # noqa: E402

BIN = Path(sys.executable).parent
NAMESPACE = "default"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="evalkube-demo-"))
    print(f"working directory: {work}")
    emulator = KubeEmulator().start()
    emulator.apply_crd(yaml.safe_load((REPO / "crds" / "evaljob.yaml").read_text()))
    kubeconfig = str(emulator.write_kubeconfig(work / "kubeconfig", token="demo"))
    # The work folder stands in for the shared volume the training pods and evalkube's pods mount
    # at the same path; the API authenticates callers (its default) and the demo's token is an admin's.
    shared = json.dumps([{"claimName": "demo", "mountPath": str(work)}])
    env = {**os.environ, "KUBECONFIG": kubeconfig, "EVALKUBE_SHARED_VOLUMES": shared}
    port = free_port()
    logs = open(work / "components.log", "wb")  # noqa: SIM115
    components = [
        subprocess.Popen([BIN / "evalkube-operator", "--namespace", NAMESPACE], env=env, stdout=logs, stderr=logs),
        subprocess.Popen(
            [BIN / "evalkube-api", "--port", str(port), "--namespace", NAMESPACE], env=env, stdout=logs, stderr=logs
        ),
    ]
    api_client = kube.api_client(kubeconfig)
    kubelet = FakeKubelet(
        api_client, NAMESPACE, run_containers=True, container_kubeconfig=kubeconfig, workdir=work / "pods"
    ).start()
    try:
        print("training a tiny model (a few seconds) ...")
        model_dir = make_tiny_model(work / "models")
        task, files = make_tiny_task()
        kubernetes.client.CoreV1Api(api_client).create_namespaced_config_map(
            NAMESPACE, {"metadata": {"name": "demo-tasks"}, "data": files}
        )

        with EvalClient(f"http://127.0.0.1:{port}", timeout=30, token="demo") as client:
            deadline = time.monotonic() + 60
            while not client.is_healthy():
                if time.monotonic() > deadline:
                    raise SystemExit(f"the API did not become healthy; see {work / 'components.log'}")
                time.sleep(0.2)
            job = client.evaluate(
                model="huggingface",
                tasks=[task],
                num_gpus=0,
                model_args={"pretrained": str(model_dir), "device_map": "cpu"},
                custom_tasks="demo-tasks",
            )
            print(f"submitted {job['job_id']}: {job['message']}")
            done = client.wait_for_job(job["job_id"], poll_interval=1.0, timeout=600, verbose=False)
        print(f"{done['job_id']} {done['status']} (started {done['started_at']}, completed {done['completed_at']})")
        print(json.dumps(done["metrics"]["results"], indent=2))
        print(f"kubectl-style view: the EvalJob, Job and results ConfigMap live in the emulator; logs in {work}")
    finally:
        kubelet.stop()
        for process in components:
            process.send_signal(signal.SIGTERM)
        for process in components:
            process.wait(15)
        emulator.stop()


if __name__ == "__main__":
    main()
