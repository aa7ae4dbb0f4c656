"""evalkube's API against lmms-eval's own HTTP server, under one and the same load generator.

    .venv/bin/python bench/vs_lmms_eval.py [--rounds 3] [--concurrency 20] [--submissions 300]
                                           [--reads 3000] [--json PATH]

Each server runs in its own process: lmms-eval 0.7.3's real server (its `launch_server`, every
request handler real; only the scheduler's job worker is held, so submitted jobs stay queued and
nothing evaluates), and evalkube as the Kubernetes API emulator (`python -m kubeemu`) plus the
`evalkube-api` console script (no authentication, no rate limit). This process is the one load
generator for both: --concurrency keep-alive HTTP/1.1 connections, one closed-loop worker each,
written as plain asyncio streams so that the client spends far less CPU per request than either
server (httpx spent more than both, and with every process on the same two cores it set the
pace). A round is --submissions POST /evaluate, then --reads GET /jobs/{id} over every id
submitted so far, then --reads GET /queue; rounds alternate which server goes first, so /queue
sees --submissions more jobs each round. Every answer is checked (status code and shape), so a
failure is never counted as a fast answer.

Around each phase the CPU time (utime+stime, /proc/PID/stat) of each server process and of this
process is sampled: CPU ms per request splits evalkube's cost between the API and the emulator
(what a real apiserver would replace), and shows what the load generator itself spent. On this
machine every process shares the same few cores, so requests/s also depends on how the cores are
shared; CPU ms per request does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NAMESPACE = "bench"
LMMS = "lmms-eval"
EVALKUBE = "evalkube"
PHASES = ("POST /evaluate", "GET /jobs/{id}", "GET /queue")
TICKS = os.sysconf("SC_CLK_TCK")

#: lmms-eval's real server with its job worker held: the worker task waits forever (until the
#: scheduler's stop() cancels it at shutdown), so jobs stay queued and no evaluation starts.
#: Everything else, the app, its handlers and launch_server, is lmms-eval's own.
LMMS_LAUNCHER = """
import asyncio, sys
from lmms_eval.entrypoints import ServerArgs, launch_server
from lmms_eval.entrypoints.job_scheduler import JobScheduler

async def _held_worker(self):
    await asyncio.Event().wait()

JobScheduler._job_worker = _held_worker
launch_server(ServerArgs(host="127.0.0.1", port=int(sys.argv[1])))
"""


class BadAnswer(RuntimeError):
    """A server answered, but not what its contract says: the bench stops rather than count it."""


@dataclass
class Server:
    """One server under test: its URL and the processes whose CPU time is its cost."""

    name: str
    url: str
    processes: dict[str, subprocess.Popen[bytes]]
    ids: list[str] = field(default_factory=list)

    def cpu_seconds(self) -> dict[str, float]:
        return {label: cpu_seconds(process.pid) for label, process in self.processes.items()}


@dataclass
class Phase:
    """What one phase of one round measured on one server."""

    round: int
    server: str
    phase: str
    requests: int
    wall_s: float
    requests_per_s: float
    latency_ms_p50: float
    latency_ms_p95: float
    cpu_ms_per_request: dict[str, float]
    load_generator_cpu_ms_per_request: float
    queue_seen: int | None = None


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), from /proc/PID/stat; the fields after comm's ')'."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(probe: Callable[[], Any], what: str, processes: list[subprocess.Popen[bytes]], timeout: float = 90.0):
    """Poll `probe` until truthy; fail at once if one of `processes` died (its log says why)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: {process.args!r} exited with {process.returncode}")
        try:
            if value := probe():
                return value
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def spawn(command: list[str | Path], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """A server process in its own session (Ctrl-C reaches only this process, which stops it)."""
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def healthy(url: str) -> bool:
    return httpx.get(f"{url}/health", timeout=5).status_code == 200


def start_lmms_eval(work: Path, started: list[subprocess.Popen[bytes]]) -> Server:
    port = free_port()
    process = spawn([sys.executable, "-c", LMMS_LAUNCHER, str(port)], work / "lmms-eval.log", cwd=work)
    started.append(process)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: healthy(url), "lmms-eval's server to be healthy", [process])
    return Server(LMMS, url, {"lmms-eval": process})


def start_evalkube(work: Path, started: list[subprocess.Popen[bytes]]) -> Server:
    kubeconfig = work / "kubeconfig"
    emulator_log = work / "emulator.log"
    emulator = spawn(
        [sys.executable, "-m", "kubeemu", "--port", "0", "--kubeconfig", kubeconfig]
        + [arg for crd in ("evaljob.yaml", "checkpointmerge.yaml") for arg in ("--crd", REPO / "crds" / crd)],
        emulator_log,
        cwd=REPO / "tests",
    )
    started.append(emulator)
    emulator_url = wait_until(
        lambda: next((line for line in emulator_log.read_text().splitlines() if line.startswith("http")), None),
        "the emulator's URL",
        [emulator],
    )
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    httpx.post(f"{emulator_url}/api/v1/namespaces", json=namespace, timeout=10).raise_for_status()

    port = free_port()
    env = {
        # The API's defaults, whatever EVALKUBE_* this shell has, but for these:
        **{name: value for name, value in os.environ.items() if not name.startswith("EVALKUBE_")},
        "KUBECONFIG": str(kubeconfig),
        "EVALKUBE_API_HOST": "127.0.0.1",
        "EVALKUBE_API_PORT": str(port),
        "EVALKUBE_API_NAMESPACE": NAMESPACE,
        "EVALKUBE_API_AUTH": "none",
        "EVALKUBE_API_RATE_LIMIT_PER_SECOND": "0",
    }
    api = spawn([BIN / "evalkube-api"], work / "api.log", cwd=work, env=env)
    started.append(api)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: healthy(url), "evalkube's API to be healthy", [emulator, api])
    return Server(EVALKUBE, url, {"api": api, "emulator": emulator})


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """Newest first (the API before its emulator): SIGTERM, their graceful shutdown, else SIGKILL."""
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# ---- the load generator ---------------------------------------------------------------------


Call = tuple[str, str, dict[str, Any] | None]


@dataclass
class Answer:
    """One HTTP answer, as the checks read it."""

    method: str
    path: str
    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


Check = Callable[[int, Answer], Any]


class Connection:
    """One keep-alive HTTP/1.1 connection with the least client work per request: the bytes of
    each request written at once, the answer read by its Content-Length. A general client (httpx)
    spent more CPU per request than either server, on the same two cores, and so set the pace."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: bytes) -> None:
        self._reader, self._writer, self._host = reader, writer, host

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, parts.netloc.encode())

    async def request(self, method: str, path: str, body: dict[str, Any] | None) -> Answer:
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), path.encode(), self._host)
        if body is None:
            self._writer.write(head + b"\r\n")
        else:
            data = json.dumps(body).encode()
            self._writer.write(
                head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)
            )
        status_line = await self._reader.readline()
        length = None
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                raise BadAnswer(f"{method} {path}: chunked answers are not read by this load generator")
        if length is None:
            raise BadAnswer(f"{method} {path}: no Content-Length in the answer ({status_line!r})")
        return Answer(method, path, int(status_line.split()[1]), await self._reader.readexactly(length))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def closed_loop(
    connections: list[Connection], calls: list[Call], check: Check
) -> tuple[float, list[float], list[Any]]:
    """One worker per connection, each sending its next call as soon as its last answer is checked."""
    latencies = [0.0] * len(calls)
    answers: list[Any] = [None] * len(calls)
    pending: Iterator[tuple[int, Call]] = iter(enumerate(calls))

    async def worker(connection: Connection) -> None:
        for index, (method, path, body) in pending:
            began = time.perf_counter()
            response = await connection.request(method, path, body)
            latencies[index] = time.perf_counter() - began
            answers[index] = check(index, response)

    began = time.perf_counter()
    await asyncio.gather(*(worker(connection) for connection in connections))
    return time.perf_counter() - began, latencies, answers


def answer(response: Answer, **expected: Any) -> dict[str, Any]:
    """The JSON body of a 2xx answer holding `expected`, else BadAnswer."""
    try:
        if not 200 <= response.status_code < 300:
            raise ValueError(f"HTTP {response.status_code}")
        body = response.json()
    except ValueError as error:
        raise BadAnswer(f"{response.method} {response.path}: {error}: {response.text[:500]}") from error
    for key, value in expected.items():
        if body.get(key) != value:
            raise BadAnswer(f"{response.path}: {key}={body.get(key)!r}, expected {value!r}: {body}")
    return body


def submission(index: int) -> dict[str, Any]:
    """Valid for both servers: a hub id (no local path, which evalkube would check)."""
    return {"model": "huggingface", "tasks": ["mme"], "model_args": {"pretrained": f"org/model-{index}"}}


def check_submitted(_: int, response: Answer) -> str:
    body = answer(response, status="queued")
    if not isinstance(body.get("job_id"), str) or not isinstance(body.get("position_in_queue"), int):
        raise BadAnswer(f"POST /evaluate: not a JobSubmitResponse: {body}")
    return body["job_id"]


def check_job(ids: list[str]) -> Check:
    def check(index: int, response: Answer) -> None:
        body = answer(response, job_id=ids[index], status="queued")
        if body.get("request", {}).get("model") != "huggingface":
            raise BadAnswer(f"GET /jobs/{ids[index]}: not the JobInfo of the submission: {body}")

    return check


def check_queue(expected: int) -> Check:
    def check(_: int, response: Answer) -> int:
        body = answer(response, queue_size=expected)
        if len(body.get("queued_jobs", ())) != expected:
            raise BadAnswer(f"GET /queue: {len(body.get('queued_jobs', ()))} queued_jobs, expected {expected}")
        return expected

    return check


async def measure(
    server: Server, connections: list[Connection], round_: int, phase: str, calls: list[Call], check: Check
) -> tuple[Phase, list[Any]]:
    """One phase on one server, with the CPU time of each of its processes and of this one."""
    cpu_before, own_before = server.cpu_seconds(), time.process_time()
    wall, latencies, answers = await closed_loop(connections, calls, check)
    own, cpu_after = time.process_time() - own_before, server.cpu_seconds()
    n = len(calls)
    ms = sorted(latency * 1000 for latency in latencies)
    result = Phase(
        round=round_,
        server=server.name,
        phase=phase,
        requests=n,
        wall_s=wall,
        requests_per_s=n / wall,
        latency_ms_p50=statistics.median(ms),
        latency_ms_p95=ms[min(n - 1, round(0.95 * (n - 1)))],
        cpu_ms_per_request={label: (cpu_after[label] - cpu_before[label]) * 1000 / n for label in cpu_before},
        load_generator_cpu_ms_per_request=own * 1000 / n,
    )
    cpu = ", ".join(f"{label} {value:.2f}" for label, value in result.cpu_ms_per_request.items())
    print(
        f"round {round_} {server.name:9s} {phase:15s} {n:5d} in {wall:6.2f} s  {result.requests_per_s:7.0f} req/s"
        f"  p50 {result.latency_ms_p50:6.2f} ms  CPU ms/req: {cpu}, load generator {result.load_generator_cpu_ms_per_request:.2f}",
        flush=True,
    )
    return result, answers


async def one_round(server: Server, round_: int, args: argparse.Namespace) -> list[Phase]:
    connections = [await Connection.open(server.url) for _ in range(args.concurrency)]
    try:
        first = round_ * args.submissions
        posts: list[Call] = [("POST", "/evaluate", submission(first + i)) for i in range(args.submissions)]
        submitted, new_ids = await measure(server, connections, round_, PHASES[0], posts, check_submitted)
        server.ids.extend(new_ids)

        ids = [server.ids[i % len(server.ids)] for i in range(args.reads)]
        gets: list[Call] = [("GET", f"/jobs/{job_id}", None) for job_id in ids]
        read, _ = await measure(server, connections, round_, PHASES[1], gets, check_job(ids))

        queues: list[Call] = [("GET", "/queue", None)] * args.reads
        listed, _ = await measure(server, connections, round_, PHASES[2], queues, check_queue(len(server.ids)))
        listed.queue_seen = len(server.ids)
    finally:
        for connection in connections:
            await connection.close()
    return [submitted, read, listed]


async def warm_up(server: Server) -> None:
    """A few reads that add no job, so the first measured phase is not also the first request."""
    connection = await Connection.open(server.url)
    try:
        for _ in range(20):
            answer(await connection.request("GET", "/queue", None), queue_size=0)
    finally:
        await connection.close()


# ---- the report -----------------------------------------------------------------------------


def median_of(phases: list[Phase], server: str, phase: str, value: Callable[[Phase], float]) -> float:
    return statistics.median(value(p) for p in phases if p.server == server and p.phase == phase)


def summarize(phases: list[Phase]) -> dict[str, dict[str, float]]:
    """Per phase: the median over rounds of each figure, and evalkube/lmms-eval of requests/s."""
    summary = {}
    for phase in PHASES:

        def med(server: str, value: Callable[[Phase], float]) -> float:
            return median_of(phases, server, phase, value)

        lmms_rps, evalkube_rps = med(LMMS, lambda p: p.requests_per_s), med(EVALKUBE, lambda p: p.requests_per_s)
        summary[phase] = {
            "lmms_eval_requests_per_s": lmms_rps,
            "evalkube_requests_per_s": evalkube_rps,
            "ratio_evalkube_over_lmms_eval": evalkube_rps / lmms_rps,
            "lmms_eval_latency_ms_p50": med(LMMS, lambda p: p.latency_ms_p50),
            "evalkube_latency_ms_p50": med(EVALKUBE, lambda p: p.latency_ms_p50),
            "lmms_eval_cpu_ms_per_request": med(LMMS, lambda p: p.cpu_ms_per_request["lmms-eval"]),
            "evalkube_api_cpu_ms_per_request": med(EVALKUBE, lambda p: p.cpu_ms_per_request["api"]),
            "evalkube_emulator_cpu_ms_per_request": med(EVALKUBE, lambda p: p.cpu_ms_per_request["emulator"]),
            "load_generator_cpu_ms_per_request_lmms_eval": med(LMMS, lambda p: p.load_generator_cpu_ms_per_request),
            "load_generator_cpu_ms_per_request_evalkube": med(EVALKUBE, lambda p: p.load_generator_cpu_ms_per_request),
        }
    return summary


def table(summary: dict[str, dict[str, float]]) -> str:
    header = (
        "| phase (median of rounds) | lmms-eval server req/s | evalkube API req/s | ratio | lmms-eval p50 ms"
        " | evalkube p50 ms | lmms-eval CPU ms/req | API CPU ms/req | emulator CPU ms/req"
        " | load gen CPU ms/req (lmms-eval / evalkube) |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for phase, s in summary.items():
        lines.append(
            f"| {phase} | {s['lmms_eval_requests_per_s']:.0f} | {s['evalkube_requests_per_s']:.0f}"
            f" | {s['ratio_evalkube_over_lmms_eval']:.2f} | {s['lmms_eval_latency_ms_p50']:.2f}"
            f" | {s['evalkube_latency_ms_p50']:.2f} | {s['lmms_eval_cpu_ms_per_request']:.2f}"
            f" | {s['evalkube_api_cpu_ms_per_request']:.2f} | {s['evalkube_emulator_cpu_ms_per_request']:.2f}"
            f" | {s['load_generator_cpu_ms_per_request_lmms_eval']:.2f}"
            f" / {s['load_generator_cpu_ms_per_request_evalkube']:.2f} |"
        )
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {
        "python": platform.python_version(),
        "lmms_eval": metadata.version("lmms_eval"),
        "evalkube_commit": git("rev-parse", "HEAD"),
        "evalkube_tree_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (both servers' uvicorn runs on it too): it spends less CPU per request
    in the load generator, which shares the cores with the servers."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def run(servers: list[Server], args: argparse.Namespace) -> list[Phase]:
    for server in servers:
        await warm_up(server)
    phases: list[Phase] = []
    for round_ in range(args.rounds):
        order = servers if round_ % 2 == 0 else servers[::-1]  # neither always goes first
        for server in order:
            phases += await one_round(server, round_, args)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--submissions", type=int, default=300, help="POST /evaluate per round and server")
    parser.add_argument("--reads", type=int, default=3000, help="GET /jobs/{id} and GET /queue per round and server")
    parser.add_argument("--json", type=Path, help="write every figure (each round and the medians) here")
    args = parser.parse_args()

    # Ctrl-C (even where the shell started this with SIGINT ignored) and SIGTERM end the bench
    # through the finally below, which stops the servers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="evalkube-vs-lmms-eval-"))
    started: list[subprocess.Popen[bytes]] = []
    env_info = environment()
    failed = False
    try:
        servers = [start_lmms_eval(work, started), start_evalkube(work, started)]
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            phases = runner.run(run(servers, args))
        summary = summarize(phases)
        print()
        print(table(summary))
        print()
        print(
            f"ratio: evalkube/lmms-eval requests/s; {args.rounds} rounds, {args.concurrency} workers,"
            f" {args.submissions} POST + {args.reads} + {args.reads} GET per round and server;"
            f" GET /queue saw {[p.queue_seen for p in phases if p.server == LMMS and p.queue_seen]} jobs;"
            f" lmms-eval {env_info['lmms_eval']}, evalkube {env_info['evalkube_commit'][:12]}"
            f"{' (+ uncommitted changes)' if env_info['evalkube_tree_dirty'] else ''}, {env_info['cpus']} CPUs"
        )
        if args.json:
            document = {
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "environment": env_info,
                "summary": summary,
                "phases": [asdict(p) for p in phases],
            }
            args.json.write_text(json.dumps(document, indent=2) + "\n")
    except Exception:
        failed = True  # not on Ctrl-C: then the servers' logs say nothing new
        raise
    finally:
        stop_all(started)
        if failed:
            for log in sorted(work.glob("*.log")):
                print(f"---- last lines of {log.name}:", *log.read_text(errors="replace").splitlines()[-15:], sep="\n")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
