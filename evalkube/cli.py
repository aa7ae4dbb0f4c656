"""`evalkube`: the command line for people (training loops use `EvalClient`).

Built on typer (click underneath, already a dependency of the stack's other tools), over the same
REST API and `EvalClient` a training loop uses, so the CLI can do nothing the API would not let
any client do. The URL and the bearer token come from `--url`/`--token` or EVALKUBE_URL and
EVALKUBE_TOKEN. Output is a human table by default, `-o json` for scripts.

Exit codes: 0 success (for `wait`: the job completed); 1 the job failed, or the server refused the
request (the reason is printed); 3 the job was cancelled; 4 `wait` timed out.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml

from evalkube.client import EvalClient, EvalServerError
from evalkube.mapping import from_spec
from evalkube.protocol import EvaluateRequest

EXIT_FAILED = 1
EXIT_CANCELLED = 3
EXIT_TIMEOUT = 4

app = typer.Typer(
    name="evalkube",
    help="Run and watch lmms-eval evaluations on Kubernetes through the evalkube API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Output(str, Enum):  # noqa: UP042 - click needs str values
    table = "table"
    json = "json"


class Settings:
    """What every command shares: where the API is, who calls it, how to print."""

    def __init__(self, url: str, token: str | None, output: Output, timeout: float) -> None:
        self.url, self.token, self.output, self.timeout = url, token, output, timeout

    @contextlib.contextmanager
    def client(self) -> Iterator[EvalClient]:
        with EvalClient(self.url, timeout=self.timeout) as client:
            if self.token:
                client.client.headers["Authorization"] = f"Bearer {self.token}"
            yield client


@app.callback()
def main_options(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="EVALKUBE_URL", help="The evalkube API")] = "http://localhost:8000",
    token: Annotated[
        str | None, typer.Option(envvar="EVALKUBE_TOKEN", help="Bearer token (e.g. a ServiceAccount token)")
    ] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table for people, json for scripts")] = Output.table,
    timeout: Annotated[float, typer.Option(help="Seconds per HTTP request")] = 30.0,
) -> None:
    ctx.obj = Settings(url, token, output, timeout)


# -- printing ----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, like kubectl's."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(header), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    lines = ["   ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
             for row in [list(headers), *cells]]  # fmt: skip
    return "\n".join(lines)


def emit(settings: Settings, data: Any, headers: Sequence[str] = (), rows: Sequence[Sequence[Any]] = ()) -> None:
    if settings.output is Output.json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(table(headers, rows))


def progress_text(progress: dict[str, Any] | None) -> str:
    if not progress:
        return "-"
    eta = f", eta {progress['eta_seconds']}s" if progress.get("eta_seconds") is not None else ""
    stage = f"{progress['stage']} " if progress.get("stage") else ""
    return f"{progress['percent']:.0f}% {stage}{progress['done']}/{progress['total']}{eta}"


def job_rows(job: dict[str, Any]) -> list[list[Any]]:
    request = job.get("request") or {}
    return [
        ["job_id", job["job_id"]],
        ["status", job["status"]],
        ["model", request.get("model")],
        ["tasks", request.get("tasks")],
        ["message", job.get("message")],
        ["progress", progress_text(job.get("progress"))],
        ["position_in_queue", job.get("position_in_queue")],
        ["created_at", job.get("created_at")],
        ["started_at", job.get("started_at")],
        ["completed_at", job.get("completed_at")],
        ["error", (job.get("error") or "").strip().splitlines()[-1] if job.get("error") else None],
    ]


def metric_rows(job: dict[str, Any]) -> list[list[Any]]:
    """(task, metric, value) of a completed job's results document."""
    document = job.get("metrics") or job.get("result") or {}
    results = document.get("results") if isinstance(document, dict) else None
    rows = []
    for task, values in (results or {}).items():
        for metric, value in (values or {}).items():
            if metric != "alias" and "_stderr" not in metric and isinstance(value, (int, float)):
                rows.append([task, metric, value])
    return rows


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def answered() -> Iterator[None]:
    """The server's refusal (its own words) or an unreachable server, as one line and exit 1."""
    try:
        yield
    except EvalServerError as error:
        raise fail(str(error)) from None
    except httpx.TransportError as error:
        raise fail(f"cannot reach the evalkube API: {error}") from None


# -- commands ----------------------------------------------------------------------------------


def _arg_value(text: str) -> Any:
    """A --model-arg value: JSON where it parses (1, true, 0.5), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def request_from_file(path: Path) -> dict[str, Any]:
    """The REST body from a file: an EvalJob manifest (camelCase spec) or a REST request (snake_case)."""
    document = yaml.safe_load(sys.stdin.read() if str(path) == "-" else path.read_text())
    if not isinstance(document, dict):
        raise fail(f"{path}: expected an EvalJob manifest or a request object")
    if document.get("kind") == "EvalJob":
        return from_spec(EvaluateRequest, document.get("spec") or {})
    return document


@app.command()
def submit(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="EvalJob YAML (or REST JSON); - reads stdin")
    ] = None,
    model: Annotated[str | None, typer.Option(help="lmms-eval model backend")] = None,
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Task (repeat for several)")] = None,
    model_arg: Annotated[list[str] | None, typer.Option("--model-arg", "-a", help="KEY=VALUE (repeatable)")] = None,
    num_fewshot: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[str | None, typer.Option(help="An integer, or auto / auto:N")] = None,
    device: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[float | None, typer.Option(help="Examples per task (a fraction if < 1)")] = None,
    gen_kwargs: Annotated[str | None, typer.Option(help="k=v,k=v")] = None,
    log_samples: Annotated[bool | None, typer.Option("--log-samples/--no-log-samples")] = None,
    predict_only: Annotated[bool | None, typer.Option("--predict-only")] = None,
    num_gpus: Annotated[int | None, typer.Option(help="GPUs for the evaluator pod; 0 runs CPU-only")] = None,
    output_dir: Annotated[str | None, typer.Option()] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first")] = None,
    timeout_seconds: Annotated[int | None, typer.Option()] = None,
    image: Annotated[str | None, typer.Option(help="Evaluator image override")] = None,
    custom_tasks: Annotated[str | None, typer.Option(help="ConfigMap with task YAML and data files")] = None,
    allow_online: Annotated[bool | None, typer.Option("--allow-online")] = None,
) -> None:
    """Submit an evaluation (flags are the REST request's fields; flags override the file's)."""
    settings: Settings = ctx.obj
    body: dict[str, Any] = request_from_file(file) if file else {}
    if batch_size is not None:
        body["batch_size"] = int(batch_size) if batch_size.isdigit() else batch_size
    if limit is not None:
        body["limit"] = int(limit) if limit >= 1 and limit.is_integer() else limit
    if task:
        body["tasks"] = task
    if model_arg:
        pairs = [item.partition("=") for item in model_arg]
        if any(not sep or not key for key, sep, _ in pairs):
            raise fail("--model-arg takes KEY=VALUE")
        body["model_args"] = {**(body.get("model_args") or {}), **{k: _arg_value(v) for k, _, v in pairs}}
    if custom_tasks is not None:
        body["custom_tasks"] = {"config_map": custom_tasks}
    for name, value in {
        "model": model, "num_fewshot": num_fewshot, "device": device, "gen_kwargs": gen_kwargs,
        "log_samples": log_samples, "predict_only": predict_only, "num_gpus": num_gpus, "output_dir": output_dir,
        "priority": priority, "timeout_seconds": timeout_seconds, "image": image, "allow_online": allow_online,
    }.items():  # fmt: skip
        if value is not None:
            body[name] = value
    if "model" not in body or not body.get("tasks"):
        raise fail("give --model and at least one --task, or -f FILE")
    arguments = dict(body)
    if isinstance(arguments.get("custom_tasks"), dict):
        arguments["custom_tasks"] = arguments["custom_tasks"].get("config_map")
    unknown = sorted(set(arguments) - set(EvaluateRequest.model_fields))
    if unknown:
        raise fail(f"unknown request field(s): {', '.join(unknown)}")
    with settings.client() as client, answered():  # evaluate(): one Idempotency-Key, retried
        submitted = client.evaluate(**arguments)
    emit(settings, submitted, ["JOB_ID", "STATUS", "POSITION", "MESSAGE"],
         [[submitted["job_id"], submitted["status"], submitted["position_in_queue"], submitted["message"]]])  # fmt: skip


@app.command()
def get(ctx: typer.Context, job_id: str) -> None:
    """One job: status, progress, times, and once completed its metrics."""
    settings: Settings = ctx.obj
    with settings.client() as client, answered():
        job = client.get_job(job_id)
    if settings.output is Output.json:
        emit(settings, job)
        return
    typer.echo(table(["FIELD", "VALUE"], job_rows(job)))
    if rows := metric_rows(job):
        typer.echo("")
        typer.echo(table(["TASK", "METRIC", "VALUE"], rows))


@app.command("list")
def list_jobs(ctx: typer.Context) -> None:
    """The running and queued jobs, in run order, with their progress."""
    settings: Settings = ctx.obj
    with settings.client() as client, answered():
        queue = client.get_queue_status()
        names = [
            *queue.get("running_jobs", []),
            *[n for n in queue["queued_jobs"] if n not in queue.get("running_jobs", [])],
        ]
        jobs = [client.get_job(name) for name in names]
    rows = [[j["job_id"], j["status"], (j.get("request") or {}).get("model"), (j.get("request") or {}).get("tasks"),
             progress_text(j.get("progress")), j.get("message")] for j in jobs]  # fmt: skip
    emit(settings, jobs, ["JOB_ID", "STATUS", "MODEL", "TASKS", "PROGRESS", "MESSAGE"], rows)


@app.command()
def logs(
    ctx: typer.Context,
    job_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until the evaluator ends")] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines")] = None,
    since: Annotated[int | None, typer.Option(help="Only the last N seconds")] = None,
) -> None:
    """The evaluator's log (lmms-eval's output); after the pod is gone, the tail the job kept."""
    settings: Settings = ctx.obj
    with settings.client() as client, answered():
        if not follow:
            typer.echo(client.get_logs(job_id, tail_lines=tail, since_seconds=since), nl=False)
            return
        for text in client.stream_logs(job_id, tail_lines=tail, since_seconds=since):
            sys.stdout.write(text)
            sys.stdout.flush()


@app.command()
def wait(
    ctx: typer.Context,
    job_id: str,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 4)")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls")] = 1.0,
) -> None:
    """Follow a job with a live progress bar until it ends: exit 0 completed, 1 failed, 3 cancelled."""
    settings: Settings = ctx.obj
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = _Bar(sys.stderr.isatty())
    with settings.client() as client, answered():
        while True:
            job = client.get_job(job_id)
            bar.show(job)
            if job["status"] in ("completed", "failed", "cancelled"):
                break
            if deadline is not None and time.monotonic() > deadline:
                bar.close()
                raise fail(f"job {job_id} still {job['status']} after {timeout:g}s", EXIT_TIMEOUT)
            time.sleep(interval)
    bar.close()
    if settings.output is Output.json:
        emit(settings, job)
    if job["status"] == "failed":
        raise fail(f"job {job_id} failed: {job.get('error') or job.get('message') or 'no reason given'}")
    if job["status"] == "cancelled":
        raise fail(f"job {job_id} was cancelled: {job.get('message') or 'on request'}", EXIT_CANCELLED)
    if settings.output is Output.table:
        typer.echo(f"job {job_id} completed")
        if rows := metric_rows(job):
            typer.echo(table(["TASK", "METRIC", "VALUE"], rows))


class _Bar:
    """rich's live bar on a terminal; elsewhere (CI logs, pipes) one line per change."""

    def __init__(self, live: bool) -> None:
        self._last: str | None = None
        self._progress: Any = None
        self._task: Any = None
        if live:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                      TimeRemainingColumn(), transient=True)  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task("waiting", total=100)

    def show(self, job: dict[str, Any]) -> None:
        progress = job.get("progress") or {}
        line = f"{job['status']}: {progress_text(progress) if progress else job.get('message') or ''}"
        if self._progress is not None:
            self._progress.update(self._task, completed=progress.get("percent", 0), description=line[:60])
        elif line != self._last:
            typer.echo(line, err=True)
        self._last = line

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@app.command()
def cancel(ctx: typer.Context, job_id: str) -> None:
    """Cancel a queued or running job."""
    settings: Settings = ctx.obj
    with settings.client() as client, answered():
        answer = client.cancel_job(job_id)
    emit(settings, answer, ["MESSAGE"], [[answer.get("message")]])


@app.command()
def merge(
    ctx: typer.Context,
    checkpoint_path: str,
    output_path: Annotated[str | None, typer.Option(help="Where the merged model goes")] = None,
    checkpoint_type: Annotated[str, typer.Option(help="regular or ema")] = "regular",
) -> None:
    """Merge a sharded (FSDP2/DCP) training checkpoint into a Hugging Face model folder."""
    settings: Settings = ctx.obj
    with settings.client() as client, answered():
        answer = client.merge_checkpoint(checkpoint_path, output_path=output_path, checkpoint_type=checkpoint_type)
    emit(settings, answer, ["FIELD", "VALUE"], [[key, value] for key, value in answer.items()])


@app.command()
def queue(ctx: typer.Context) -> None:
    """The queue: running and queued jobs (in run order) and how many finished."""
    settings: Settings = ctx.obj
    with settings.client() as client, answered():
        status = client.get_queue_status()
    rows = [[key, value] for key, value in status.items()]
    emit(settings, status, ["FIELD", "VALUE"], rows)


@app.command()
def tasks(ctx: typer.Context) -> None:
    """The tasks the evaluator image can run."""
    settings: Settings = ctx.obj
    with settings.client() as client, answered():
        names = client.list_tasks()
    emit(settings, names, ["TASK"], [[name] for name in names])


@app.command()
def models(ctx: typer.Context) -> None:
    """The model backends the evaluator image can run."""
    settings: Settings = ctx.obj
    with settings.client() as client, answered():
        names = client.list_models()
    emit(settings, names, ["MODEL"], [[name] for name in names])


def main() -> None:
    """Console script `evalkube`."""
    app()


if __name__ == "__main__":
    main()
