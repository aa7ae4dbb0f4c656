"""Latency of the loop: POST /evaluate -> the Job exists, and the Job completes -> GET /jobs/{id}
shows completed.

    .venv/bin/python bench/loop_latency.py [--jobs 100]

Every component in its own process, as in a cluster: the Kubernetes API emulator
(`python -m kubeemu`), the operator (`evalkube-operator`) and the API (`evalkube-api`); this
process is the client, and plays the Job controller and kubelet (tests/harness/kubelet.py).
Jobs are measured one at a time (no queueing effects). A watch on Jobs stamps when each Job
appears; for completion, the clock starts right before the Job's status is patched Complete and
stops when GET /jobs/{id} first answers "completed" (polled every 5 ms). Prints median and p95.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import kubernetes

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from evalkube import kube  # noqa: E402

from harness.kubelet import FakeKubelet  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = {"results": {"mme": {"exact_match,none": 0.5}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(probe, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := probe():
                return value
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.005)
    raise TimeoutError(what)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="evalkube-bench-"))
    kubeconfig = work / "kubeconfig"
    namespace = "bench"
    processes: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    try:
        emulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubeemu",
                "--kubeconfig",
                str(kubeconfig),
                "--crd",
                str(REPO / "crds" / "evaljob.yaml"),
            ],
            env=env,
            stdout=subprocess.PIPE,
        )
        processes.append(emulator)
        assert emulator.stdout is not None
        emulator.stdout.readline()  # the URL: the emulator is serving
        client = kube.api_client(str(kubeconfig))
        kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": namespace}})

        # no authentication: this measures the loop, not the reviews (bench/auth_latency.py does)
        run_env = {**os.environ, "KUBECONFIG": str(kubeconfig), "EVALKUBE_API_AUTH": "none",
                   "EVALKUBE_API_RATE_LIMIT_PER_SECOND": "0"}  # fmt: skip
        log = open(work / "components.log", "wb")  # noqa: SIM115
        processes.append(
            subprocess.Popen([BIN / "evalkube-operator", "--namespace", namespace], env=run_env, stdout=log, stderr=log)
        )
        port = free_port()
        processes.append(
            subprocess.Popen(
                [BIN / "evalkube-api", "--port", str(port), "--namespace", namespace],
                env=run_env,
                stdout=log,
                stderr=log,
            )
        )
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        wait_for(lambda: api.get("/health").status_code == 200, "the API to be healthy")

        seen: dict[str, float] = {}
        stop = threading.Event()

        def watch_jobs() -> None:
            batch = kubernetes.client.BatchV1Api(kube.api_client(str(kubeconfig)))
            try:
                for event in kubernetes.watch.Watch().stream(
                    batch.list_namespaced_job, namespace, timeout_seconds=3600
                ):
                    seen.setdefault(event["object"].metadata.name, time.perf_counter())
                    if stop.is_set():
                        return
            except Exception:
                if not stop.is_set():
                    raise

        threading.Thread(target=watch_jobs, daemon=True).start()
        kubelet = FakeKubelet(client, namespace, workdir=work / "kubelet").start()

        to_job: list[float] = []
        to_completed: list[float] = []
        for _ in range(args.jobs):
            started = time.perf_counter()
            response = api.post("/evaluate", json={"model": "huggingface", "tasks": ["mme"], "num_gpus": 0})
            response.raise_for_status()
            name = response.json()["job_id"]
            to_job.append(wait_for(lambda: seen.get(name), f"Job {name}") - started)

            kubelet.run_pod(name)
            kubelet.write_results(name, RESULTS)
            kubelet.terminate_container(name, 0)
            started = time.perf_counter()
            kubelet.finish_job(name, succeeded=True)
            wait_for(lambda: api.get(f"/jobs/{name}").json()["status"] == "completed", f"{name} completed")
            to_completed.append(time.perf_counter() - started)
        stop.set()
        kubelet.stop()

        for label, values in (
            ("POST /evaluate -> Job exists", to_job),
            ("Job complete -> GET shows completed", to_completed),
        ):
            print(
                f"{label:40s} n={len(values)}  median {statistics.median(values) * 1000:7.1f} ms  p95 {percentile(values, 0.95) * 1000:7.1f} ms"
            )
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
