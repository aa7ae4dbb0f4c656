"""POST /evaluate, GET /jobs/{id}, DELETE /jobs/{id}: the real API over HTTP, on the emulator.

The tests play the operator: they write EvalJob status with the real `kubernetes` client.
"""

from __future__ import annotations

from typing import Any

import httpx
import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from evalkube import resource

from harness.api_server import evaljob_manifest, set_status, wait_until

pytestmark = pytest.mark.timeout(60)


def evaljob(kube_client: kubernetes.client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return kubernetes.client.CustomObjectsApi(kube_client).get_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL, name
    )


def evaljob_names(kube_client: kubernetes.client.ApiClient, namespace: str) -> list[str]:
    listing = kubernetes.client.CustomObjectsApi(kube_client).list_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL
    )
    return [item["metadata"]["name"] for item in listing["items"]]


def submit(http: str, **body: Any) -> httpx.Response:
    return http.post("/evaluate", json={"model": "huggingface", "tasks": ["mme"], **body})


def test_submit_creates_an_evaljob_and_answers_as_lmms_eval_does(http, kube_client, namespace) -> None:
    response = submit(
        http,
        model_args={"pretrained": "/ckpt/models/ckpt-100", "dtype": "bfloat16", "trust_remote_code": True},
        tasks=["mme", "mmmu_val"],
        batch_size="auto",
        limit=0.5,
        num_gpus=2,
        priority=7,
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["job_id"].startswith("eval-")
    assert answer == {
        "job_id": answer["job_id"],
        "status": "queued",
        "position_in_queue": 0,
        "message": "Job queued successfully. Position in queue: 0",
    }
    spec = evaljob(kube_client, namespace, answer["job_id"])["spec"]
    assert spec["model"] == "huggingface"
    assert spec["tasks"] == ["mme", "mmmu_val"]
    assert spec["modelArgs"] == {"pretrained": "/ckpt/models/ckpt-100", "dtype": "bfloat16", "trust_remote_code": True}
    assert (spec["batchSize"], spec["limit"], spec["numGpus"], spec["priority"]) == ("auto", 0.5, 2, 7)


def test_a_job_can_be_read_right_after_it_was_submitted(http) -> None:
    job_id = submit(http, model_args={"pretrained": "x"}).json()["job_id"]

    job = http.get(f"/jobs/{job_id}").json()

    assert job["job_id"] == job_id
    assert job["status"] == "queued"
    assert job["position_in_queue"] == 0
    assert job["request"]["model_args"] == {"pretrained": "x"}
    assert job["created_at"]
    assert job["result"] is None and job["started_at"] is None


def test_positions_count_the_jobs_that_run_first(http) -> None:
    first = submit(http).json()
    second = submit(http).json()
    urgent = submit(http, priority=10).json()

    assert [first["position_in_queue"], second["position_in_queue"], urgent["position_in_queue"]] == [0, 1, 0]
    positions = [http.get(f"/jobs/{job['job_id']}").json()["position_in_queue"] for job in (first, second, urgent)]
    assert positions == [1, 2, 0]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"tasks": ["mme,mmmu_val"]}, "tasks", "tasks[0]: must not contain ',' or '='"),
        ({"tasks": ["mme", "--include_path=/etc"]}, "tasks", "tasks[1]: must not start with '-'"),
        ({"tasks": []}, "tasks", "at least 1 item"),
        ({"model": "hf\nx"}, "model", "must not contain newlines"),
        (
            {"model_args": {"pretrained": "/m,device_map=cuda"}},
            "model_args",
            "model_args.pretrained: must not contain ','",
        ),
        ({"model_args": {"pretrained": "a=b"}}, "model_args", "model_args.pretrained: must not contain ',' or '='"),
        ({"model_args": {"x,y": "1"}}, "model_args", "model_args.x,y: must not contain ','"),
        ({"gen_kwargs": "temperature"}, "gen_kwargs", "must be comma-separated key=value pairs"),
        ({"num_gpus": -1}, "num_gpus", "greater than or equal to 0"),
        ({"batch_size": 0}, "batch_size", "must be >= 1"),
        ({"limit": 0}, "limit", "greater than 0"),
        ({"output_dir": "../../etc"}, "output_dir", "without '..'"),
        ({"priority": 5000}, "priority", "less than or equal to 1000"),
        ({"model": None}, "model", "valid string"),
        ({"unknown_field": 1}, "unknown_field", "Extra inputs are not permitted"),
    ],
)
def test_invalid_requests_are_422_naming_the_field_and_create_nothing(
    http, kube_client, namespace, body, field, reason
) -> None:
    response = submit(http, **body)

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any(error["loc"][:2] == ["body", field] and reason in error["msg"] for error in errors), errors
    assert evaljob_names(kube_client, namespace) == []


def test_a_missing_required_field_is_named(http) -> None:
    response = http.post("/evaluate", json={"model": "huggingface"})

    assert response.status_code == 422
    assert [(error["loc"], error["msg"]) for error in response.json()["detail"]] == [
        (["body", "tasks"], "Field required")
    ]


def test_the_crds_limits_are_the_apis_own(http, kube_client, namespace) -> None:
    # The CRD caps task names at 253 characters because the protocol does: the API says so first.
    response = submit(http, tasks=["t" * 300])

    assert response.status_code == 422
    assert any(error["loc"] == ["body", "tasks", 0] for error in response.json()["detail"])
    assert evaljob_names(kube_client, namespace) == []


def test_unknown_job_is_404(http) -> None:
    for method in ("GET", "DELETE"):
        response = http.request(method, "/jobs/eval-nope")
        assert response.status_code == 404
        assert response.json() == {"detail": "Job eval-nope not found"}


def test_job_info_mirrors_the_status_the_operator_writes(http, kube_client, namespace) -> None:
    job_id = submit(http).json()["job_id"]
    metrics = {"results": {"mme": {"exact_match,none": 0.75}}, "versions": {"mme": 1}, "n-shot": {"mme": 0}}
    result = {"hf": {"results": "/ckpt/eval/hf/x_results.json", "samples": ["/ckpt/eval/hf/x_samples_mme.jsonl"]}}

    set_status(
        kube_client, namespace, job_id,
        phase="Completed", startedAt="2026-01-01T00:00:05Z", completedAt="2026-01-01T00:01:00Z", result=result,
        metrics=metrics, message="done",
    )  # fmt: skip

    job = wait_until(
        lambda: (j := http.get(f"/jobs/{job_id}").json())["status"] == "completed" and j,
        "the completed status to reach the API",
    )
    assert job["result"] == result
    assert (job["started_at"], job["completed_at"]) == ("2026-01-01T00:00:05Z", "2026-01-01T00:01:00Z")
    assert job["position_in_queue"] is None
    assert job["metrics"] == metrics
    assert job["message"] == "done"


def test_a_failed_job_reports_its_error(http, kube_client, namespace) -> None:
    job_id = submit(http).json()["job_id"]

    set_status(kube_client, namespace, job_id, phase="Failed", error="CUDA out of memory\n<last log lines>")

    job = wait_until(
        lambda: (j := http.get(f"/jobs/{job_id}").json())["status"] == "failed" and j,
        "the failed status to reach the API",
    )
    assert job["error"] == "CUDA out of memory\n<last log lines>"


def set_phase_seen(http, kube_client, namespace: str, job_id: str, phase: str) -> None:
    """Write the phase as the operator would, and wait until the API's cache shows it."""
    set_status(kube_client, namespace, job_id, phase=phase)
    wait_until(lambda: http.get(f"/jobs/{job_id}").json()["status"] == phase.lower(), f"phase {phase} to reach the API")


@pytest.mark.parametrize("phase", [None, "Queued", "Running"])
def test_cancel_asks_the_operator_to_stop_a_queued_or_running_job(http, kube_client, namespace, phase) -> None:
    job_id = submit(http).json()["job_id"]
    if phase is not None:
        set_phase_seen(http, kube_client, namespace, job_id, phase)

    response = http.delete(f"/jobs/{job_id}")

    assert response.status_code == 200
    assert response.json() == {"message": f"Job {job_id} is being cancelled ({(phase or 'queued').lower()} until now)"}
    assert evaljob(kube_client, namespace, job_id)["spec"]["cancelRequested"] is True


def test_cancelling_again_while_cancellation_is_pending_is_harmless(http, kube_client, namespace) -> None:
    job_id = submit(http).json()["job_id"]
    assert http.delete(f"/jobs/{job_id}").status_code == 200
    wait_until(
        lambda: http.delete(f"/jobs/{job_id}").json() == {"message": f"Job {job_id} is already being cancelled"},
        "the cancel request to reach the cache",
    )
    assert evaljob(kube_client, namespace, job_id)["spec"]["cancelRequested"] is True


@pytest.mark.parametrize("phase", ["Completed", "Failed", "Cancelled"])
def test_a_finished_job_cannot_be_cancelled(http, kube_client, namespace, phase) -> None:
    job_id = submit(http).json()["job_id"]
    set_phase_seen(http, kube_client, namespace, job_id, phase)

    response = http.delete(f"/jobs/{job_id}")

    assert response.status_code == 400
    assert response.json() == {"detail": f"Job {job_id} already {phase.lower()}; nothing to cancel"}
    assert "cancelRequested" not in evaljob(kube_client, namespace, job_id)["spec"]


def test_a_refusal_by_the_apiserver_is_a_502_with_its_reason(http, kube_client, namespace) -> None:
    # A terminating namespace refuses new objects with 403 Forbidden; a finalizer keeps it terminating.
    held = evaljob_manifest("held")
    held["metadata"]["finalizers"] = ["test.evalkube.dev/hold"]
    kubernetes.client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL, held
    )
    kubernetes.client.CoreV1Api(kube_client).delete_namespace(namespace)

    response = submit(http)

    assert response.status_code == 502
    detail = response.json()["detail"]
    assert detail.startswith("The Kubernetes API refused the request (403 Forbidden): ")
    assert "being terminated" in detail


def test_kubectl_is_refused_what_the_api_refuses(http, kube_client, namespace) -> None:
    """kubectl users write EvalJobs too: the CRD, generated from the same protocol, refuses what the
    API refuses, so no EvalJob reaches a pod that the runner would then reject."""
    odd_args = {"pretrained": "/m,device_map=auto", "quantization": {"bits": 4}}
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            resource.GROUP, resource.VERSION, namespace, resource.PLURAL, evaljob_manifest("odd", modelArgs=odd_args)
        )
    assert refused.value.status == 422 and "spec.modelArgs" in refused.value.body
    assert submit(http, model_args=odd_args).status_code == 422


def test_an_evaljob_written_with_kubectl_is_readable(http, kube_client, namespace) -> None:
    args = {"pretrained": "/m", "dtype": "bfloat16"}
    kubernetes.client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL, evaljob_manifest("kubectl", modelArgs=args)
    )

    response = http.get("/jobs/kubectl")

    assert response.status_code == 200
    assert response.json()["request"]["model_args"] == args
