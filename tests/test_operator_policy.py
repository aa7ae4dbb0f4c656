"""The operator enforces the policy at admission, so it binds kubectl users as well as the API's.

Decisions first, over the recording cluster of test_operator_reconcile; then the real operator
against the emulator, with EvalJobs written as kubectl writes them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_operator_reconcile import NS, FakeViews, RecordingCluster, add, evaljob, reconciler, run, status

from evalkube.operator.settings import OperatorSettings
from evalkube.resource import Phase


@pytest.fixture
def recording() -> RecordingCluster:
    return RecordingCluster()


TASKS_WITH_PYTHON = {"t.yaml": "task: mine\nprocess_results: !function utils.score\n", "utils.py": "def score(): ..."}


def test_an_evaljob_breaking_a_rule_fails_at_once_naming_the_rule_and_no_job_is_made(
    recording: RecordingCluster,
) -> None:
    add(recording, evaljob("miner", image="evil/miner:latest", numGpus=64))
    run(reconciler(recording).reconcile(NS, "miner", FakeViews(recording)))
    assert recording.created() == []
    assert status(recording, "miner")["phase"] == Phase.FAILED
    assert status(recording, "miner")["error"] == (
        "policy rule allowedImages: spec.image: image 'evil/miner:latest' is not allowed (allowed: ['evaluator:test']); "
        "policy rule maxGpus: spec.numGpus: 64 GPUs asked, at most 8 per EvalJob"
    )
    assert status(recording, "miner")["completedAt"]


def test_the_evaluator_image_named_explicitly_is_allowed(recording: RecordingCluster) -> None:
    add(recording, evaljob("own", image="evaluator:test"))
    run(reconciler(recording).reconcile(NS, "own", FakeViews(recording)))
    assert recording.created() == ["own"]


def test_what_the_admin_allows_is_admitted_with_the_pod_the_evaljob_asked_for(recording: RecordingCluster) -> None:
    spec = {
        "image": "registry.example/team/eval:2",
        "nodeSelector": {"pool": "a100"},
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "resources": {"limits": {"memory": "32Gi"}},
        "modelArgs": {"pretrained": "Qwen/Qwen2-0.5B", "trust_remote_code": True},
    }
    add(recording, evaljob("ok", **spec), evaljob("refused", **spec))
    policy = {
        "allowedImages": ["registry.example/team/*"],
        "allowNodeSelector": True,
        "allowTolerations": True,
        "maxResources": {"memory": "64Gi"},
        "allowTrustRemoteCode": True,
    }
    run(reconciler(recording, policy=json.dumps(policy)).reconcile(NS, "ok", FakeViews(recording)))
    run(reconciler(recording).reconcile(NS, "refused", FakeViews(recording)))
    assert recording.created() == ["ok"]
    pod = recording.jobs["ok"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/team/eval:2" and pod["nodeSelector"] == {"pool": "a100"}
    rules = [part.split(":")[0] for part in status(recording, "refused")["error"].split("; ")]
    assert rules == [
        "policy rule allowedImages",
        "policy rule allowNodeSelector",
        "policy rule allowTolerations",
        "policy rule maxResources",
        "policy rule allowTrustRemoteCode",
    ]


def test_custom_task_python_is_found_in_the_configmap_the_operator_reads(recording: RecordingCluster) -> None:
    recording.config_maps["my-tasks"] = TASKS_WITH_PYTHON
    recording.config_maps["plain-tasks"] = {"t.yaml": "task: plain\ndataset_path: json\n"}
    add(recording, evaljob("code", customTasks={"configMap": "my-tasks"}, tasks=["mine"]))
    add(recording, evaljob("plain", customTasks={"configMap": "plain-tasks"}, tasks=["plain"]))
    operator = reconciler(recording)
    run(operator.reconcile(NS, "code", FakeViews(recording)))
    run(operator.reconcile(NS, "plain", FakeViews(recording)))
    assert recording.created() == ["plain"]
    assert status(recording, "code")["error"].startswith(
        "policy rule allowCustomTaskCode: spec.customTasks.configMap: t.yaml: !function utils.score: "
    )
    assert "utils.py: a Python module" in status(recording, "code")["error"]


def test_allow_online_has_one_place_the_policy_and_the_old_setting_still_turns_it_on() -> None:
    assert OperatorSettings().policy.allow_online is False
    assert OperatorSettings(policy='{"allowOnline": true}').allow_online is True
    assert OperatorSettings(allow_online=True).policy.allow_online is True


def test_online_asked_where_the_policy_forbids_it_fails_instead_of_running_silently_offline(
    recording: RecordingCluster,
) -> None:
    add(recording, evaljob("online", allowOnline=True))
    run(reconciler(recording).reconcile(NS, "online", FakeViews(recording)))
    assert status(recording, "online")["error"] == (
        "policy rule allowOnline: spec.allowOnline: hub downloads are not allowed on this cluster"
    )


def test_the_real_operator_fails_a_kubectl_evaljob_that_breaks_the_default_policy(
    start_operator: Any, cluster: Any
) -> None:
    start_operator(evaluator_image="evalkube/evaluator:test")  # no EVALKUBE_POLICY: the safe default
    refused = cluster.apply({"model": "huggingface", "tasks": ["mme"], "numGpus": 0, "tolerations": [{"key": "x"}]})
    admitted = cluster.apply({"model": "huggingface", "tasks": ["mme"], "numGpus": 0})
    assert cluster.wait_phase(refused, Phase.FAILED)["error"] == (
        "policy rule allowTolerations: spec.tolerations: an EvalJob may not add tolerations"
    )
    cluster.wait(lambda: cluster.job(admitted), what="the admitted EvalJob's Job")
    assert cluster.job(refused) is None
