"""The `evalkube` command line, through the real API on uvicorn and the real operator, against the
emulator (the tests play the kubelet). typer's CliRunner invokes the same app the console script
runs; every command goes over HTTP to the API."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import Cluster
from typer.testing import CliRunner, Result

from evalkube import resource
from evalkube.cli import EXIT_CANCELLED, EXIT_FAILED, EXIT_TIMEOUT, app, table
from evalkube.progress import PROGRESS_KEY, progress_configmap_name
from evalkube.resource import Phase

from harness.kubelet import FakeKubelet
from harness.operator_process import OperatorProcess
from kubeemu import KubeEmulator

RESULTS = {"results": {"mme": {"exact_match,none": 0.75, "exact_match_stderr,none": 0.1, "alias": "mme"}}}


@pytest.fixture
def cli(api_url: str, start_operator: Callable[..., OperatorProcess]) -> Callable[..., Result]:
    start_operator(progress_poll_seconds=0.2)
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), env={"EVALKUBE_URL": api_url, **(env or {})})

    return invoke


def submitted(cli: Callable[..., Result], *args: str) -> str:
    result = cli("-o", "json", "submit", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["job_id"]


def test_submit_get_list_queue_and_cancel(cli: Callable[..., Result], cluster: Cluster) -> None:
    result = cli("submit", "--model", "huggingface", "-t", "mme", "-t", "mmmu_val", "-a", "pretrained=org/tiny",
                 "-a", "max_length=512", "--num-gpus", "0", "--limit", "5", "--priority", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["JOB_ID", "STATUS", "POSITION", "MESSAGE"]
    name = row.split()[0]
    spec = cluster.evaljob(name)["spec"]
    assert spec["modelArgs"] == {"pretrained": "org/tiny", "max_length": 512}  # JSON where it parses
    assert (spec["tasks"], spec["numGpus"], spec["limit"], spec["priority"]) == (["mme", "mmmu_val"], 0, 5, 3)

    cluster.wait(lambda: cluster.job(name), what="the Job")
    got = cli("get", name)
    assert got.exit_code == 0
    assert {"status": "queued", "model": "huggingface", "tasks": "mme,mmmu_val"}.items() <= dict(
        line.split(None, 1) for line in got.stdout.splitlines()[1:] if len(line.split(None, 1)) == 2
    ).items()
    listed = cli("-o", "json", "list")
    assert [job["job_id"] for job in json.loads(listed.stdout)] == [name]
    assert json.loads(cli("-o", "json", "queue").stdout)["queued_jobs"] == [name]
    assert "queued_jobs" in cli("queue").stdout

    logs = cli("logs", name)  # queued: no log yet, and the CLI says so
    assert logs.exit_code == EXIT_FAILED
    assert "has no log yet" in logs.stderr

    cancelled = cli("cancel", name)
    assert cancelled.exit_code == 0 and "being cancelled" in cancelled.stdout
    waited = cli("wait", name, "--interval", "0.1", "--timeout", "20")
    assert waited.exit_code == EXIT_CANCELLED
    assert f"error: job {name} was cancelled: cancelled on request" in waited.stderr


def test_submit_from_an_evaljob_manifest(cli: Callable[..., Result], cluster: Cluster, tmp_path: Path) -> None:
    manifest = tmp_path / "evaljob.yaml"
    manifest.write_text(
        "apiVersion: evalkube.dev/v1alpha1\nkind: EvalJob\nmetadata: {generateName: eval-}\n"
        "spec:\n  model: huggingface\n  tasks: [mme]\n  modelArgs: {pretrained: org/tiny}\n  numGpus: 0\n"
        "  customTasks: {configMap: my-tasks}\n"
    )
    cluster.core.create_namespaced_config_map(cluster.namespace, {"metadata": {"name": "my-tasks"}, "data": {}})
    name = submitted(cli, "-f", str(manifest), "--priority", "7")  # a flag overrides the file
    spec = cluster.evaljob(name)["spec"]
    assert (spec["customTasks"], spec["priority"], spec["numGpus"]) == ({"configMap": "my-tasks"}, 7, 0)


def test_bad_input_is_refused_naming_the_field(cli: Callable[..., Result]) -> None:
    result = cli("submit", "--model", "huggingface", "-t", "mme,mmmu")
    assert result.exit_code == EXIT_FAILED
    assert "422" in result.stderr and "tasks[0]" in result.stderr
    assert cli("submit", "-t", "mme").exit_code == EXIT_FAILED  # no model
    missing = cli("get", "eval-nosuch")
    assert missing.exit_code == EXIT_FAILED and "404" in missing.stderr


def test_wait_follows_progress_to_completion_and_prints_the_metrics(
    cli: Callable[..., Result], cluster: Cluster, kubelet: FakeKubelet
) -> None:
    name = submitted(cli, "--model", "huggingface", "-t", "mme", "--num-gpus", "0")
    cluster.wait(lambda: cluster.job(name), what="the Job")
    kubelet.run_pod(name)
    cluster.wait_phase(name, Phase.RUNNING)
    uid = cluster.evaljob(name)["metadata"]["uid"]
    progress = {"percent": 40.0, "done": 2, "total": 5, "stage": "Model Responding", "etaSeconds": 3,
                "updatedAt": "2026-01-01T00:00:00Z"}  # fmt: skip
    cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"name": progress_configmap_name(name), "ownerReferences": [resource.owner_reference(name, uid)]},
        "data": {PROGRESS_KEY: json.dumps(progress)}})  # fmt: skip
    cluster.wait(lambda: cluster.status(name).get("progress"), what="status.progress")
    assert "40% Model Responding 2/5, eta 3s" in cli("get", name).stdout
    listed = cli("list").stdout.splitlines()
    assert listed[0].split()[:5] == ["JOB_ID", "STATUS", "MODEL", "TASKS", "PROGRESS"] and "40%" in listed[1]

    done = threading.Timer(1.0, kubelet.finish, (name, 0), {"results": RESULTS})
    done.start()
    waited = cli("wait", name, "--interval", "0.1", "--timeout", "30")
    done.join()
    assert waited.exit_code == 0, waited.output
    assert "running: 40% Model Responding 2/5, eta 3s" in waited.stderr  # the bar, one line per change
    assert waited.stdout.splitlines() == [
        f"job {name} completed",
        "TASK   METRIC             VALUE",
        "mme    exact_match,none   0.75",
    ]


def test_wait_on_a_job_that_fails_exits_non_zero_naming_why(
    cli: Callable[..., Result], cluster: Cluster, kubelet: FakeKubelet, kube_emulator: KubeEmulator
) -> None:
    name = submitted(cli, "--model", "huggingface", "-t", "mme", "--num-gpus", "0")
    cluster.wait(lambda: cluster.job(name), what="the Job")
    kubelet.run_pod(name)
    kube_emulator.append_pod_log(cluster.namespace, name, "evalkube-runner: python -m lmms_eval ...\nKeyError: 'mme'\n")
    kubelet.finish(name, 1, message="lmms-eval produced no results: task 'mme' not found")
    waited = cli("wait", name, "--interval", "0.1", "--timeout", "30")
    assert waited.exit_code == EXIT_FAILED
    assert waited.stderr.splitlines()[-1] == (
        f"error: job {name} failed: the evaluator exited with code 1: lmms-eval produced no results: "
        "task 'mme' not found"
    )
    as_json = cli("-o", "json", "wait", name)
    assert as_json.exit_code == EXIT_FAILED and json.loads(as_json.stdout)["status"] == "failed"
    assert cli("logs", name, "--tail", "1").stdout == "KeyError: 'mme'\n"  # the pod's log, while it exists


def test_wait_gives_up_after_its_timeout(cli: Callable[..., Result]) -> None:
    name = submitted(cli, "--model", "huggingface", "-t", "mme", "--num-gpus", "0")
    waited = cli("wait", name, "--interval", "0.1", "--timeout", "0.3")
    assert waited.exit_code == EXIT_TIMEOUT
    assert "still queued after 0.3s" in waited.stderr


def test_tasks_and_models_from_the_catalog(cli: Callable[..., Result], cluster: Cluster) -> None:
    refused = cli("tasks")
    assert refused.exit_code == EXIT_FAILED and "503" in refused.stderr  # no catalog yet, said plainly
    catalog = {"tasks": ["mme", "mmmu_val"], "models": ["huggingface"]}
    cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"name": "evalkube-catalog"}, "data": {resource.CATALOG_KEY: json.dumps(catalog)}})  # fmt: skip
    cluster.wait(lambda: cli("tasks").exit_code == 0, what="the catalog")
    assert cli("tasks").stdout.split() == ["TASK", "mme", "mmmu_val"]
    assert json.loads(cli("-o", "json", "models").stdout) == ["huggingface"]


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"queue_size": 0, "running_job": None, "queued_jobs": [], "completed_jobs": 0,
                           "failed_jobs": 0}).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_url_and_token_come_from_flags_or_the_environment(recorder: str) -> None:
    runner = CliRunner()
    _Recorder.seen.clear()
    assert runner.invoke(app, ["queue"], env={"EVALKUBE_URL": recorder, "EVALKUBE_TOKEN": "s3cret"}).exit_code == 0
    assert runner.invoke(app, ["--url", recorder, "--token", "flag-token", "queue"]).exit_code == 0
    assert runner.invoke(app, ["--url", recorder, "queue"], env={"EVALKUBE_TOKEN": ""}).exit_code == 0
    assert _Recorder.seen == ["Bearer s3cret", "Bearer flag-token", None]
    unreachable = runner.invoke(app, ["--url", "http://127.0.0.1:9", "queue"])
    assert unreachable.exit_code == EXIT_FAILED and "cannot reach the evalkube API" in unreachable.stderr


def test_tables_pad_columns() -> None:
    assert table(["A", "LONGER"], [["xyz", 1], [None, [1, 2]]]).splitlines() == [
        "A     LONGER",
        "xyz   1",
        "-     1,2",
    ]
