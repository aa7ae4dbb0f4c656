"""`evalkube-runner run`: one EvalJob, from the pod's environment to its results ConfigMap.

The operator describes the job in EVALKUBE_* variables (see evaluator-image/README.md). The runner
starts lmms-eval, decides success by the results file (not by lmms-eval's exit code), writes the
results ConfigMap, and on failure leaves a specific message in the termination log. Exit codes:
0 success, 1 evaluation failed, 2 invalid spec, 128+N stopped by signal N (143: SIGTERM).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import tempfile
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import urllib3
from kubernetes.client.exceptions import ApiException

from evalkube.results import ResultsTooLarge
from evalkube.runner import failure, kube, merge, progress_publish, results
from evalkube.runner.catalog import lmms_eval_version
from evalkube.runner.invocation import EvalSpec, InvalidSpec, build_argv, child_env, parse_spec
from evalkube.runner.process import ProcessGroupRunner
from evalkube.volumes import MODEL_LOCATION_ARGS

DEFAULT_TERMINATION_LOG = "/dev/termination-log"


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    INVALID_SPEC = 2


@dataclass(frozen=True)
class JobEnv:
    """The EVALKUBE_* environment the operator gives the evaluator container."""

    name: str
    uid: str
    namespace: str
    result_configmap: str
    spec: EvalSpec
    tasks_dir: Path | None
    artifacts_dir: Path | None
    allow_online: bool

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> JobEnv:
        def required(name: str) -> str:
            value = environ.get(name)
            if not value:
                raise InvalidSpec(f"{name} is not set")
            return value

        try:
            raw_spec = json.loads(required("EVALKUBE_SPEC"))
        except json.JSONDecodeError as error:
            raise InvalidSpec(f"EVALKUBE_SPEC is not valid JSON: {error}") from None
        tasks_dir = environ.get("EVALKUBE_TASKS_DIR")
        artifacts_dir = environ.get("EVALKUBE_ARTIFACTS_DIR")
        return cls(
            name=required("EVALKUBE_EVALJOB_NAME"),
            uid=required("EVALKUBE_EVALJOB_UID"),
            namespace=required("EVALKUBE_NAMESPACE"),
            result_configmap=required("EVALKUBE_RESULT_CONFIGMAP"),
            spec=parse_spec(raw_spec),
            tasks_dir=Path(tasks_dir) if tasks_dir else None,
            artifacts_dir=Path(artifacts_dir) if artifacts_dir else None,
            allow_online=environ.get("EVALKUBE_ALLOW_ONLINE") == "1",
        )

    def output_path(self) -> Path | None:
        """Where lmms-eval's output is kept, on a volume that outlives the pod: an absolute outputDir
        (a shared volume, the same path in the training pods), else
        <artifacts>/<namespace>/<evaljob>[/<outputDir>]; None when there is no such volume."""
        output_dir = self.spec.output_dir
        if output_dir and output_dir.startswith("/"):
            return Path(output_dir)
        if self.artifacts_dir is None:
            return None
        path = self.artifacts_dir / self.namespace / self.name
        return path / output_dir if output_dir else path


class Failed(Exception):
    """The evaluation failed; the message is the termination message's first line."""

    def __init__(self, message: str, log_tail: str = "", code: int = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.log_tail = log_tail
        self.code = code


def merge_first(spec: EvalSpec) -> EvalSpec:
    """lmms-engine's merge-before-evaluate: merge the sharded checkpoint, then point every model
    argument that named it at the merged folder (unchanged when the merge writes into the checkpoint
    folder itself, lmms-engine's default)."""
    request = spec.lmms_engine_kwargs
    if request is None:
        return spec
    print(f"evalkube-runner: merging {request.checkpoint_type} checkpoint {request.model_path}", flush=True)
    try:
        outcome = merge.merge_checkpoint(request.model_path, request.output_path, request.checkpoint_type)
    except merge.MergeError as error:
        raise Failed(f"merging the checkpoint failed: {error}") from None
    merged = str(outcome.merged_path)
    print(f"evalkube-runner: merged into {merged} ({outcome.format}, {outcome.seconds:.1f}s)", flush=True)
    model_args = {
        key: merged if value == request.model_path else value for key, value in (spec.model_args or {}).items()
    }
    return spec.model_copy(update={"model_args": model_args})


def missing_model_path(spec: EvalSpec) -> str | None:
    """An absolute model path that isn't there: said plainly, before lmms-eval turns it into
    "Repo id must be in the form 'repo_name'..." (it takes any missing path for a hub id)."""
    for key in MODEL_LOCATION_ARGS:
        value = (spec.model_args or {}).get(key)
        if isinstance(value, str) and value.startswith("/") and not Path(value).exists():
            return f"modelArgs.{key}: model path {value} does not exist in the evaluator pod (is its volume mounted?)"
    return None


def _files(directory: Path) -> set[Path]:
    return {path for path in directory.rglob("*") if path.is_file()}


def evaluate(job: JobEnv, environ: Mapping[str, str]) -> None:
    """Run lmms-eval for `job` and write its results ConfigMap; raises Failed."""
    spec = merge_first(job.spec)
    problem = missing_model_path(spec)
    if problem:
        raise Failed(problem)
    with tempfile.TemporaryDirectory(prefix="evalkube-") as scratch:
        kept = job.output_path()
        output_path = kept or Path(scratch) / "output"
        output_path.mkdir(parents=True, exist_ok=True)
        earlier = _files(output_path)  # a retried pod may find its predecessor's files here

        argv = build_argv(spec, output_path, job.tasks_dir)
        print(f"evalkube-runner: {shlex.join(argv)}", flush=True)
        publish = progress_publish.publisher(job.namespace, job.name, job.uid)  # status.progress, via the operator
        outcome = ProcessGroupRunner(on_progress=publish).run(argv, child_env(environ, job.allow_online))
        if outcome.signal is not None:
            name = signal.Signals(outcome.signal).name
            raise Failed(f"evaluation stopped: the runner received {name}", outcome.tail, 128 + outcome.signal)

        results_file = results.find_results_file(output_path, ignore=earlier)
        if results_file is None:
            reason = failure.error_line(failure.clean_log(outcome.tail)) or f"exit code {outcome.returncode}"
            raise Failed(f"lmms-eval produced no results: {reason}", outcome.tail)
        document = results.load_results(results_file)
        missing = results.missing_tasks(document, job.spec.tasks)
        if missing:
            raise Failed(f"lmms-eval's results lack the requested task(s): {', '.join(missing)}", outcome.tail)

        # lmms-eval's own `result` (paths), only where the files outlive the pod.
        result = results.lmms_eval_result(results_file) if kept is not None else None
        try:
            data = results.configmap_data(document, result, lmms_eval_version())
        except ResultsTooLarge as error:
            raise Failed(f"results too large for the results ConfigMap: {error}") from None

    try:
        kube.put_results(kube.core_api(), job.namespace, job.result_configmap, job.name, job.uid, data)
    except (ApiException, urllib3.exceptions.HTTPError) as error:
        detail = f"{error.status} {error.reason}" if isinstance(error, ApiException) else str(error)
        raise Failed(f"could not write ConfigMap {job.namespace}/{job.result_configmap}: {detail}") from None
    print(f"evalkube-runner: results written to ConfigMap {job.namespace}/{job.result_configmap}", flush=True)


def run(environ: Mapping[str, str] = os.environ) -> int:
    """The `run` command; returns the exit code."""
    termination_log = Path(environ.get("EVALKUBE_TERMINATION_LOG", DEFAULT_TERMINATION_LOG))
    try:
        evaluate(JobEnv.from_environ(environ), environ)
        return ExitCode.OK
    except InvalidSpec as error:
        outcome = Failed(f"invalid spec: {error}", code=ExitCode.INVALID_SPEC)
    except Failed as error:
        outcome = error
    except Exception as error:  # a bug or an unexpected environment: still say what happened
        traceback.print_exc()
        outcome = Failed(f"evalkube-runner failed: {type(error).__name__}: {error}")
    print(f"evalkube-runner: {outcome}", flush=True)
    failure.write_termination_log(termination_log, failure.termination_message(str(outcome), outcome.log_tail))
    return outcome.code
