"""The `evalkube` command line on a real evaluation, from submit to metrics, with no cluster.

As hack/demo.py: the Kubernetes API emulator, the real operator and API as processes, the test
kubelet running each evaluator pod's command (`evalkube-runner run`, real lmms-eval on a tiny
model) and feeding what it prints to the emulator's pods/log. Then it runs the CLI as a person
would and prints each command with its output: a terminal transcript.

    .venv/bin/python hack/cli_demo.py
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import kubernetes  # noqa: E402
import yaml  # noqa: E402

from evalkube import kube  # noqa: E402

from evaluator_fixtures import make_tiny_model, make_tiny_task  # noqa: E402
from harness.kubelet import FakeKubelet  # noqa: E402
from kubeemu import KubeEmulator  # noqa: E402

BIN = Path(sys.executable).parent
NAMESPACE = "default"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(env: dict[str, str], *args: str, show: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `evalkube ARGS` and print it as a terminal would show it."""
    print(f"$ {show or shlex.join(['evalkube', *args])}", flush=True)
    done = subprocess.run([str(BIN / "evalkube"), *args], env=env, capture_output=True, text=True, timeout=600)
    sys.stdout.write(done.stderr + done.stdout)
    if done.returncode:
        print(f"(exit code {done.returncode})")
    print(flush=True)
    return done


def scrape(url: str, prefixes: tuple[str, ...]) -> None:
    print(f"$ curl -s {url} | grep -E '^({'|'.join(prefixes)})'")
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(prefixes) and not line.endswith(" 0.0"):
                print(line)
    print(flush=True)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="evalkube-cli-demo-"))
    emulator = KubeEmulator().start()
    emulator.apply_crd(yaml.safe_load((REPO / "crds" / "evaljob.yaml").read_text()))
    kubeconfig = str(emulator.write_kubeconfig(work / "kubeconfig", token="demo"))
    port, metrics_port = free_port(), free_port()
    shared = json.dumps([{"claimName": "shared", "mountPath": str(work)}])
    env = {**os.environ, "KUBECONFIG": kubeconfig, "EVALKUBE_SHARED_VOLUMES": shared,
           "EVALKUBE_METRICS_PORT": str(metrics_port), "EVALKUBE_PROGRESS_POLL_SECONDS": "1"}  # fmt: skip
    logs = open(work / "components.log", "wb")  # noqa: SIM115
    components = [
        subprocess.Popen([BIN / "evalkube-operator", "--namespace", NAMESPACE], env=env, stdout=logs, stderr=logs),
        subprocess.Popen(
            [BIN / "evalkube-api", "--port", str(port), "--namespace", NAMESPACE], env=env, stdout=logs, stderr=logs
        ),
    ]
    api_client = kube.api_client(kubeconfig)
    kubelet = FakeKubelet(api_client, NAMESPACE, run_containers=True, container_kubeconfig=kubeconfig,
                          workdir=work / "pods", emulator=emulator).start()  # fmt: skip
    # The API authenticates (its default): the CLI sends the kubeconfig's token, an admin's here.
    cli_env = {**os.environ, "EVALKUBE_URL": f"http://127.0.0.1:{port}", "EVALKUBE_TOKEN": "demo", "COLUMNS": "120"}
    try:
        model_dir = make_tiny_model(work / "models")
        task, files = make_tiny_task()
        kubernetes.client.CoreV1Api(api_client).create_namespaced_config_map(
            NAMESPACE, {"metadata": {"name": "demo-tasks"}, "data": files}
        )
        deadline = time.monotonic() + 60
        while subprocess.run([str(BIN / "evalkube"), "queue"], env=cli_env, capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise SystemExit(f"the API did not come up; see {work / 'components.log'}")
            time.sleep(0.3)

        submitted = run(cli_env, "-o", "json", "submit", "--model", "huggingface", "--task", task, "--num-gpus", "0",
                        "--model-arg", f"pretrained={model_dir}", "--model-arg", "device_map=cpu",
                        "--custom-tasks", "demo-tasks")  # fmt: skip
        job = json.loads(submitted.stdout)["job_id"]
        run(cli_env, "list")
        run(cli_env, "wait", job, "--interval", "0.5", "--timeout", "600")
        run(cli_env, "logs", job, "--tail", "4")
        run(cli_env, "get", job)
        scrape(f"http://127.0.0.1:{port}/metrics", ("evalkube_evaljobs", 'evalkube_api_requests_total{method="POST"'))
        scrape(f"http://127.0.0.1:{metrics_port}/metrics", ("evalkube_operator_reconciles_total",
               "evalkube_evaljob_queue_wait_seconds_count", "evalkube_evaljob_run_duration_seconds_sum"))  # fmt: skip
        events = kubernetes.client.CoreV1Api(api_client).list_namespaced_event(NAMESPACE).items
        print(f"$ kubectl describe ej {job}   # Events:")
        for event in sorted(events, key=lambda e: int(e.metadata.resource_version)):
            if event.involved_object.name == job:
                print(f"  {event.type:8s} {event.reason:10s} {event.source.component}  {event.message}")
    finally:
        kubelet.stop()
        for process in components:
            process.send_signal(signal.SIGTERM)
        for process in components:
            process.wait(15)
        emulator.stop()


if __name__ == "__main__":
    main()
