"""Hostile input, one table: what each case is answered, and that nothing was half-created.

The API cases go to the real app on uvicorn; "nothing half-created" is read from the emulator's
store (no EvalJob, no Job). The cases past the API are the runner's and the operator's: a forged
results ConfigMap, a 50 MB results document, an evaluator that prints megabytes on one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import kubernetes
import pytest

from evalkube import resource
from evalkube.resource import Phase
from evalkube.results import ResultsTooLarge, encoded_size
from evalkube.runner import kube as runner_kube
from evalkube.runner import results as runner_results
from evalkube.runner.invocation import build_argv, parse_spec
from evalkube.runner.process import TAIL_BYTES, ProcessGroupRunner

from kubeemu import KubeEmulator

pytestmark = pytest.mark.timeout(120)

OK = {"model": "huggingface", "tasks": ["mme"]}
MAX_BODY = 1024 * 1024


class Case(NamedTuple):
    id: str
    body: Any  # JSON-able, or bytes sent as is
    status: int
    says: str  # in the answer's detail: the field and the reason
    headers: dict[str, str] | None = None


def nested(depth: int) -> dict[str, Any]:
    value: Any = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


CASES = [
    Case(
        "model_args value adds an argument",
        {**OK, "model_args": {"pretrained": "/m,device=cuda"}},
        422,
        "model_args.pretrained",
    ),
    Case(
        "model_args value with a newline",
        {**OK, "model_args": {"pretrained": "/m\n--output_path=/etc"}},
        422,
        "model_args.pretrained",
    ),
    Case("model_args key with '='", {**OK, "model_args": {"a=b": "c"}}, 422, "model_args"),
    Case("model_args value starting with --", {**OK, "model_args": {"x": "--include_path=/"}}, 422, "model_args.x"),
    Case("gen_kwargs with a newline", {**OK, "gen_kwargs": "temperature=0\n--limit=1"}, 422, "gen_kwargs"),
    Case("task name with a comma", {**OK, "tasks": ["mme,mmmu_val"]}, 422, "tasks[0]"),
    Case("task name as a flag", {**OK, "tasks": ["--include_path=/etc"]}, 422, "tasks[0]"),
    Case("output_dir climbing out", {**OK, "output_dir": "../../etc"}, 422, "output_dir"),
    Case("output_dir with '..' inside", {**OK, "output_dir": "runs/../../x"}, 422, "output_dir"),
    Case("output_dir absolute", {**OK, "output_dir": "/etc/cron.d"}, 422, "output_dir"),
    Case(
        "custom_tasks ConfigMap name with '..'",
        {**OK, "custom_tasks": {"config_map": "../secret"}},
        422,
        "custom_tasks.config_map",
    ),
    Case("body over the limit", b'{"model": "' + b"x" * (MAX_BODY + 1) + b'"}', 413, "limit of 1048576 bytes"),
    Case("deeply nested JSON", {**OK, "model_args": nested(200)}, 422, "nested"),
    Case("JSON nested past the parser's recursion limit", b"[" * 100_000 + b"]" * 100_000, 422, "nested"),
    Case("NUL in the model name", {**OK, "model": "hugging\u0000face"}, 422, "model"),
    Case(
        "lone surrogate in a task name", b'{"model": "huggingface", "tasks": ["\\ud800"]}', 422, "lone UTF-16 surrogate"
    ),
    Case("not UTF-8 at all", b'{"model": "\xff\xfe", "tasks": ["mme"]}', 422, "not UTF-8"),
    Case(
        "a key reused for another request", {**OK, "limit": 3}, 422, "Idempotency-Key", {"Idempotency-Key": "taken-key"}
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_requests_are_refused_whole(
    case: Case, http: httpx.Client, kube_emulator: KubeEmulator, namespace: str
) -> None:
    if case.headers:  # the key exists already, for another request
        assert http.post("/evaluate", json=OK, headers=case.headers).status_code == 200
    before = len(kube_emulator.list_objects(resource.GROUP, resource.PLURAL, namespace))
    if isinstance(case.body, bytes):
        answer = http.post(
            "/evaluate", content=case.body, headers={"content-type": "application/json", **(case.headers or {})}
        )
    else:
        answer = http.post("/evaluate", json=case.body, headers=case.headers)
    assert answer.status_code == case.status, answer.text[:500]
    detail = answer.json()["detail"]
    assert isinstance(detail, list) and all(item["loc"] and item["msg"] for item in detail), detail
    assert case.says in json.dumps(detail, ensure_ascii=False), detail
    assert len(kube_emulator.list_objects(resource.GROUP, resource.PLURAL, namespace)) == before
    assert kube_emulator.list_objects("batch", "jobs", namespace) == []


def test_odd_but_harmless_unicode_is_kept_exactly(
    http: httpx.Client, kube_emulator: KubeEmulator, namespace: str
) -> None:
    """Unicode that changes no command line (a model path in Japanese, an emoji) is stored and read back intact."""
    args = {"pretrained": "org/チェックポイント-1000", "note": "🚀 café"}
    made = http.post("/evaluate", json={**OK, "model_args": args})
    assert made.status_code == 200, made.text
    assert http.get(f"/jobs/{made.json()['job_id']}").json()["request"]["model_args"] == args


INERT = [
    (
        "gen_kwargs carrying a flag",
        {**OK, "gen_kwargs": "temperature=0 --output_path /etc"},
        "--gen_kwargs=temperature=0 --output_path /etc",
    ),
    ("task name with a shell substitution", {**OK, "tasks": ["$(reboot)"]}, "--tasks=$(reboot)"),
    ("right-to-left override in a task name", {**OK, "tasks": ["mme\u202egnp.exe"]}, "--tasks=mme\u202egnp.exe"),
]


@pytest.mark.parametrize(("body", "argument"), [c[1:] for c in INERT], ids=[c[0] for c in INERT])
def test_values_no_rule_refuses_stay_one_argument_of_lmms_eval(
    body: dict[str, Any], argument: str, http: httpx.Client, kube_emulator: KubeEmulator, namespace: str
) -> None:
    """No shell ever sees a value: the runner passes each as one argv element, so a flag or a
    substitution inside it is only text (lmms-eval refuses the odd task name itself)."""
    made = http.post("/evaluate", json=body)
    assert made.status_code == 200, made.text
    stored = kube_emulator.get_object(resource.GROUP, resource.PLURAL, made.json()["job_id"], namespace)
    argv = build_argv(parse_spec(stored["spec"]), Path("/out"))
    assert argument in argv
    assert [a for a in argv if a.startswith("--output_path")] == ["--output_path=/out"]


CUSTOM_TASKS = [
    ("include climbing out", {"t.yaml": "task: t\ninclude: ../../etc/other.yaml\n"}, "include '../../etc/other.yaml'"),
    ("absolute include", {"t.yaml": "task: t\ninclude: /etc/lmms/base.yaml\n"}, "include '/etc/lmms/base.yaml'"),
    (
        "data file climbing out",
        {"t.yaml": "task: t\ndataset_kwargs:\n  data_files:\n    test: ../../etc/passwd\n"},
        "data_files",
    ),
    ("dataset_path climbing out", {"t.yaml": "task: t\ndataset_path: ../../root\n"}, "dataset_path"),
    ("not YAML", {"t.yaml": "task: [unclosed\n"}, "is not valid YAML"),
]


@pytest.mark.parametrize(("data", "says"), [c[1:] for c in CUSTOM_TASKS], ids=[c[0] for c in CUSTOM_TASKS])
def test_custom_tasks_reaching_outside_their_configmap_are_refused(
    data: dict[str, str], says: str, http: httpx.Client, kube_client: kubernetes.client.ApiClient,
    kube_emulator: KubeEmulator, namespace: str,
) -> None:  # fmt: skip
    kubernetes.client.CoreV1Api(kube_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "my-tasks"}, "data": data}
    )
    answer = http.post("/evaluate", json={**OK, "tasks": ["t"], "custom_tasks": {"config_map": "my-tasks"}})
    assert answer.status_code == 422, answer.text
    [detail] = answer.json()["detail"]
    assert "custom_tasks.config_map" in detail["msg"] and says in detail["msg"], detail
    assert kube_emulator.list_objects(resource.GROUP, resource.PLURAL, namespace) == []


def test_kubelets_configmap_symlinks_stay_inside_the_tasks_folder(tmp_path: Path) -> None:
    """The kubelet mounts a ConfigMap as links (key -> ..data/key -> ..<timestamp>/key); ConfigMap keys
    cannot hold '/' or start with '..', so every link of a custom-tasks mount resolves inside it."""
    from harness.kubelet import _write_config_map_volume

    mount = tmp_path / "tasks"
    mount.mkdir()
    _write_config_map_volume(mount, {"t.yaml": "task: t\n", "t.jsonl": "{}\n"})
    for path in mount.rglob("*"):
        assert path.resolve().is_relative_to(mount.resolve()), path


# ---- past the API: the results ConfigMap, its owner, its size, the evaluator's output ----------


def test_a_results_configmap_forged_by_a_tenant_is_not_trusted(
    cluster: Any, kubelet: Any, operator: Any, kube_client: kubernetes.client.ApiClient
) -> None:
    """A tenant creates `<name>-result` before the EvalJob's pod writes it: the operator does not
    take it for the results (its owner is not the EvalJob), and the runner refuses to adopt it."""
    name = cluster.apply({"model": "huggingface", "tasks": ["mme"]}, name="victim")
    forged = {"results": {"mme": {"exact_match,none": 1.0}}}
    cluster.core.create_namespaced_config_map(
        cluster.namespace,
        {"metadata": {"name": f"{name}-result"}, "data": {resource.RESULTS_KEY: json.dumps(forged)}},
    )
    uid = cluster.evaljob(name)["metadata"]["uid"]
    with pytest.raises(runner_kube.NotOurs, match="refusing to adopt it"):
        runner_kube.put_results(cluster.core, cluster.namespace, f"{name}-result", name, uid, {"results.json": "{}"})
    assert json.loads(cluster.config_map(f"{name}-result").data[resource.RESULTS_KEY]) == forged  # left alone

    kubelet.run_pod(name)
    kubelet.finish(name, 0)  # the runner failed to write its results, the forged ones are there
    failed = cluster.wait_phase(name, Phase.FAILED)
    assert "is not owned by this EvalJob" in failed["error"]
    assert not failed.get("result") and not failed.get("metrics")


def test_a_results_configmap_of_another_evaljob_is_not_taken_either(cluster: Any, kubelet: Any, operator: Any) -> None:
    """Owned, but by another EvalJob (the tenant's own): the uid must be this EvalJob's."""
    mine = cluster.apply({"model": "huggingface", "tasks": ["mme"]}, name="mine")
    other = cluster.apply({"model": "huggingface", "tasks": ["mme"]}, name="other")
    other_uid = cluster.evaljob(other)["metadata"]["uid"]
    runner_kube.put_results(
        cluster.core, cluster.namespace, f"{mine}-result", other, other_uid, {resource.RESULTS_KEY: '{"results": {}}'}
    )
    kubelet.run_pod(mine)
    kubelet.finish(mine, 0)
    assert "is not owned by this EvalJob" in cluster.wait_phase(mine, Phase.FAILED)["error"]


def test_a_retried_pod_of_the_same_evaljob_replaces_its_results(cluster: Any) -> None:
    name = cluster.apply({"model": "huggingface", "tasks": ["mme"]}, name="again")
    uid = cluster.evaljob(name)["metadata"]["uid"]
    for score in ("0.1", "0.9"):
        data = {resource.RESULTS_KEY: json.dumps({"results": {"mme": {"acc": float(score)}}})}
        runner_kube.put_results(cluster.core, cluster.namespace, f"{name}-result", name, uid, data)
    assert "0.9" in cluster.config_map(f"{name}-result").data[resource.RESULTS_KEY]


@pytest.mark.heavy
def test_a_50_mb_results_document_fits_the_configmap_keeping_the_metrics(tmp_path: Path) -> None:
    """lmms-eval's document can be huge (per-sample logs, configs): the ConfigMap gets the metrics
    within its budget and says what was dropped; metrics that alone exceed it fail clearly."""
    metrics = {"results": {"mme": {"exact_match,none": 0.75}}, "versions": {"mme": 1}}
    bulky = {"samples": ["s" * 1000] * 25_000, "configs": {"mme": {"x": "c" * 25_000_000}}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**metrics, **bulky}))
    assert path.stat().st_size > 50_000_000
    data = runner_results.configmap_data(runner_results.load_results(path), None, "0.7.3")
    assert sum(len(v.encode()) for v in data.values()) <= runner_results.BUDGET_BYTES
    assert json.loads(data[resource.RESULTS_KEY]) == metrics
    assert json.loads(data[resource.RESULTS_META_KEY])["dropped"] == ["samples", "configs"]

    too_many_metrics = {"results": {f"task{i}": {"acc": 0.5, "pad": "p" * 1000} for i in range(50_000)}}
    assert encoded_size(too_many_metrics) > 50_000_000
    with pytest.raises(ResultsTooLarge, match="the metrics alone take"):
        runner_results.configmap_data(too_many_metrics, None, "0.7.3")


@pytest.mark.heavy
def test_an_evaluator_printing_megabytes_without_a_newline_is_kept_bounded(tmp_path: Path) -> None:
    """20 MB on one line: the runner streams it, keeps only its tail, and the child is not blocked."""
    code = (
        "import sys\nfor _ in range(20): sys.stdout.write('x' * 1_000_000); sys.stdout.flush()\nsys.stdout.write('END')"
    )
    outcome = ProcessGroupRunner().run([sys.executable, "-c", code], {"PATH": "/usr/bin:/bin"})
    assert outcome.returncode == 0
    assert len(outcome.tail) <= TAIL_BYTES and outcome.tail.endswith("xEND")
