"""How fast the API answers: submissions per second, and read latency with many EvalJobs cached.

    .venv/bin/python bench/api_latency.py [--jobs 1000] [--concurrency 50] [--reads 500]

Starts the Kubernetes API emulator (tests/kubeemu) and the real API on uvicorn (as the tests do),
submits --jobs evaluations through AsyncEvalClient, --concurrency at a time, then times --reads
sequential requests to each read endpoint over one keep-alive connection and prints the median
and 99th percentile. Reads come from the watch cache, so they should not grow with the number of
EvalJobs beyond the in-memory sort of /queue and the position count of a queued job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import kubernetes
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from evalkube import AsyncEvalClient, kube, resource  # noqa: E402
from evalkube.api.settings import ApiSettings  # noqa: E402

from harness.api_server import CRD, ApiServer  # noqa: E402
from kubeemu import KubeEmulator  # noqa: E402


async def submit_all(url: str, jobs: int, concurrency: int) -> list[str]:
    limit = asyncio.Semaphore(concurrency)
    async with AsyncEvalClient(url, timeout=60) as client:

        async def one(i: int) -> str:
            async with limit:
                job = await client.evaluate("huggingface", ["mme"], model_args={"pretrained": f"org/model-{i}"})
                return job["job_id"]

        return await asyncio.gather(*(one(i) for i in range(jobs)))


def timed(http: httpx.Client, path: str, reads: int) -> tuple[float, float]:
    samples = []
    for _ in range(reads):
        start = time.perf_counter()
        http.get(path).raise_for_status()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), statistics.quantiles(samples, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()

    emulator = KubeEmulator().start()
    emulator.apply_crd(yaml.safe_load(CRD.read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = str(emulator.write_kubeconfig(Path(tmp) / "kubeconfig", token="api"))
        catalog = {"tasks": [f"task_{i}" for i in range(2000)] + ["mme"], "models": ["huggingface"]}
        kubernetes.client.CoreV1Api(kube.api_client(kubeconfig)).create_namespaced_config_map(
            "default", {"metadata": {"name": "evalkube-catalog"}, "data": {resource.CATALOG_KEY: json.dumps(catalog)}}
        )
        with (
            ApiServer(ApiSettings(kubeconfig=kubeconfig, auth="none", rate_limit_per_second=0)) as server,
            httpx.Client(base_url=server.url) as http,
        ):
            start = time.perf_counter()
            job_ids = asyncio.run(submit_all(server.url, args.jobs, args.concurrency))
            elapsed = time.perf_counter() - start
            print(f"submitted {len(set(job_ids))} jobs, {args.concurrency} at a time: {len(job_ids) / elapsed:.0f}/s")
            last = job_ids[-1]
            for path in ("/health", f"/jobs/{last}", "/queue", "/tasks"):
                median, p99 = timed(http, path, args.reads)
                print(f"GET {path:<22} median {median:6.2f} ms   p99 {p99:6.2f} ms   ({args.jobs} EvalJobs cached)")
    emulator.stop()


if __name__ == "__main__":
    main()
