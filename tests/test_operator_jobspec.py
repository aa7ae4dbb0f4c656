"""The evaluator Job an EvalJob becomes: a specification of build_job."""

from __future__ import annotations

import json

import pytest

from evalkube import resource
from evalkube.operator.jobspec import build_job
from evalkube.operator.settings import OperatorSettings


def evaljob(**spec: object) -> dict:
    return {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {"name": "eval-abcde", "namespace": "research", "uid": "uid-1", "generation": 1},
        "spec": {"model": "huggingface", "tasks": ["mme"], "numGpus": 1, **spec},
    }


def container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def env(job: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(job)["env"]}


def test_job_has_the_evaljobs_name_and_is_owned_by_it() -> None:
    job = build_job(evaljob(), OperatorSettings())
    assert job["metadata"]["name"] == "eval-abcde"
    assert job["metadata"]["namespace"] == "research"
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "evalkube.dev/v1alpha1",
            "kind": "EvalJob",
            "name": "eval-abcde",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_job_and_pod_template_carry_the_evalkube_labels() -> None:
    job = build_job(evaljob(), OperatorSettings())
    expected = {"app.kubernetes.io/managed-by": "evalkube", "evalkube.dev/evaljob": "eval-abcde"}
    assert job["metadata"]["labels"] == expected
    assert job["spec"]["template"]["metadata"]["labels"] == expected


def test_gpus_become_limits_of_the_configured_resource() -> None:
    assert container(build_job(evaljob(numGpus=4), OperatorSettings()))["resources"] == {
        "limits": {"nvidia.com/gpu": "4"}
    }
    amd = build_job(evaljob(numGpus=2), OperatorSettings(gpu_resource_name="amd.com/gpu"))
    assert container(amd)["resources"] == {"limits": {"amd.com/gpu": "2"}}


def test_zero_gpus_is_a_cpu_only_pod() -> None:
    job = build_job(
        evaljob(numGpus=0, resources={"limits": {"nvidia.com/gpu": 3, "memory": "4Gi"}}), OperatorSettings()
    )
    assert container(job)["resources"] == {"limits": {"memory": "4Gi"}}


def test_resources_merge_admin_defaults_under_the_evaljobs_own() -> None:
    settings = OperatorSettings(default_resources={"requests": {"cpu": 2, "memory": "8Gi"}})
    job = build_job(evaljob(resources={"requests": {"memory": "32Gi"}}), settings)
    assert container(job)["resources"] == {
        "requests": {"cpu": "2", "memory": "32Gi"},
        "limits": {"nvidia.com/gpu": "1"},
    }


def test_runs_the_runner_never_restarts_and_never_retries() -> None:
    job = build_job(evaljob(), OperatorSettings(evaluator_image="registry/eval:1"))
    assert container(job)["command"] == ["evalkube-runner"]
    assert container(job)["args"] == ["run"]
    assert container(job)["image"] == "registry/eval:1"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container(job)["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_image_override_from_the_evaljob() -> None:
    assert container(build_job(evaljob(image="mine:2"), OperatorSettings()))["image"] == "mine:2"


def test_spec_reaches_the_runner_without_pod_only_fields() -> None:
    job = build_job(
        evaljob(modelArgs={"pretrained": "/m"}, limit=5, priority=3, timeoutSeconds=60, cancelRequested=False),
        OperatorSettings(),
    )
    values = env(job)
    assert json.loads(values["EVALKUBE_SPEC"]) == {
        "model": "huggingface",
        "tasks": ["mme"],
        "numGpus": 1,
        "modelArgs": {"pretrained": "/m"},
        "limit": 5,
    }
    assert values["EVALKUBE_EVALJOB_NAME"] == "eval-abcde"
    assert values["EVALKUBE_EVALJOB_UID"] == "uid-1"
    assert values["EVALKUBE_NAMESPACE"] == "research"
    assert values["EVALKUBE_RESULT_CONFIGMAP"] == "eval-abcde-result"


def test_timeout_is_the_jobs_active_deadline() -> None:
    assert build_job(evaljob(timeoutSeconds=600), OperatorSettings())["spec"]["activeDeadlineSeconds"] == 600
    assert "activeDeadlineSeconds" not in build_job(evaljob(), OperatorSettings())["spec"]


def test_memory_backed_shm_and_restricted_security_context() -> None:
    job = build_job(evaljob(), OperatorSettings(shm_size="16Gi"))
    pod = job["spec"]["template"]["spec"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container(job)["volumeMounts"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container(job)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_custom_tasks_configmap_is_mounted_and_announced() -> None:
    job = build_job(evaljob(customTasks={"configMap": "my-tasks"}), OperatorSettings())
    assert {"name": "tasks", "configMap": {"name": "my-tasks"}} in job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tasks", "mountPath": "/etc/evalkube/tasks", "readOnly": True} in container(job)["volumeMounts"]
    assert env(job)["EVALKUBE_TASKS_DIR"] == "/etc/evalkube/tasks"


def test_artifacts_and_model_cache_volumes_from_settings() -> None:
    job = build_job(evaljob(), OperatorSettings(artifacts_pvc="eval-artifacts", model_cache_pvc="hf-cache"))
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "artifacts", "persistentVolumeClaim": {"claimName": "eval-artifacts"}} in volumes
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "hf-cache"}} in volumes
    assert env(job)["EVALKUBE_ARTIFACTS_DIR"] == "/artifacts"
    assert env(job)["HF_HOME"] == "/cache/huggingface"


@pytest.mark.parametrize(
    ("operator_allows", "evaljob_asks", "online"), [(False, True, False), (True, False, False), (True, True, True)]
)
def test_online_only_when_both_operator_and_evaljob_allow_it(
    operator_allows: bool, evaljob_asks: bool, online: bool
) -> None:
    job = build_job(evaljob(allowOnline=evaljob_asks), OperatorSettings(allow_online=operator_allows))
    assert (env(job).get("EVALKUBE_ALLOW_ONLINE") == "1") is online


def test_scheduling_settings_merge_with_the_evaljobs() -> None:
    settings = OperatorSettings(
        node_selector={"pool": "gpu"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        evaluator_service_account="evaluator",
        image_pull_secrets=["regcred"],
    )
    pod = build_job(
        evaljob(nodeSelector={"gpu": "h100"}, tolerations=[{"key": "spot", "operator": "Exists"}]), settings
    )["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu", "gpu": "h100"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}, {"key": "spot", "operator": "Exists"}]
    assert pod["serviceAccountName"] == "evaluator"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_kueue_creates_the_job_suspended_with_the_queue_label() -> None:
    job = build_job(evaljob(), OperatorSettings(kueue_queue_name="team-a"))
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "suspend" not in build_job(evaljob(), OperatorSettings())["spec"]


def test_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALKUBE_NAMESPACES", "a, b")
    monkeypatch.setenv("EVALKUBE_NODE_SELECTOR", '{"pool": "gpu"}')
    monkeypatch.setenv("EVALKUBE_MAX_RUNNING", "3")
    monkeypatch.setenv("EVALKUBE_IMAGE_PULL_SECRETS", "one,two")
    settings = OperatorSettings()
    assert settings.namespaces == ["a", "b"]
    assert settings.node_selector == {"pool": "gpu"}
    assert settings.max_running == 3
    assert settings.image_pull_secrets == ["one", "two"]
