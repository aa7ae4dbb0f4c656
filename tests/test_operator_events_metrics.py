"""Each EvalJob transition is a Kubernetes Event (kubectl describe reads as its history), and the
operator's own /metrics counts reconciles, waits, runs and failures; parsed with prometheus_client's
own parser. The real operator, with the tests playing the kubelet."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable

import pytest
from conftest import Cluster
from prometheus_client.parser import text_string_to_metric_families

from evalkube.operator.events import MAX_MESSAGE, event_for
from evalkube.operator.metrics import failure_reason
from evalkube.resource import Phase

from harness.kubelet import FakeKubelet
from harness.operator_process import OperatorProcess

SPEC = {"model": "huggingface", "tasks": ["mme"], "numGpus": 0}
RESULTS = {"results": {"mme": {"exact_match,none": 1.0}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def events_of(cluster: Cluster, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about EvalJob `name`, oldest first."""
    items = [e for e in cluster.core.list_namespaced_event(cluster.namespace).items if e.involved_object.name == name]
    items.sort(key=lambda e: int(e.metadata.resource_version))
    return [(e.type, e.reason, e.message) for e in items if e.source and e.source.component == "evalkube-operator"]


def wait_events(cluster: Cluster, name: str, count: int) -> list[tuple[str, str, str]]:
    def probe() -> list[tuple[str, str, str]] | None:
        history = events_of(cluster, name)
        return history if len(history) >= count else None

    return cluster.wait(probe, what=f"{count} Events about {name}")


def run(cluster: Cluster, kubelet: FakeKubelet) -> str:
    name = cluster.apply(SPEC)
    cluster.wait(lambda: cluster.job(name), what="the Job")
    kubelet.run_pod(name)
    cluster.wait_phase(name, Phase.RUNNING)
    return name


def test_events_tell_each_evaljobs_story_in_order_and_metrics_count_it(
    start_operator: Callable[..., OperatorProcess], cluster: Cluster, kubelet: FakeKubelet
) -> None:
    port = free_port()
    start_operator(metrics_port=port)

    completed = run(cluster, kubelet)
    kubelet.finish(completed, 0, results=RESULTS)
    cluster.wait_phase(completed, Phase.COMPLETED)
    failed = run(cluster, kubelet)
    kubelet.finish(failed, 1, message="lmms-eval produced no results: KeyError: 'mme'")
    cluster.wait_phase(failed, Phase.FAILED)
    cancelled = cluster.apply(SPEC)
    cluster.wait(lambda: cluster.job(cancelled), what="the Job")
    cluster.patch_spec(cancelled, {"cancelRequested": True})
    cluster.wait_phase(cancelled, Phase.CANCELLED)

    history = wait_events(cluster, completed, 3)
    assert history == [
        ("Normal", "Queued", "waiting for the Job controller to create the evaluator pod"),
        ("Normal", "Running", "evaluating on node node-1"),
        ("Normal", "Completed", "evaluation completed"),
    ]
    history = wait_events(cluster, failed, 3)
    assert [(kind, reason) for kind, reason, _ in history] == [
        ("Normal", "Queued"), ("Normal", "Running"), ("Warning", "Failed")]  # fmt: skip
    assert history[-1][2] == "the evaluator exited with code 1: lmms-eval produced no results: KeyError: 'mme'"
    history = wait_events(cluster, cancelled, 2)
    assert history[-1] == ("Normal", "Cancelled", "cancelled on request")

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    parsed = {(s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text)
              for s in f.samples}  # fmt: skip

    def value(name: str, **labels: str) -> float:
        return parsed.get((name, frozenset(labels.items())), 0.0)

    assert value("evalkube_operator_reconciles_total", outcome="ok") >= 6
    assert value("evalkube_operator_reconcile_errors_total") == 0
    assert value("evalkube_operator_reconcile_duration_seconds_count") >= 6
    assert value("evalkube_evaljob_queue_wait_seconds_count", model="huggingface") == 2  # two ever ran
    assert value("evalkube_evaljob_run_duration_seconds_count", model="huggingface", phase="Completed") == 1
    assert value("evalkube_evaljob_run_duration_seconds_count", model="huggingface", phase="Failed") == 1
    assert value("evalkube_evaljob_failures_total", reason="no_results") == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("hung: no progress for 600s (limit 600s, EVALKUBE_HUNG_AFTER_SECONDS)", "hung"),
        ("timed out: the evaluation ran longer than timeoutSeconds=60", "timeout"),
        ("the evaluator ran out of memory (OOMKilled); raise resources.limits.memory", "oom"),
        ("cannot pull the evaluator image 'x' (ErrImagePull): not found", "image"),
        ("the Job evalx was deleted before the evaluation finished", "job_deleted"),
        ("something nobody foresaw", "error"),
    ],
)
def test_failure_reasons_are_a_bounded_set(error: str, reason: str) -> None:
    assert failure_reason(error) == reason


def test_an_event_is_about_the_object_it_names_only_when_the_phase_moves_and_stays_short() -> None:
    merge = {"apiVersion": "evalkube.dev/v1alpha1", "kind": "CheckpointMerge", "status": {"phase": "Running"},
             "metadata": {"name": "ckm-1", "namespace": "team-a", "uid": "u-1"}}  # fmt: skip
    event = event_for(merge, {"phase": "Failed", "error": "x" * 5000, "message": "merge failed"})
    assert event is not None
    assert event["involvedObject"] == {"apiVersion": "evalkube.dev/v1alpha1", "kind": "CheckpointMerge",
                                       "name": "ckm-1", "namespace": "team-a", "uid": "u-1"}  # fmt: skip
    assert (event["type"], event["reason"], len(event["message"])) == ("Warning", "Failed", MAX_MESSAGE)
    assert event["metadata"]["name"].startswith("ckm-1.")
    assert event_for(merge, {"message": "still merging"}) is None  # no transition, no Event
    assert event_for(merge, {"phase": "Running"}) is None
