"""A burst of N submissions with the operator running: how long until every Job exists, and what it costs.

    .venv/bin/python bench/burst.py [--sizes 100 1000 10000] [--concurrency 20] [--timeout 600] [--json PATH]

Each N runs on a fresh set of processes, each component in its own, as on a cluster: the
Kubernetes API emulator (tests/kubeemu), the API (`evalkube-api`, auth and rate limit off), the
operator (`evalkube-operator --standalone`) and a minimal Job controller (this script with
--job-controller) that gives every Job the operator creates one Pending Pod (and marks the Job
active), so Jobs and Pods are both there. The bench submits N POST /evaluate, --concurrency at a
time, and follows the Jobs and Pods with watches. Then, with all of them present, it times 300
sequential GET /jobs/{id} (random queued jobs) and 100 GET /queue, once the operator and the API
have handled the burst's last events (each under 5% of a core). Per process it reads the peak RSS
(VmHWM) and the CPU seconds spent during the burst (first submission to the last Pod) from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CRDS = [REPO / "crds" / "evaljob.yaml", REPO / "crds" / "checkpointmerge.yaml"]
JOB_SELECTOR = "app.kubernetes.io/managed-by=evalkube"
CLK_TCK = os.sysconf("SC_CLK_TCK")
READS_JOB, READS_QUEUE = 300, 100
COMPONENTS = ("emulator", "api", "operator", "job-controller")


# ---- processes ------------------------------------------------------------------------------


class Proc:
    """One child process, its log in the run's folder, and its /proc figures."""

    def __init__(
        self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ):
        self.name, self.log = name, log
        with open(log, "wb") as out:
            # Its own session: a Ctrl-C reaches the bench only, which then stops each child in order.
            self.popen = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd,
                start_new_session=True,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """utime + stime so far (the fields after the command name in /proc/PID/stat)."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for {self.name}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (each component's graceful exit), then SIGKILL after `grace` seconds."""
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(probe: Callable[[], Any], what: str, procs: list[Proc], timeout: float = 60.0) -> Any:
    """Poll `probe` until truthy; fail early if a process died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            proc.check()
        with contextlib.suppress(OSError, httpx.HTTPError):
            if value := probe():
                return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


class Cluster:
    """Emulator, API, operator and Job controller for one N, started in order and stopped in reverse."""

    def __init__(self, tmp: Path, namespace: str, history: int) -> None:
        self.tmp, self.namespace, self.history = tmp, namespace, history
        self.procs: dict[str, Proc] = {}
        self.kube_url = self.api_url = ""
        self.counts_path = tmp / "emulator-requests.json"

    def start(self) -> Cluster:
        self._start_emulator()
        httpx.post(f"{self.kube_url}/api/v1/namespaces", json={"metadata": {"name": self.namespace}}).raise_for_status()
        kube_env = {"KUBECONFIG": str(self.tmp / "kubeconfig")}
        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self._add("api", [str(BIN / "evalkube-api")], {
            **kube_env, "EVALKUBE_API_HOST": "127.0.0.1", "EVALKUBE_API_PORT": str(api_port),
            "EVALKUBE_API_NAMESPACE": self.namespace, "EVALKUBE_API_AUTH": "none",
            "EVALKUBE_API_RATE_LIMIT_PER_SECOND": "0",
        })  # fmt: skip
        liveness = f"http://127.0.0.1:{free_port()}/healthz"
        self._add(
            "operator",
            [str(BIN / "evalkube-operator"), "--standalone", "--namespace", self.namespace, "--liveness", liveness],
            {**kube_env, "EVALKUBE_METRICS_PORT": "0"},
        )
        self._add("job-controller", [sys.executable, __file__, "--job-controller", self.kube_url, self.namespace])
        procs = list(self.procs.values())
        wait_for(lambda: http_ok(f"{self.api_url}/health"), "the API", procs)
        wait_for(lambda: http_ok(liveness), "the operator", procs)
        return self

    def _start_emulator(self) -> None:
        crds = [arg for path in CRDS for arg in ("--crd", str(path))]
        args = [sys.executable, "-m", "kubeemu", "--port", "0", "--kubeconfig", str(self.tmp / "kubeconfig"), *crds]
        args += ["--history-size", str(self.history), "--request-counts", str(self.counts_path)]
        proc = self._add("emulator", args, cwd=REPO / "tests")

        def url() -> str | None:
            lines = [line for line in proc.tail().splitlines() if line.startswith("http://")]
            return lines[0] if lines else None

        self.kube_url = wait_for(url, "the emulator's URL", [proc])

    def _add(self, name: str, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
        self.procs[name] = Proc(name, args, self.tmp / f"{name}.log", env, cwd)
        return self.procs[name]

    def check(self) -> None:
        for proc in self.procs.values():
            proc.check()

    def cpu(self) -> dict[str, float]:
        """Each child's CPU seconds so far, and the bench's own (its submissions and watches)."""
        own = os.times()
        return {**{name: proc.cpu_seconds() for name, proc in self.procs.items()}, "bench": own.user + own.system}

    def peak_rss(self) -> dict[str, float]:
        return {name: proc.peak_rss_mib() for name, proc in self.procs.items()}

    def emulator_requests(self) -> dict[str, Any] | None:
        """The emulator's request log summed up, asked for by SIGUSR1; None if it does not answer."""
        before = self.counts_path.stat().st_mtime_ns if self.counts_path.exists() else 0
        self.procs["emulator"].popen.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.counts_path.exists() and self.counts_path.stat().st_mtime_ns != before:
                return json.loads(self.counts_path.read_text())
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.procs[name].stop()

    def tails(self) -> str:
        return "\n".join(f"--- {name} log (tail) ---\n{proc.tail()}" for name, proc in self.procs.items())


# ---- watches --------------------------------------------------------------------------------


async def watch(http: httpx.AsyncClient, path: str, params: dict[str, str]) -> AsyncIterator[tuple[str, dict]]:
    """(type, object) of every event from a LIST's resourceVersion on, resumed across stream ends; a 410 relists."""
    version = ""
    while True:
        if not version:
            listed = (await http.get(path, params=params)).raise_for_status().json()
            for item in listed["items"]:
                yield "ADDED", item
            version = listed["metadata"]["resourceVersion"]
        query = {**params, "watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true"}
        query["timeoutSeconds"] = "300"
        async with http.stream("GET", path, params=query, timeout=httpx.Timeout(30, read=None)) as stream:
            async for line in stream.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    version = ""  # 410 Gone: start again from a LIST
                    break
                version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    yield event["type"], event["object"]


class Arrivals:
    """The names a watch has seen ADDED, and when the count first reached each target."""

    def __init__(self, target: int) -> None:
        self.names: set[str] = set()
        self.target = target
        self.all_at: float | None = None
        self.done = asyncio.Event()

    async def follow(self, http: httpx.AsyncClient, path: str, params: dict[str, str]) -> None:
        async for kind, obj in watch(http, path, params):
            if kind == "ADDED":
                self.names.add(obj["metadata"]["name"])
                if len(self.names) >= self.target and self.all_at is None:
                    self.all_at = time.perf_counter()
                    self.done.set()


# ---- the Job controller (its own process) -----------------------------------------------------


def pod_for(job: dict[str, Any]) -> dict[str, Any]:
    """The Pod a Job controller makes: the template's labels and spec, owned by the Job."""
    meta, template = job["metadata"], job["spec"]["template"]
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": meta["name"],
            "labels": {**template["metadata"].get("labels", {}), "job-name": meta["name"]},
            "ownerReferences": [{**owner, "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": template["spec"],
    }


async def job_controller(kube_url: str, namespace: str, workers: int = 4) -> None:
    """One Pending Pod per unsuspended Job, then status.active=1 on the Job, as the real controller does."""
    base = f"/api/v1/namespaces/{namespace}"
    jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    done: set[str] = set()
    limits = httpx.Limits(max_connections=workers + 1)
    async with httpx.AsyncClient(base_url=kube_url, timeout=30, limits=limits) as http:

        async def work() -> None:
            while True:
                job = await queue.get()
                name = job["metadata"]["name"]
                response = await http.post(f"{base}/pods", json=pod_for(job))
                if response.status_code not in (201, 409):
                    print(f"pod {name}: {response.status_code} {response.text[:300]}", file=sys.stderr, flush=True)
                    continue
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                await http.patch(
                    f"{jobs}/{name}/status",
                    json={"status": {"startTime": now, "active": 1}},
                    headers={"Content-Type": "application/merge-patch+json"},
                )

        tasks = [asyncio.create_task(work()) for _ in range(workers)]
        async for kind, job in watch(http, jobs, {"labelSelector": JOB_SELECTOR}):
            name = job["metadata"]["name"]
            if (
                kind == "DELETED"
                or name in done
                or job["spec"].get("suspend")
                or job["metadata"].get("deletionTimestamp")
            ):
                continue
            done.add(name)
            queue.put_nowait(job)
        for task in tasks:
            task.cancel()


# ---- one burst ------------------------------------------------------------------------------


async def submit_all(api_url: str, n: int, concurrency: int) -> tuple[list[str], Counter[int]]:
    """N POST /evaluate, `concurrency` at a time: the job ids, and the count of each non-2xx status."""
    gate = asyncio.Semaphore(concurrency)
    failures: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as http:

        async def one(i: int) -> str | None:
            body = {"model": "huggingface", "tasks": ["mme"], "model_args": {"pretrained": f"org/model-{i}"}}
            async with gate:
                response = await http.post("/evaluate", json=body)
            if response.is_success:
                return response.json()["job_id"]
            failures[response.status_code] += 1
            if sum(failures.values()) == 1:
                print(f"  first failed submission: {response.status_code} {response.text[:300]}", flush=True)
            return None

        ids = await asyncio.gather(*(one(i) for i in range(n)))
    return [i for i in ids if i], failures


async def read_medians(api_url: str, ids: list[str]) -> dict[str, Any]:
    """Sequential reads over one keep-alive connection: GET /jobs/{random id} and GET /queue, in ms."""
    pick = random.Random(0)
    statuses: Counter[str] = Counter()
    with_position = 0
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:

        async def timed(path: str) -> tuple[float, Any]:
            start = time.perf_counter()
            response = (await http.get(path)).raise_for_status()
            return (time.perf_counter() - start) * 1000, response.json()

        job_ms = []
        for _ in range(READS_JOB):
            ms, body = await timed(f"/jobs/{pick.choice(ids)}")
            job_ms.append(ms)
            statuses[body.get("status")] += 1
            with_position += body.get("position_in_queue") is not None
        queue_ms = [(await timed("/queue"))[0] for _ in range(READS_QUEUE)]
    return {
        "get_job_median_ms": statistics.median(job_ms),
        "get_queue_median_ms": statistics.median(queue_ms),
        "get_job_statuses": dict(statuses),
        "get_job_with_position": with_position,
    }


async def burst(cluster: Cluster, n: int, concurrency: int, timeout: float) -> dict[str, Any]:
    """Submit N, wait for N Jobs and N Pods (within `timeout` of the first submission), then read."""
    namespace = cluster.namespace
    jobs, pods = Arrivals(n), Arrivals(n)
    result: dict[str, Any] = {"evaljobs": n, "concurrency": concurrency}
    async with httpx.AsyncClient(base_url=cluster.kube_url, timeout=30) as kube:
        followers = [
            asyncio.create_task(jobs.follow(kube, f"/apis/batch/v1/namespaces/{namespace}/jobs", {})),
            asyncio.create_task(pods.follow(kube, f"/api/v1/namespaces/{namespace}/pods", {})),
        ]
        requests_before = cluster.emulator_requests()
        cpu_before = cluster.cpu()
        start = time.perf_counter()
        deadline = start + timeout
        try:
            ids, failures = await asyncio.wait_for(submit_all(cluster.api_url, n, concurrency), timeout)
            submitted = time.perf_counter()
            result.update(
                submitted=len(ids), submit_failures=dict(failures), submit_s=submitted - start,
                submit_rate=len(ids) / (submitted - start),
            )  # fmt: skip
            jobs.target = pods.target = len(ids)  # a refused submission makes no Job
            await wait_all(cluster, [jobs, pods], deadline)
        except TimeoutError:
            result.setdefault("submitted", None)
        finished = time.perf_counter()
        cpu_after = cluster.cpu()
        requests_after = cluster.emulator_requests()
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    result.update(
        timed_out=result["submitted"] is None or jobs.all_at is None or pods.all_at is None,
        jobs_existing=len(jobs.names),
        pods_existing=len(pods.names),
        all_jobs_after_s=None if jobs.all_at is None else jobs.all_at - start,
        all_pods_after_s=None if pods.all_at is None else pods.all_at - start,
        burst_s=finished - start,
        cpu_s={name: cpu_after[name] - cpu_before[name] for name in cpu_after},
    )
    if requests_before and requests_after:
        result["emulator_requests"] = requests_after["total"] - requests_before["total"]
        by = Counter(requests_after["by"])
        by.subtract(requests_before["by"])
        result["emulator_requests_by"] = {k: v for k, v in by.most_common() if v}
    if not result["timed_out"]:
        cluster.check()
        result["settle_s"] = await settle(cluster)
        result.update(await read_medians(cluster.api_url, ids))
    result["peak_rss_mib"] = cluster.peak_rss()
    return result


async def settle(cluster: Cluster, idle_share: float = 0.05, limit: float = 60.0) -> float:
    """Wait until the operator and the API use under `idle_share` of a core (the burst's last
    events handled), so that reads are timed against a quiet system; the seconds it took."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        before = cluster.cpu()
        await asyncio.sleep(0.5)
        after = cluster.cpu()
        if all(after[name] - before[name] < idle_share * 0.5 for name in ("operator", "api")):
            break
    return time.perf_counter() - start


async def wait_all(cluster: Cluster, arrivals: list[Arrivals], deadline: float) -> None:
    """Until every watch has seen its target, or the deadline (TimeoutError); a dead process fails at once."""
    while not all(a.all_at is not None or len(a.names) >= a.target for a in arrivals):
        cluster.check()
        if time.perf_counter() > deadline:
            raise TimeoutError
        for a in arrivals:
            if a.all_at is None and len(a.names) >= a.target:
                a.all_at = time.perf_counter()
        await asyncio.sleep(0.05)


def run_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="burst-") as tmp:
        cluster = Cluster(Path(tmp), "burst", args.emulator_history)
        try:
            cluster.start()
            return asyncio.run(burst(cluster, n, args.concurrency, args.timeout))
        except Exception:  # not on Ctrl-C or SIGTERM: then the logs say nothing new
            print(cluster.tails(), file=sys.stderr)
            raise
        finally:
            cluster.stop()


# ---- output ---------------------------------------------------------------------------------


def fmt(value: float | None, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} {unit}".strip()


def row(r: dict[str, Any]) -> str:
    if r["timed_out"]:
        exist = (
            f"timeout: {r['jobs_existing']}/{r['evaljobs']} Jobs, {r['pods_existing']} Pods after {r['burst_s']:.0f} s"
        )
    else:
        exist = fmt(r["all_jobs_after_s"], "s")
    rss, cpu = r["peak_rss_mib"], r["cpu_s"]
    cells = [
        str(r["evaljobs"]),
        fmt(r.get("submit_rate"), "/s", 0),
        exist,
        fmt(r.get("get_job_median_ms"), "ms", 2),
        fmt(r.get("get_queue_median_ms"), "ms", 1),
        fmt(rss["operator"], "MiB", 0),
        fmt(rss["api"], "MiB", 0),
        fmt(cpu["emulator"], "", 1),
        fmt(cpu["operator"], "", 1),
        fmt(cpu["api"], "", 1),
    ]
    return "| " + " | ".join(cells) + " |"


def print_table(results: list[dict[str, Any]]) -> None:
    header = [
        "EvalJobs", "submit rate", "all Jobs exist after", "GET /jobs/{id} median", "GET /queue median",
        "operator peak RSS", "API peak RSS", "emulator CPU s", "operator CPU s", "API CPU s",
    ]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for r in results:
        print(row(r))
    print()
    for r in results:
        extras = [
            f"all Pods after {fmt(r['all_pods_after_s'], 's')}",
            f"emulator requests {r.get('emulator_requests', '?')}",
            f"job-controller CPU {r['cpu_s']['job-controller']:.1f} s",
            f"bench CPU {r['cpu_s']['bench']:.1f} s",
            f"emulator peak RSS {r['peak_rss_mib']['emulator']:.0f} MiB",
            f"reads after {fmt(r.get('settle_s'), 's')} more to settle",
        ]
        if r.get("submit_failures"):
            extras.append(f"failed submissions {r['submit_failures']}")
        print(f"N={r['evaljobs']}: " + ", ".join(extras))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per N, from the first submission")
    parser.add_argument("--json", metavar="PATH", help="write every figure here")
    parser.add_argument(
        "--emulator-history", type=int, default=100_000, help="events the emulator keeps for watch resumes"
    )
    parser.add_argument("--job-controller", nargs=2, metavar=("KUBE_URL", "NAMESPACE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job_controller:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(job_controller(*args.job_controller))
        return

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cleanup runs as for Ctrl-C
    results = []
    try:
        for n in args.sizes:
            print(f"N={n}: starting processes", flush=True)
            results.append(run_size(n, args))
            r = results[-1]
            print(
                f"N={n}: submitted {r['submitted']} in {r.get('submit_s', 0):.1f} s; "
                f"{r['jobs_existing']} Jobs, {r['pods_existing']} Pods after {r['burst_s']:.1f} s",
                flush=True,
            )
    finally:
        if results:
            print()
            print_table(results)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
